package chart

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Series is one set of bars: Values[i] is its bar in group i. Values may
// be shorter than the groups (the rest have no bar) but not longer.
type Series struct {
	Name   string
	Values []float64
}

// Bar is a grouped bar chart.
type Bar struct {
	Title  string
	YLabel string   // unit of the y axis, drawn above it
	Groups []string // x axis categories, left to right
	Series []Series // bars within each group, left to right; colours by index
}

// Palette holds the series colours (Tableau 10), used in order and repeated
// beyond ten series.
var Palette = []color.RGBA{
	{0x4e, 0x79, 0xa7, 0xff}, // blue
	{0xf2, 0x8e, 0x2b, 0xff}, // orange
	{0xe1, 0x57, 0x59, 0xff}, // red
	{0x59, 0xa1, 0x4f, 0xff}, // green
	{0xb0, 0x7a, 0xa1, 0xff}, // purple
	{0x76, 0xb7, 0xb2, 0xff}, // teal
	{0xed, 0xc9, 0x48, 0xff}, // yellow
	{0xff, 0x9d, 0xa7, 0xff}, // pink
	{0x9c, 0x75, 0x5f, 0xff}, // brown
	{0xba, 0xb0, 0xac, 0xff}, // grey
}

// SeriesColor is the colour of series i.
func SeriesColor(i int) color.RGBA { return Palette[i%len(Palette)] }

var (
	white     = color.RGBA{0xff, 0xff, 0xff, 0xff}
	textColor = color.RGBA{0x22, 0x22, 0x22, 0xff}
	axisColor = color.RGBA{0x44, 0x44, 0x44, 0xff}
	gridColor = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
	noteColor = color.RGBA{0x88, 0x88, 0x88, 0xff}
)

var face font.Face = basicfont.Face7x13

const (
	charW    = 7  // advance of every glyph of face
	lineH    = 13 // height of a line of text
	ascent   = 11
	margin   = 10
	swatch   = 10 // legend colour square
	tickLen  = 4
	minCellW = 120
	minCellH = 100
)

// check reports a chart that cannot be drawn.
func (b *Bar) check() error {
	for _, s := range b.Series {
		if len(s.Values) > len(b.Groups) {
			return fmt.Errorf("chart %q: series %q has %d values for %d groups", b.Title, s.Name, len(s.Values), len(b.Groups))
		}
	}
	return nil
}

func checkSize(w, h int) error {
	if w < minCellW || h < minCellH {
		return fmt.Errorf("chart: size %dx%d is smaller than %dx%d", w, h, minCellW, minCellH)
	}
	return nil
}

// WritePNG draws the chart as a width x height PNG image to w.
func (b *Bar) WritePNG(w io.Writer, width, height int) error {
	if err := checkSize(width, height); err != nil {
		return err
	}
	if err := b.check(); err != nil {
		return err
	}
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	b.Draw(img)
	return png.Encode(w, img)
}

// Grid draws charts as panels of cellW x cellH pixels, cols to a row, and
// writes the image as PNG to w. A nil chart leaves its cell empty.
func Grid(charts []*Bar, cols int, w io.Writer, cellW, cellH int) error {
	if len(charts) == 0 {
		return errors.New("chart: Grid of no charts")
	}
	if cols < 1 {
		return fmt.Errorf("chart: Grid with %d columns", cols)
	}
	if err := checkSize(cellW, cellH); err != nil {
		return err
	}
	for _, c := range charts {
		if c != nil {
			if err := c.check(); err != nil {
				return err
			}
		}
	}
	cols = min(cols, len(charts))
	rows := (len(charts) + cols - 1) / cols
	img := image.NewRGBA(image.Rect(0, 0, cols*cellW, rows*cellH))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	for i, c := range charts {
		if c == nil {
			continue
		}
		x, y := (i%cols)*cellW, (i/cols)*cellH
		c.Draw(img.SubImage(image.Rect(x, y, x+cellW, y+cellH)).(*image.RGBA))
	}
	return png.Encode(w, img)
}

// layout is where the parts of a chart go within its rectangle.
type layout struct {
	titleY   int             // baseline of the title
	legend   []image.Point   // top-left of each series' swatch
	yLabelY  int             // baseline of the y label
	plot     image.Rectangle // the area inside the axes
	top      float64         // value at the top of the plot
	step     float64         // between y ticks
	groupX   []int           // left edge of each group's slot
	groupW   int             // width of a group's slot
	bars     [][]image.Point // [series][group]: x range of the bar (X: from, Y: to)
	legendTo image.Rectangle // bounding box of the legend
}

