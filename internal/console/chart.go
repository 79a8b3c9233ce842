package console

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/silo-saas/silo/registry"
)

// chart is a health history ready to draw as inline SVG: every coordinate
// is computed here, so the template only places elements (and CSP allows
// no inline style, so colours come from classes in the stylesheet).
type chart struct {
	Width, Height int
	Top, Bottom   int // y of the plot area's top and bottom
	Left, Right   int // x of the plot area's edges
	Hours         int
	Empty         bool
	Bars          []bar
	Line          string // polyline points of p95 latency
	Dots          []dot
	MaxMS         int64
	XLabels       []label
	YLabels       []label
	Title         string
	Desc          string
}

// bar is one hour: the share of checks up (green) under the share failed
// (red), or a grey stub when there were no checks.
type bar struct {
	X, W             string
	UpY, UpH         string
	FailY, FailH     string
	NoData           bool
	NoDataY, NoDataH string
	Tip              string
}

type dot struct{ X, Y, Tip string }

type label struct {
	X, Y   string
	Text   string
	Anchor string
}

const (
	chartW, chartH = 960, 220
	padL, padR     = 48, 64
	padT, padB     = 12, 28
)

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// newChart draws the hours hours up to and including now's.
func newChart(rollups []registry.Rollup, now time.Time, hours int) *chart {
	end := now.UTC().Truncate(time.Hour)
	start := end.Add(-time.Duration(hours-1) * time.Hour)
	byHour := map[time.Time]registry.Rollup{}
	var maxMS int64
	for _, r := range rollups {
		h := r.Hour.UTC().Truncate(time.Hour)
		if h.Before(start) || h.After(end) || r.Checks <= 0 {
			continue
		}
		byHour[h] = r
		maxMS = max(maxMS, r.P95MS)
	}
	c := &chart{Width: chartW, Height: chartH, Top: padT, Bottom: chartH - padB, Left: padL, Right: chartW - padR, Hours: hours,
		Title: fmt.Sprintf("Health per hour over the last %d hours: share of checks up (bars) and p95 latency (line)", hours)}
	if len(byHour) == 0 {
		c.Empty = true
		return c
	}
	c.MaxMS = niceCeil(max(maxMS, 1))
	plotW, plotH := float64(c.Right-c.Left), float64(c.Bottom-c.Top)
	slot := plotW / float64(hours)
	var points []string
	var up, checks int
	for i := range hours {
		h := start.Add(time.Duration(i) * time.Hour)
		x := float64(c.Left) + float64(i)*slot
		b := bar{X: f1(x + 1), W: f1(slot - 2)}
		r, ok := byHour[h]
		if !ok {
			b.NoData = true
			b.NoDataY, b.NoDataH = f1(float64(c.Bottom)-3), "3"
			b.Tip = h.Format("Jan 2 15:04Z") + ": no checks"
			c.Bars = append(c.Bars, b)
			continue
		}
		fails := min(max(r.Failures, 0), r.Checks)
		upShare := float64(r.Checks-fails) / float64(r.Checks)
		upH := upShare * plotH
		b.UpY, b.UpH = f1(float64(c.Bottom)-upH), f1(upH)
		b.FailY, b.FailH = f1(float64(c.Top)), f1(plotH-upH)
		b.Tip = fmt.Sprintf("%s: %d of %d checks up (%.1f%%), p50 %d ms, p95 %d ms, max %d ms",
			h.Format("Jan 2 15:04Z"), r.Checks-fails, r.Checks, upShare*100, r.P50MS, r.P95MS, r.MaxMS)
		c.Bars = append(c.Bars, b)
		cx := x + slot/2
		cy := float64(c.Bottom) - float64(r.P95MS)/float64(c.MaxMS)*plotH
		points = append(points, f1(cx)+","+f1(cy))
		c.Dots = append(c.Dots, dot{X: f1(cx), Y: f1(cy), Tip: fmt.Sprintf("%s: p95 %d ms", h.Format("Jan 2 15:04Z"), r.P95MS)})
		up += r.Checks - fails
		checks += r.Checks
	}
	c.Line = strings.Join(points, " ")
	for i := 0; i < hours; i += 6 {
		h := start.Add(time.Duration(i) * time.Hour)
		text := h.Format("15:04")
		if h.Hour() == 0 || i == 0 {
			text = h.Format("Jan 2")
		}
		c.XLabels = append(c.XLabels, label{X: f1(float64(c.Left) + float64(i)*slot), Y: strconv.Itoa(chartH - 8), Text: text, Anchor: "start"})
	}
	for _, frac := range []float64{0, 0.5, 1} {
		y := f1(float64(c.Bottom) - frac*plotH + 4)
		c.YLabels = append(c.YLabels,
			label{X: strconv.Itoa(c.Left - 6), Y: y, Text: fmt.Sprintf("%.0f%%", frac*100), Anchor: "end"},
			label{X: strconv.Itoa(c.Right + 6), Y: y, Text: fmt.Sprintf("%d ms", int64(frac*float64(c.MaxMS))), Anchor: "start"})
	}
	c.Desc = fmt.Sprintf("%d of %d checks up (%.2f%%) in %d hours with data; highest hourly p95 %d ms.",
		up, checks, float64(up)/float64(checks)*100, len(byHour), maxMS)
	return c
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten, for an axis.
func niceCeil(v int64) int64 {
	p := int64(1)
	for {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= v {
				return m * p
			}
		}
		p *= 10
	}
}
