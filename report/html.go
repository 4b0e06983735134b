package report

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"math"
	"strings"

	"lab/rundir"
	"lab/wire"
)

// The page's template, style and script are separate files for editing and
// inlined into every report, so report.html is one file that fetches
// nothing.
var (
	//go:embed html.tmpl
	htmlTemplate string
	//go:embed html.css
	htmlCSS string
	//go:embed html.js
	htmlJS string

	pageTemplate = template.Must(template.New("report.html").Parse(htmlTemplate))
)

// HTML renders report.html: one self-contained page with the matrix of
// every scenario on every target (coloured by how each cell compares with
// the answer and the baseline, grouped by section, filterable to the
// disagreements), the trace behind each cell on a click, and a chart of
// every scenario with a spread step. The page embeds the part of
// report.json a trace shows (pageData), from which its script builds the
// traces.
func HTML(c *Comparison) ([]byte, error) {
	doc := Document(c)
	data, err := encodeDoc(pageData(doc), false, pageScenario) // escapes <, > and &: safe inside <script>
	if err != nil {
		return nil, fmt.Errorf("encoding the page's data: %w", err)
	}
	p := page{
		Doc:      doc,
		Cols:     2 + len(doc.Targets),
		MinWidth: 37 + 9*len(doc.Targets),
		CSS:      template.CSS(htmlCSS),
		JS:       template.JS(htmlJS),
	}
	p.Changes = len(doc.Summary.Changes)
	if !doc.Run.Started.IsZero() {
		p.Started = doc.Run.Started.UTC().Format("2006-01-02 15:04 UTC")
	}
	for _, t := range doc.Targets {
		p.Targets = append(p.Targets, pageTarget(t, c.Baseline != nil))
	}
	sectionIndex := map[string]int{}
	for i, s := range doc.Scenarios {
		k, ok := sectionIndex[s.Section]
		if !ok {
			k = len(p.Sections)
			sectionIndex[s.Section] = k
			p.Sections = append(p.Sections, pageSection{Name: s.Section})
		}
		sec := &p.Sections[k]
		row := pageRow{Index: i, ID: s.ID, Title: s.Title, Disagrees: s.Disagrees, Claims: claimList(s.Expect[doc.Source])}
		for j, cl := range s.Cells {
			row.Cells = append(row.Cells, pageCellOf(i, j, cl, doc.Source))
		}
		sec.Rows = append(sec.Rows, row)
		if s.Disagrees {
			sec.Disagreeing++
			p.Disagreeing++
		}
		if spreads(s) {
			p.Charts = append(p.Charts, chartOf(s))
		}
	}
	p.Findings = doc.Findings
	p.FindingGroups = findingGroups(doc)
	p.Durations = durationRows(doc)
	// The data, most of the page, goes in after the template ran: as a
	// template.JS it would be copied into a string and then through the
	// template's growing buffer.
	p.Data = dataMarker
	var b bytes.Buffer
	b.Grow(len(doc.Scenarios)*len(doc.Targets)*300 + 64<<10)
	if err := pageTemplate.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("rendering report.html: %w", err)
	}
	before, after, ok := bytes.Cut(b.Bytes(), []byte(dataMarker))
	if !ok {
		return nil, errors.New("rendering report.html: the template has no place for the data")
	}
	page := make([]byte, 0, len(before)+len(data)+len(after))
	return append(append(append(page, before...), data...), after...), nil
}

// dataMarker stands for the page's data while the template runs; the
// template escapes anything it is given as text, so no scenario or target
// can produce it.
const dataMarker = "/*lab:report-data*/"

// page is what html.tmpl renders.
type page struct {
	Doc         *Doc
	Started     string
	Changes     int
	Cols        int // columns of the matrix
	MinWidth    int // of the matrix, in rem: the fixed columns and a minimum per target
	Disagreeing int // scenarios the filter keeps
	Targets     []targetLine
	Sections    []pageSection
	Charts      []chart
	// Findings and FindingGroups: the findings, and the same grouped by
	// basis; Durations the waitfree measurements, one row per scenario.
	Findings      []DocFinding
	FindingGroups []pageFindingGroup
	Durations     []pageDurationRow
	Data          template.JS
	CSS           template.CSS
	JS            template.JS
}

type targetLine struct {
	DocTarget
	OS, Kernel, Arch string
	Agree, Disagree  int
	NoClaim          int
	NotMeasured      int
	Baseline         bool
	Phases           string
}

