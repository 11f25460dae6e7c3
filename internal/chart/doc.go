// Package chart renders grouped bar charts to PNG, for benchmark reports.
//
// A Bar chart has groups along the x axis (e.g. client counts) and, within
// each group, one bar per series (e.g. storage engines), each series in its
// own colour, named in a legend. The y axis starts at zero and gets "nice"
// ticks (1, 2, 2.5 or 5 times a power of ten) with labelled values and
// light grid lines; each bar is labelled with its value when the label fits.
// A value that is NaN draws no bar (a missing measurement); negative values
// are drawn as zero.
//
//	b := &chart.Bar{
//		Title:  "read-heavy, 100k keys",
//		YLabel: "req/s",
//		Groups: []string{"1 client", "64 clients"},
//		Series: []chart.Series{
//			{Name: "memory", Values: []float64{1200, 9800}},
//			{Name: "bolt", Values: []float64{1100, math.NaN()}},
//		},
//	}
//	err := b.WritePNG(f, 640, 400)
//
// Grid draws several charts as panels of one image, row by row.
//
// Only the standard library image packages are used, plus the 7x13 bitmap
// face of golang.org/x/image/font/basicfont for text (ASCII; other runes
// are drawn as a box).
package chart