// maxValue is the largest finite value, or 0.
func (b *Bar) maxValue() float64 {
	m := 0.0
	for _, s := range b.Series {
		for _, v := range s.Values {
			if !math.IsNaN(v) && !math.IsInf(v, 0) && v > m {
				m = v
			}
		}
	}
	return m
}

// layout computes the layout of b in r.
func (b *Bar) layout(r image.Rectangle) layout {
	var l layout
	y := r.Min.Y + margin
	if b.Title != "" {
		l.titleY = y + ascent
		y += lineH + 6
	}

	// Legend: entries left to right, wrapping.
	if len(b.Series) > 0 {
		x0, x := r.Min.X+margin, r.Min.X+margin
		rowTop := y
		l.legendTo = image.Rectangle{Min: image.Pt(x0, y), Max: image.Pt(x0, y)}
		for _, s := range b.Series {
			w := swatch + 4 + textWidth(s.Name)
			if x > x0 && x+w > r.Max.X-margin {
				x = x0
				rowTop += lineH + 3
			}
			l.legend = append(l.legend, image.Pt(x, rowTop+(lineH-swatch)/2))
			l.legendTo.Max.X = max(l.legendTo.Max.X, x+w)
			x += w + 14
		}
		l.legendTo.Max.Y = rowTop + lineH
		y = rowTop + lineH + 6
	}

	l.top, l.step = niceScale(b.maxValue())
	labelW := 0
	for v := 0.0; v <= l.top+l.step/2; v += l.step {
		labelW = max(labelW, textWidth(FormatValue(v)))
	}
	left := r.Min.X + margin + labelW + tickLen + 2
	if b.YLabel != "" {
		l.yLabelY = y + ascent
		y += lineH + 4
	}
	// Half a line above the plot, so the top tick label is not cut.
	l.plot = image.Rect(left, y+lineH/2, r.Max.X-margin, r.Max.Y-margin-lineH-4)
	if l.plot.Dy() < 10 || l.plot.Dx() < 10 {
		l.plot = image.Rectangle{Min: l.plot.Min, Max: l.plot.Min}
		return l
	}

	n := len(b.Groups)
	if n == 0 {
		return l
	}
	l.groupW = l.plot.Dx() / n
	ns := len(b.Series)
	pad := l.groupW / 8 // each side of a group's bars
	inner := l.groupW - 2*pad
	gap := 0
	if ns > 1 {
		gap = min(4, inner/(ns*6))
	}
	barW := 0
	if ns > 0 {
		barW = max(1, (inner-gap*(ns-1))/ns)
	}
	used := barW*ns + gap*(ns-1)
	l.bars = make([][]image.Point, ns)
	for g := range n {
		gx := l.plot.Min.X + g*l.groupW
		l.groupX = append(l.groupX, gx)
		x := gx + (l.groupW-used)/2
		for s := range ns {
			l.bars[s] = append(l.bars[s], image.Pt(x, x+barW))
			x += barW + gap
		}
	}
	return l
}

// yPos is the pixel row of value v.
func (l *layout) yPos(v float64) int {
	if l.top <= 0 {
		return l.plot.Max.Y
	}
	v = max(0, min(v, l.top))
	return l.plot.Max.Y - int(math.Round(v/l.top*float64(l.plot.Dy())))
}