func pageTarget(t DocTarget, baseline bool) targetLine {
	l := targetLine{DocTarget: t, OS: "?", Kernel: "?", Arch: "?", Baseline: baseline,
		Agree: t.Counts[Match], Disagree: t.Counts[Differ], NoClaim: t.Counts[NoClaim], NotMeasured: t.Counts[Unmeasured] + t.Counts[Missing]}
	if t.Env != nil {
		l.OS, l.Kernel, l.Arch = envOS(t.Env), envKernel(t.Env), t.Env.Arch
	}
	var ps []string
	for _, ph := range t.Phases {
		ps = append(ps, fmt.Sprintf("%s %.1fs", ph.Name, float64(ph.Millis)/1000))
	}
	l.Phases = strings.Join(ps, ", ")
	return l
}

type pageSection struct {
	Name        string
	Rows        []pageRow
	Disagreeing int
}

// Height estimates the section's height in pixels until the browser lays
// it out: the page skips laying out the sections off screen
// (content-visibility), and this keeps the scroll bar near the truth.
func (s pageSection) Height() int { return 30 + 42*len(s.Rows) }

// pageData is the document as the page embeds it: what its script shows
// in a trace, and nothing a trace never shows (the whole comparison is
// report.json), so a large run's page stays as small as it can.
func pageData(d *Doc) *Doc {
	p := *d
	p.Format = "lab-report-page/1"
	p.Targets = make([]DocTarget, len(d.Targets))
	for i, t := range d.Targets {
		p.Targets[i] = DocTarget{Name: t.Name, Status: t.Status, Error: t.Error, Env: t.Env}
	}
	p.Sections, p.Summary = nil, DocSummary{}
	return &p
}

// pageScenario is a scenario as pageData embeds it: the steps a trace shows
// (text, call, result, errno, local address, counts, time), without the
// arguments the call's text already spells out, nor the claims, which
// the page renders beside the cells.
func pageScenario(s *DocScenario) *DocScenario {
	p := DocScenario{Scenario: rundir.Scenario{ID: s.ID, Title: s.Title, Source: s.Source, Note: s.Note, Steps: s.Steps}, Cells: make([]DocCell, len(s.Cells))}
	for i, cl := range s.Cells {
		p.Cells[i] = cl
		if cl.Result == nil {
			continue
		}
		r := *cl.Result
		r.Steps = make([]wire.StepResult, len(cl.Result.Steps))
		for j, st := range cl.Result.Steps {
			r.Steps[j] = wire.StepResult{Text: st.Text, Call: st.Call, Result: st.Result, Errno: st.Errno, Local: st.Local, Counts: st.Counts, Sent: st.Sent, Micros: st.Micros}
		}
		p.Cells[i].Result = &r
	}
	return &p
}

type pageRow struct {
	Index     int
	ID, Title string
	Claims    []string
	Disagrees bool
	Cells     []pageCell
}

type pageCell struct {
	S, T    int // indexes into the data's scenarios and their cells
	State   string
	Mark    string // ✓, ✗ or nothing
	Outcome string
	Sub     string // the claim beside a disagreement
	Changed bool
	Was     string // the baseline's outcome, when it changed
	Tip     string
}

func pageCellOf(s, t int, cl DocCell, source string) pageCell {
	pc := pageCell{S: s, T: t, State: cl.State, Outcome: cl.Outcome, Changed: cl.BaselineState == Changed, Was: cl.Baseline}
	tip := []string{cl.Target + ": " + cl.State}
	switch cl.State {
	case Match:
		pc.Mark = "✓"
	case Differ:
		pc.Mark = "✗"
		if cl.Result != nil {
			pc.Outcome = observed(cl.Result)
		}
		pc.Sub = source + ": " + cl.Claim
		tip = append(tip, source+" claims "+cl.Claim)
	case Missing:
		pc.Outcome = "—"
	}
	if cl.Result != nil && cl.Result.Reason != "" {
		tip = append(tip, cl.Result.Reason)
	}
	if cl.BaselineState != "" {
		tip = append(tip, "baseline: "+orNone(cl.Baseline)+" ("+cl.BaselineState+")")
	}
	pc.Tip = strings.Join(tip, "; ")
	return pc
}

func claimList(m map[string]string) []string {
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, k+": "+m[k])
	}
	return out
}

// chart is the bar chart of one spread scenario: per target, how many
// datagrams or connections each socket received.
type chart struct {
	ID, Title     string
	Width, Height int
	PlotTop       int // y of the plot's top
	Base          int // y of the bars' base line
	Left, Right   int // x of the axis and the plot's right end
	Ticks         []tick
	Groups        []barGroup
	Absent        []string // targets without a spread result, and why
}

type tick struct {
	Y     int
	Label string
}

