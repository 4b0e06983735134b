package report_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lab/report"
	"lab/rundir"
)

// scalePage is a generated run's report.html and what its matrix must show.
type scalePage struct {
	scenarios, targets int
	file               string
	disagreeing        int    // scenarios the filter keeps
	agreeing, differ   int    // index of a scenario it hides, and of one it keeps
	lastID             string // the last scenario's id, for a click on its cell
	bytes              int
}

// scalePages renders report.html of generated runs of 1,000 and 10,000
// scenarios on 5 targets (gencatalog: test data, not a kernel).
func scalePages(tb testing.TB) [2]scalePage {
	tb.Helper()
	parent := tb.TempDir()
	var pages [2]scalePage
	for k, n := range []int{smallRun, largeRun} {
		dir := generatedRun(tb, parent, n, false)
		d, err := rundir.Read(dir)
		if err != nil {
			tb.Fatal(err)
		}
		c := report.Compare(d)
		html, err := report.HTML(c)
		if err != nil {
			tb.Fatal(err)
		}
		pg := scalePage{scenarios: n, targets: len(c.Targets), file: filepath.Join(dir, "report.html"), agreeing: -1, differ: -1, bytes: len(html)}
		if err := os.WriteFile(pg.file, html, 0o644); err != nil {
			tb.Fatal(err)
		}
		for i, s := range report.Document(c).Scenarios {
			if s.Disagrees {
				pg.disagreeing++
				if pg.differ < 0 {
					pg.differ = i
				}
			} else if pg.agreeing < 0 {
				pg.agreeing = i
			}
			pg.lastID = s.ID
		}
		pages[k] = pg
	}
	return pages
}

// pageTimes is what the browser measured of one page.
type pageTimes struct {
	paint, load, filterOn, filterOff float64 // ms
}

// scaleSession starts Chromium with room for pages of tens of megabytes.
func scaleSession(tb testing.TB) *session {
	chromium, driver := browserTools(tb)
	s := newSession(tb, driver, chromium, filepath.Join(tb.TempDir(), "profile"))
	s.hc.Timeout = 10 * time.Minute
	s.post("timeouts", map[string]any{"script": 600_000, "pageLoad": 600_000})
	return s
}

// measurePage opens a page and times, in the browser's own clock: its first
// contentful paint, the load (navigation start to the second frame after
// the page's script finished, so the page is laid out, painted and
// answers clicks), and the "only disagreements"
// filter switched on and off (from the change to the second frame after
// it). It checks the page works at that size: the counter, a hidden and a
// shown row, and a click on the very last cell opening its trace.
func measurePage(tb testing.TB, s *session, pg scalePage) pageTimes {
	tb.Helper()
	var m pageTimes
	s.post("url", map[string]any{"url": "file://" + pg.file})
	s.waitFor(`return document.body.dataset.ready === "true"`, "the page's script to finish")
	m.load = s.execAsync(`var done = arguments[0];
		requestAnimationFrame(function () { requestAnimationFrame(function () { done(performance.now()); }); });`).(float64)
	m.paint = s.exec(`var p = performance.getEntriesByName("first-contentful-paint")[0]; return p ? p.startTime : -1`).(float64)

	all := fmt.Sprintf("%d of %d scenarios shown", pg.scenarios, pg.scenarios)
	if got := s.text(s.find("#shown")); got != all {
		tb.Errorf("%d scenarios: counter says %q before filtering, want %q", pg.scenarios, got, all)
	}
	toggle := `var done = arguments[0], box = document.getElementById("only-disagreements");
		var t0 = performance.now();
		box.click();
		document.body.offsetHeight; // the layout the change calls for
		requestAnimationFrame(function () { requestAnimationFrame(function () { done(performance.now() - t0); }); });`
	m.filterOn = s.execAsync(toggle).(float64)
	want := fmt.Sprintf("%d of %d scenarios shown", pg.disagreeing, pg.scenarios)
	if got := s.text(s.find("#shown")); got != want {
		tb.Errorf("%d scenarios, only disagreements: counter says %q, want %q", pg.scenarios, got, want)
	}
	if s.displayed(s.find(fmt.Sprintf("#row-%d", pg.agreeing))) || !s.displayed(s.find(fmt.Sprintf("#row-%d", pg.differ))) {
		tb.Errorf("%d scenarios, only disagreements: row %d (agrees) shows or row %d (disagrees) is hidden", pg.scenarios, pg.agreeing, pg.differ)
	}
	m.filterOff = s.execAsync(toggle).(float64)
	if got := s.text(s.find("#shown")); got != all {
		tb.Errorf("%d scenarios, filter off again: counter says %q", pg.scenarios, got)
	}

	last := fmt.Sprintf("cell-%d-%d", pg.scenarios-1, pg.targets-1)
	s.exec(`document.getElementById("` + last + `").scrollIntoView({block: "center"})`)
	s.click(s.find("#" + last))
	if text := s.text(s.find("#trace")); !strings.Contains(text, pg.lastID+" on freebsd-14") {
		tb.Errorf("%d scenarios: a click on the last cell shows:\n%.300s", pg.scenarios, text)
	}
	return m
}

