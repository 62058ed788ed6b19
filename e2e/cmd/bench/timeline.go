package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// The timeline SVG of one failover (apiserver SIGKILL under client load),
// drawn by hand: x is milliseconds since the kill.

type svgRect struct {
	X, Y, W, H float64
	Fill       string
	Title      string
}

type svgLine struct {
	X1, Y1, X2, Y2 float64
	Stroke         string
	Width          float64
	Dash           string
}

type svgText struct {
	X, Y   float64
	Text   string
	Anchor string
	Size   int
	Fill   string
	Bold   bool
}

type svgDoc struct {
	W, H  float64
	Rects []svgRect
	Lines []svgLine
	Texts []svgText
	Path  string // nexthop-count step line
}

var svgTmpl = template.Must(template.New("svg").Parse(`<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<rect x="0" y="0" width="{{.W}}" height="{{.H}}" fill="#ffffff"/>
{{range .Rects}}<rect x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}" width="{{printf "%.1f" .W}}" height="{{printf "%.1f" .H}}" fill="{{.Fill}}">{{if .Title}}<title>{{.Title}}</title>{{end}}</rect>
{{end}}{{range .Lines}}<line x1="{{printf "%.1f" .X1}}" y1="{{printf "%.1f" .Y1}}" x2="{{printf "%.1f" .X2}}" y2="{{printf "%.1f" .Y2}}" stroke="{{.Stroke}}" stroke-width="{{.Width}}"{{if .Dash}} stroke-dasharray="{{.Dash}}"{{end}}/>
{{end}}{{if .Path}}<path d="{{.Path}}" fill="none" stroke="#1f5fbf" stroke-width="2.5"/>
{{end}}{{range .Texts}}<text x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}" font-size="{{.Size}}" text-anchor="{{.Anchor}}" fill="{{.Fill}}"{{if .Bold}} font-weight="bold"{{end}}>{{.Text}}</text>
{{end}}</svg>
`))

