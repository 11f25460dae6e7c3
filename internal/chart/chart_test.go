package chart

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// bar is one run of adjacent pixel columns holding a colour within the
// plot area, as found in the decoded image.
type bar struct {
	x0, x1 int // columns [x0, x1)
	height int // pixels of the colour in its tallest column
}

// findBars scans the columns of rect for pixels of colour c.
func findBars(img image.Image, rect image.Rectangle, c color.RGBA) []bar {
	var bars []bar
	in := false
	for x := rect.Min.X; x < rect.Max.X; x++ {
		n := 0
		for y := rect.Min.Y; y < rect.Max.Y; y++ {
			if color.RGBAModel.Convert(img.At(x, y)) == c {
				n++
			}
		}
		switch {
		case n > 0 && !in:
			bars = append(bars, bar{x0: x, x1: x + 1, height: n})
			in = true
		case n > 0:
			b := &bars[len(bars)-1]
			b.x1 = x + 1
			b.height = max(b.height, n)
		default:
			in = false
		}
	}
	return bars
}

func decode(t *testing.T, data []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decoding the PNG: %v", err)
	}
	return img
}

// save keeps the image for a look when CHART_OUT names a directory.
func save(t *testing.T, name string, data []byte) {
	if dir := os.Getenv("CHART_OUT"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBarHeights(t *testing.T) {
	b := &Bar{
		Title:  "throughput",
		YLabel: "req/s",
		Groups: []string{"1 client", "64 clients", "256 clients"},
		Series: []Series{
			{Name: "memory", Values: []float64{1000, 4000, 2000}},
			{Name: "bolt", Values: []float64{2000, math.NaN()}}, // one missing, one short
		},
	}
	const w, h = 640, 400
	var buf bytes.Buffer
	if err := b.WritePNG(&buf, w, h); err != nil {
		t.Fatal(err)
	}
	save(t, "bars.png", buf.Bytes())
	img := decode(t, buf.Bytes())
	if got := img.Bounds(); got != image.Rect(0, 0, w, h) {
		t.Fatalf("image bounds %v, want %dx%d", got, w, h)
	}

	plot := b.layout(image.Rect(0, 0, w, h)).plot
	if plot.Dx() < w/2 || plot.Dy() < h/2 {
		t.Fatalf("plot area %v is implausibly small for %dx%d", plot, w, h)
	}

	mem := findBars(img, plot, SeriesColor(0))
	if len(mem) != 3 {
		t.Fatalf("found %d bars of series 0 in the plot, want 3: %+v", len(mem), mem)
	}
	// Heights follow the values: 1000, 4000, 2000.
	if !(mem[0].height < mem[2].height && mem[2].height < mem[1].height) {
		t.Fatalf("bar heights %d, %d, %d do not follow the values 1000, 4000, 2000", mem[0].height, mem[1].height, mem[2].height)
	}
	unit := float64(mem[1].height) / 4000
	for i, want := range []float64{1000, 4000, 2000} {
		if got := float64(mem[i].height); math.Abs(got-want*unit) > 1.5 {
			t.Errorf("bar %d is %v px tall, want %.1f (proportional to %v)", i, got, want*unit, want)
		}
	}
	// Bars of different heights fill different columns, and bars of one
	// series sit in different groups, left to right.
	for i := 1; i < len(mem); i++ {
		if mem[i].x0 <= mem[i-1].x1 {
			t.Errorf("bars %d and %d overlap or touch: %+v", i-1, i, mem)
		}
	}

	bolt := findBars(img, plot, SeriesColor(1))
	if len(bolt) != 1 {
		t.Fatalf("found %d bars of series 1, want 1 (NaN and missing values draw none): %+v", len(bolt), bolt)
	}
	if d := float64(bolt[0].height) - 2000*unit; math.Abs(d) > 1.5 {
		t.Errorf("series 1's bar is %d px tall, want %.1f", bolt[0].height, 2000*unit)
	}
	// It stands right of series 0's bar in the same group, not over it.
	if bolt[0].x0 < mem[0].x1 || bolt[0].x0 > mem[1].x0 {
		t.Errorf("series 1's bar at columns [%d,%d) is not between series 0's first two bars %+v", bolt[0].x0, bolt[0].x1, mem)
	}

	// The legend shows both colours outside the plot area.
	above := image.Rect(0, 0, w, plot.Min.Y)
	for i := range b.Series {
		if len(findBars(img, above, SeriesColor(i))) == 0 {
			t.Errorf("no legend swatch of series %d above the plot", i)
		}
	}
	// Some text (tick labels, left of the plot) was drawn.
	if len(findBars(img, image.Rect(0, plot.Min.Y, plot.Min.X-tickLen, plot.Max.Y), textColor)) == 0 {
		t.Error("no tick labels left of the plot")
	}
}

func TestGrid(t *testing.T) {
	mk := func(title string, v float64) *Bar {
		return &Bar{Title: title, Groups: []string{"a", "b"}, Series: []Series{{Name: "s", Values: []float64{v, v / 2}}}}
	}
	charts := []*Bar{mk("one", 10), mk("two", 0.5), nil, mk("four", 3e6), mk("five", 7)}
	const cw, ch = 300, 200
	var buf bytes.Buffer
	if err := Grid(charts, 2, &buf, cw, ch); err != nil {
		t.Fatal(err)
	}
	save(t, "grid.png", buf.Bytes())
	img := decode(t, buf.Bytes())
	if got, want := img.Bounds(), image.Rect(0, 0, 2*cw, 3*ch); got != want {
		t.Fatalf("grid bounds %v, want %v", got, want)
	}
	// Every chart has two bars in its own cell, taller on the left; the
	// empty cell has none.
	for i, c := range charts {
		x, y := (i%2)*cw, (i/2)*ch
		cell := image.Rect(x, y, x+cw, y+ch)
		shape := c
		if shape == nil {
			shape = charts[0] // look where a chart's bars would be
		}
		bars := findBars(img, shape.layout(cell).plot, SeriesColor(0))
		if c == nil {
			if len(bars) != 0 {
				t.Errorf("empty cell %d has bars: %+v", i, bars)
			}
			continue
		}
		if len(bars) != 2 || bars[0].height <= bars[1].height {
			t.Errorf("cell %d (%s): bars %+v, want two with the left one taller", i, c.Title, bars)
		}
	}
}

func TestErrors(t *testing.T) {
	var buf bytes.Buffer
	b := &Bar{Groups: []string{"a"}, Series: []Series{{Name: "s", Values: []float64{1, 2}}}}
	if err := b.WritePNG(&buf, 400, 300); err == nil {
		t.Error("WritePNG accepted more values than groups")
	}
	if err := (&Bar{}).WritePNG(&buf, 10, 10); err == nil {
		t.Error("WritePNG accepted a 10x10 image")
	}
	if err := Grid(nil, 2, &buf, 400, 300); err == nil {
		t.Error("Grid accepted no charts")
	}
	if err := Grid([]*Bar{{}}, 0, &buf, 400, 300); err == nil {
		t.Error("Grid accepted 0 columns")
	}
	// An empty chart is drawn (as "no data"), not refused.
	buf.Reset()
	if err := (&Bar{Title: "nothing"}).WritePNG(&buf, 400, 300); err != nil {
		t.Fatalf("empty chart: %v", err)
	}
	decode(t, buf.Bytes())
}

func TestNiceScale(t *testing.T) {
	for _, c := range []struct{ max, top, step float64 }{
		{0, 1, 0.2},
		{1, 1.2, 0.2},
		{4000, 5000, 1000},
		{9800, 12000, 2000},
		{0.35, 0.4, 0.1},
		{123456, 150000, 25000},
	} {
		top, step := niceScale(c.max)
		if math.Abs(top-c.top) > 1e-9*c.top || math.Abs(step-c.step) > 1e-9*c.step {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", c.max, top, step, c.top, c.step)
		}
		if top < c.max {
			t.Errorf("niceScale(%v): top %v below the data", c.max, top)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 0.25: "0.25", 0.005: "0.005", 1.5: "1.5", 12.34: "12.3", 950: "950",
		1000: "1k", 1500: "1.5k", 12500: "12.5k", 64000: "64k", 2.1e6: "2.1M", 3e9: "3G", -2000: "-2k",
	} {
		if got := FormatValue(v); got != want {
			t.Errorf("FormatValue(%v) = %q, want %q", v, got, want)
		}
	}
	if got := FormatValue(math.NaN()); got != "-" {
		t.Errorf("FormatValue(NaN) = %q, want -", got)
	}
}