// TestHTMLInChromiumAtScale opens report.html of generated runs of 1,000
// and 10,000 scenarios on 5 targets in headless Chromium: the page must
// load, filter and show a trace at that size, and the times it took (in the
// browser's clock) are logged with their ratio; BenchmarkHTMLInChromium
// reports them as figures.
func TestHTMLInChromiumAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("renders and opens a 65 MB page; -short skips it")
	}
	s := scaleSession(t)
	pages := scalePages(t)
	var m [2]pageTimes
	for k, pg := range pages {
		m[k] = measurePage(t, s, pg)
		t.Logf("%6d scenarios x %d targets, %5.1f MB: first paint %6.0f ms, ready %6.0f ms, only disagreements %5.0f ms, all again %5.0f ms",
			pg.scenarios, pg.targets, float64(pg.bytes)/1e6, m[k].paint, m[k].load, m[k].filterOn, m[k].filterOff)
	}
	t.Logf("ratios 10,000/1,000: first paint %.1f, ready %.1f, filter on %.1f, filter off %.1f",
		m[1].paint/m[0].paint, m[1].load/m[0].load, m[1].filterOn/m[0].filterOn, m[1].filterOff/m[0].filterOff)
}

// BenchmarkHTMLInChromium reports the browser's load and filter times of
// the 1,000- and 10,000-scenario pages (see measurePage), measured
// alternately in each iteration, and their ratios.
//
//	go test ./report -run '^$' -bench HTMLInChromium -benchtime 3x
func BenchmarkHTMLInChromium(b *testing.B) {
	s := scaleSession(b)
	pages := scalePages(b)
	var sum [2]pageTimes
	for b.Loop() {
		for k, pg := range pages {
			m := measurePage(b, s, pg)
			sum[k].paint += m.paint
			sum[k].load += m.load
			sum[k].filterOn += m.filterOn
			sum[k].filterOff += m.filterOff
		}
	}
	n := float64(b.N)
	b.ReportMetric(sum[0].paint/n, "paint-ms/1k")
	b.ReportMetric(sum[1].paint/n, "paint-ms/10k")
	b.ReportMetric(sum[0].load/n, "load-ms/1k")
	b.ReportMetric(sum[1].load/n, "load-ms/10k")
	b.ReportMetric(sum[1].load/sum[0].load, "load-ratio")
	b.ReportMetric(sum[0].filterOn/n, "filter-ms/1k")
	b.ReportMetric(sum[1].filterOn/n, "filter-ms/10k")
	b.ReportMetric(sum[1].filterOn/sum[0].filterOn, "filter-ratio")
	b.ReportMetric(0, "ns/op")
}