func writeTimeline(path string, b *bench, n *lab.Node, t0 time.Time, probes []probe, reqs []lab.Request) error {
	const (
		from, to       = -400.0, 1200.0 // ms around the kill
		left, plotW    = 190.0, 900.0
		top            = 60.0
		rowH, gap      = 70.0, 18.0
		bucket         = 10.0 // ms
		green, red     = "#2e9d3a", "#d62728"
		grey, gridGrey = "#b9b9b9", "#e4e4e4"
	)
	x := func(msv float64) float64 { return left + (msv-from)/(to-from)*plotW }
	rel := func(t time.Time) float64 { return float64(t.Sub(t0).Microseconds()) / 1000 }
	rows := []string{"health probes (" + n.Name + ")", "vipcast decisions", "router FIB nexthops", "client requests / 10 ms"}
	d := &svgDoc{W: left + plotW + 40, H: top + float64(len(rows))*(rowH+gap) + 70}
	rowY := func(i int) float64 { return top + float64(i)*(rowH+gap) }
	esc := func(s string) string {
		return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
	}
	txt := func(xv, yv float64, s, anchor string, size int, fill string, bold bool) {
		d.Texts = append(d.Texts, svgText{xv, yv, esc(s), anchor, size, fill, bold})
	}
	txt(d.W/2, 26, fmt.Sprintf("vipcast failover: kube-apiserver SIGKILL on %s at t=0 (%s, %d req/s client, health %s)", n.Name, b.router, clientLoad.Rate, b.res.Settings["health"]), "middle", 15, "#222", true)

	// rows, grid and axis
	for i, name := range rows {
		y := rowY(i)
		d.Rects = append(d.Rects, svgRect{left, y, plotW, rowH, "#f7f7f7", ""})
		txt(left-10, y+rowH/2+5, name, "end", 13, "#222", false)
	}
	bottom := rowY(len(rows)) - gap
	for v := from; v <= to; v += 100 {
		d.Lines = append(d.Lines, svgLine{x(v), top, x(v), bottom, gridGrey, 1, ""})
		txt(x(v), bottom+18, fmt.Sprintf("%.0f", v), "middle", 11, "#444", false)
	}
	txt(left+plotW/2, bottom+42, "time since SIGKILL (ms)", "middle", 13, "#222", false)
	d.Lines = append(d.Lines, svgLine{x(0), top - 8, x(0), bottom, "#000", 1.5, "5,3"})
	txt(x(0)+4, top-10, "SIGKILL", "start", 12, "#000", true)

	// row 0: probes
	y := rowY(0)
	for _, p := range probes {
		v := rel(p.At)
		if v < from || v > to {
			continue
		}
		c := green
		if !p.OK {
			c = red
		}
		d.Lines = append(d.Lines, svgLine{x(v), y + 12, x(v), y + rowH - 12, c, 4, ""})
	}
	txt(left+plotW-4, y+14, "green ok, red failed (vipcast status)", "end", 10, "#555", false)

	// row 1: vipcast decisions from its JSON log
	y = rowY(1)
	nlab := 0
	for _, rec := range n.LogRecords() {
		msg, _ := rec["msg"].(string)
		ts, _ := rec["time"].(string)
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		v := rel(t)
		if v < from || v > to {
			continue
		}
		var c, label string
		switch {
		case msg == "VIP withdrawn":
			c, label = red, "withdraw"
		case msg == "VIP announced":
			c, label = green, "announce"
		case msg == "health probe failed":
			c, label = "#e08a00", "1st failed probe"
		default:
			continue
		}
		d.Lines = append(d.Lines, svgLine{x(v), y + 8, x(v), y + rowH - 8, c, 3, ""})
		txt(x(v)+5, y+18+float64(nlab%3)*18, fmt.Sprintf("%s %.0f ms", label, v), "start", 11, c, true)
		nlab++
	}

	// row 2: nexthop count, step line
	y = rowY(2)
	ny := func(k int) float64 { return y + rowH - 8 - float64(k)/3*(rowH-16) }
	for k := 0; k <= 3; k++ {
		txt(left-4+plotW+22, ny(k)+4, fmt.Sprint(k), "middle", 10, "#555", false)
	}
	hist := b.mon.History(t0.Add(time.Duration(from) * time.Millisecond))
	var pb strings.Builder
	prevK := -1
	for i, s := range hist {
		v := max(rel(s.At), from)
		if v > to {
			break
		}
		k := len(s.Nexthops)
		if i == 0 {
			fmt.Fprintf(&pb, "M%.1f,%.1f", x(from), ny(k))
		} else {
			fmt.Fprintf(&pb, " H%.1f V%.1f", x(v), ny(k))
			if k < prevK {
				txt(x(v)+5, ny(k)-6, fmt.Sprintf("%d -> %d at %.0f ms", prevK, k, v), "start", 11, "#1f5fbf", true)
			}
		}
		prevK = k
	}
	fmt.Fprintf(&pb, " H%.1f", x(to))
	d.Path = pb.String()

	// row 3: client requests per 10 ms bucket by start time
	y = rowY(3)
	nb := int((to - from) / bucket)
	ok, bad := make([]int, nb), make([]int, nb)
	for _, r := range reqs {
		v := rel(r.Start)
		if v < from || v >= to {
			continue
		}
		i := int((v - from) / bucket)
		if r.Class == "ok" {
			ok[i]++
		} else {
			bad[i]++
		}
	}
	peak := 4
	for i := range nb {
		peak = max(peak, ok[i]+bad[i])
	}
	bw := plotW / float64(nb)
	nbad := 0
	for i := range nb {
		h := func(c int) float64 { return float64(c) / float64(peak) * (rowH - 10) }
		x0 := left + float64(i)*bw
		if ok[i] > 0 {
			d.Rects = append(d.Rects, svgRect{x0 + 0.5, y + rowH - h(ok[i]), bw - 1, h(ok[i]), grey, fmt.Sprintf("%d ok", ok[i])})
		}
		if bad[i] > 0 {
			nbad += bad[i]
			d.Rects = append(d.Rects, svgRect{x0 + 0.5, y + rowH - h(ok[i]) - h(bad[i]), bw - 1, h(bad[i]), red, fmt.Sprintf("%d failed", bad[i])})
		}
	}
	txt(left+plotW-4, y+14, fmt.Sprintf("grey ok, red failed: %d failed requests started in this window", nbad), "end", 10, "#555", false)

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return svgTmpl.Execute(f, d)
}