type barGroup struct {
	Target, Outcome, State string
	X, Mid                 int // left edge and middle of the group
	FairY                  int // y of the fair share line
	FairX2                 int
	Fair                   string
	Bars                   []bar
}

type bar struct {
	X, Y, W, H int
	Socket     string
	Count      int
	Colour     int // index into the palette of html.css
	Tip        string
}

// Chart geometry in SVG user units.
const (
	barWidth  = 22
	barGap    = 4
	groupGap  = 34
	plotLeft  = 44
	plotTop   = 18
	plotH     = 140
	plotRight = 12
	labelsH   = 44
)

func chartOf(s DocScenario) chart {
	ch := chart{ID: s.ID, Title: s.Title, PlotTop: plotTop, Base: plotTop + plotH, Left: plotLeft}
	type spread struct {
		cell   DocCell
		socks  []string
		counts []int
		sent   int
	}
	var got []spread
	most := 1
	for _, cl := range s.Cells {
		st := spreadStep(cl.Result)
		if st == nil {
			why := cl.Outcome
			if cl.State == Missing {
				why = "no result"
			}
			ch.Absent = append(ch.Absent, cl.Target+": "+why)
			continue
		}
		got = append(got, spread{cl, socketNames(st), st.Counts, st.Sent})
		for _, n := range st.Counts {
			most = max(most, n)
		}
		if len(st.Counts) > 0 {
			most = max(most, st.Sent/len(st.Counts))
		}
	}
	top := niceCeil(most)
	y := func(n int) int { return ch.Base - int(math.Round(float64(n)*plotH/float64(top))) }
	for _, v := range []int{0, top / 2, top} {
		ch.Ticks = append(ch.Ticks, tick{Y: y(v), Label: fmt.Sprint(v)})
	}
	x := plotLeft + 10
	for _, g := range got {
		bg := barGroup{Target: g.cell.Target, Outcome: g.cell.Outcome, State: g.cell.State, X: x}
		for i, n := range g.counts {
			name := g.socks[i]
			bg.Bars = append(bg.Bars, bar{X: x, Y: y(n), W: barWidth, H: ch.Base - y(n), Socket: name, Count: n, Colour: i % 6,
				Tip: fmt.Sprintf("%s, socket %s: %d of %d", g.cell.Target, name, n, g.sent)})
			x += barWidth + barGap
		}
		x -= barGap
		bg.Mid = (bg.X + x) / 2
		if len(g.counts) > 0 {
			fair := g.sent / len(g.counts)
			bg.FairY, bg.FairX2, bg.Fair = y(fair), x, fmt.Sprintf("fair share: %d of %d each", fair, g.sent)
		}
		ch.Groups = append(ch.Groups, bg)
		x += groupGap
	}
	ch.Right = x - groupGap + plotRight
	if ch.Right < plotLeft+120 {
		ch.Right = plotLeft + 120
	}
	ch.Width = ch.Right + plotRight
	ch.Height = ch.Base + labelsH
	return ch
}

// spreads reports whether a scenario measures load distribution: it has a
// spread step, or a target counted one. Its id says nothing: a spread
// scenario may sit in any section.
func spreads(s DocScenario) bool {
	for _, st := range s.Steps {
		if f := strings.Fields(st); len(f) > 0 && f[0] == wire.VerbSpread {
			return true
		}
	}
	for _, cl := range s.Cells {
		if spreadStep(cl.Result) != nil {
			return true
		}
	}
	return false
}

// spreadStep is the last step of a result that counted a spread.
func spreadStep(r *wire.Result) *wire.StepResult {
	if r == nil {
		return nil
	}
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if len(r.Steps[i].Counts) > 0 {
			return &r.Steps[i]
		}
	}
	return nil
}

// socketNames reads the sockets of "spread N A,B,C"; counts come in that
// order.
func socketNames(st *wire.StepResult) []string {
	var names []string
	if f := strings.Fields(st.Text); len(f) >= 3 && f[0] == wire.VerbSpread {
		names = strings.Split(f[len(f)-1], ",")
	}
	for len(names) < len(st.Counts) {
		names = append(names, fmt.Sprintf("#%d", len(names)+1))
	}
	return names
}

// niceCeil rounds n up to a round number for the chart's axis: an even
// number up to 10, above that one of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a
// power of ten.
func niceCeil(n int) int {
	if n <= 10 {
		return max(2, n+n%2)
	}
	p := 10
	for p*10 < n {
		p *= 10
	}
	for _, m := range []int{10, 15, 20, 25, 30, 40, 50, 60, 80} {
		if m*p/10 >= n {
			return m * p / 10
		}
	}
	return 10 * p
}