// Draw draws the chart into dst, filling dst's bounds (which need not start
// at the origin). The background is left as it is.
func (b *Bar) Draw(dst *image.RGBA) {
	r := dst.Bounds()
	l := b.layout(r)
	if b.Title != "" {
		x := r.Min.X + (r.Dx()-textWidth(b.Title))/2
		x = max(x, r.Min.X+margin)
		drawText(dst, b.Title, x, l.titleY, textColor)
		drawText(dst, b.Title, x+1, l.titleY, textColor) // bold
	}
	for i, p := range l.legend {
		fill(dst, image.Rect(p.X, p.Y, p.X+swatch, p.Y+swatch), SeriesColor(i))
		drawText(dst, b.Series[i].Name, p.X+swatch+4, p.Y+swatch/2+ascent/2, textColor)
	}
	if b.YLabel != "" {
		drawText(dst, b.YLabel, r.Min.X+margin, l.yLabelY, textColor)
	}
	if l.plot.Empty() {
		return
	}

	// Grid lines and y ticks.
	for v := 0.0; v <= l.top+l.step/2; v += l.step {
		y := l.yPos(v)
		if v > 0 {
			fill(dst, image.Rect(l.plot.Min.X+1, y, l.plot.Max.X, y+1), gridColor)
		}
		fill(dst, image.Rect(l.plot.Min.X-tickLen, y, l.plot.Min.X, y+1), axisColor)
		s := FormatValue(v)
		drawText(dst, s, l.plot.Min.X-tickLen-2-textWidth(s), y+ascent/2, textColor)
	}

	if len(b.Groups) == 0 || len(b.Series) == 0 {
		s := "no data"
		drawText(dst, s, l.plot.Min.X+(l.plot.Dx()-textWidth(s))/2, l.plot.Min.Y+l.plot.Dy()/2, noteColor)
	}

	// Bars, and their values where the label fits over the bar's slot.
	for s, series := range b.Series {
		for g, v := range series.Values {
			if math.IsNaN(v) {
				continue
			}
			xr := l.bars[s][g]
			y := l.yPos(v)
			fill(dst, image.Rect(xr.X, y, xr.Y, l.plot.Max.Y), SeriesColor(s))
			label := FormatValue(max(v, 0))
			slot := xr.Y - xr.X + 4
			if tw := textWidth(label); tw <= slot {
				drawText(dst, label, xr.X+(xr.Y-xr.X-tw)/2, y-3, textColor)
			}
		}
	}

	// Axes over the bars' feet.
	fill(dst, image.Rect(l.plot.Min.X-1, l.plot.Min.Y, l.plot.Min.X, l.plot.Max.Y+1), axisColor)
	fill(dst, image.Rect(l.plot.Min.X-1, l.plot.Max.Y, l.plot.Max.X, l.plot.Max.Y+1), axisColor)

	// Group labels, cut to their slot.
	for g, name := range b.Groups {
		maxChars := max(1, (l.groupW-4)/charW)
		if len(name) > maxChars {
			name = name[:max(0, maxChars-1)] + "~"
		}
		x := l.groupX[g] + (l.groupW-textWidth(name))/2
		drawText(dst, name, x, l.plot.Max.Y+4+ascent, textColor)
	}
}

// niceScale picks the top of the y axis and the tick step for data up to
// maxV: three to six ticks at 1, 2, 2.5 or 5 times a power of ten, with some
// room above the tallest bar for its label.
func niceScale(maxV float64) (top, step float64) {
	if maxV <= 0 || math.IsNaN(maxV) || math.IsInf(maxV, 0) {
		return 1, 0.2
	}
	raw := maxV * 1.08 / 6
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		step = m * p
		if step >= raw {
			break
		}
	}
	top = math.Ceil(maxV*1.08/step) * step
	return top, step
}

// FormatValue prints v compactly, with at most three significant digits
// and a k, M or G suffix from a thousand up: 0.25, 12.5, 950, 1.5k, 64k,
// 2.1M.
func FormatValue(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	a := math.Abs(v)
	suffix := ""
	switch {
	case a >= 1e9:
		v, a, suffix = v/1e9, a/1e9, "G"
	case a >= 1e6:
		v, a, suffix = v/1e6, a/1e6, "M"
	case a >= 1e3:
		v, a, suffix = v/1e3, a/1e3, "k"
	}
	var s string
	switch {
	case a == 0:
		return "0"
	case a < 0.01:
		s = strconv.FormatFloat(v, 'g', 2, 64)
	case a < 10:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	case a < 100:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	default:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	}
	if strings.Contains(s, ".") && !strings.ContainsAny(s, "eE") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s + suffix
}

func textWidth(s string) int { return font.MeasureString(face, s).Ceil() }

// drawText draws s with its baseline at y, starting at x.
func drawText(dst draw.Image, s string, x, y int, c color.Color) {
	d := &font.Drawer{Dst: dst, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func fill(dst draw.Image, r image.Rectangle, c color.Color) {
	draw.Draw(dst, r.Intersect(dst.Bounds()), image.NewUniform(c), image.Point{}, draw.Src)
}
