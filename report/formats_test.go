package report_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"lab/report"
	"lab/rundir"
	"lab/wire"
)

// readRun reads a run directory under testdata.
func readRun(t *testing.T, dir string) *rundir.Dir {
	t.Helper()
	d, err := rundir.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// run2 is testdata/run2 compared with the answer and with testdata/run1 as
// its baseline; see testdata/run2/README.
func run2(t *testing.T, baseline bool) *report.Comparison {
	c := report.Compare(readRun(t, "testdata/run2"))
	if baseline {
		c.WithBaseline(readRun(t, "testdata/run1"))
	}
	return c
}

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./report -update creates it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test ./report -update rewrites it):\n%s", path, lineDiff(string(want), string(got)))
	}
}

func TestReportGoldens(t *testing.T) {
	tests := []struct {
		golden   string
		baseline bool
		render   func(*report.Comparison) ([]byte, error)
	}{
		{"run2.html", true, report.HTML},
		{"run2.json", true, report.JSON},
		{"run2.junit.xml", false, report.JUnit},
		{"run2-baseline.junit.xml", true, report.JUnit},
		{"run2.md", true, func(c *report.Comparison) ([]byte, error) { return report.Markdown(c), nil }},
		{"run1-run2.diff", false, func(*report.Comparison) ([]byte, error) {
			return report.Diff(readRun(t, "testdata/run1"), readRun(t, "testdata/run2")).Text(), nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			got, err := tc.render(run2(t, tc.baseline))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, got)
		})
	}
}

func TestReportBaselineStates(t *testing.T) {
	tests := []struct {
		name            string
		before, after   string // "" is no result
		state           string
		changedExpected bool
	}{
		{"same errno", "EADDRINUSE", "EADDRINUSE", report.Same, false},
		{"errno to ok", "EADDRINUSE", "ok", report.Changed, true},
		{"ok to unsupported", "ok", wire.Unsupported, report.Changed, true},
		{"setup-failed is behaviour", wire.SetupFailed, "EADDRINUSE", report.Changed, true},
		{"spread verdict", wire.SpreadEven, wire.SpreadSingle, report.Changed, true},
		{"new in this run", "", "ok", report.Uncompared, false},
		{"gone from this run", "ok", "", report.Uncompared, false},
		{"skipped now", "ok", wire.Skipped, report.Uncompared, false},
		{"timed out now", "ok", wire.Timeout, report.Uncompared, false},
		{"agent error before", wire.Error, "ok", report.Uncompared, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := func(outcome string) *rundir.Dir {
				tgt := rundir.Target{Name: "t1", Status: rundir.StatusComplete}
				if outcome != "" {
					tgt.Results = []rundir.Outcome{outcome_(outcome)}
				}
				return &rundir.Dir{Run: rundir.Run{ID: "r", Scenarios: []rundir.Scenario{{ID: "s"}}}, Targets: []rundir.Target{tgt}}
			}
			c := report.Compare(dir(tc.after)).WithBaseline(dir(tc.before))
			cl := c.Rows[0].Cells[0]
			if cl.BaselineState != tc.state || cl.Baseline != tc.before {
				t.Errorf("cell baseline %q state %q; want %q state %q", cl.Baseline, cl.BaselineState, tc.before, tc.state)
			}
			if got := len(c.Changes()) == 1; got != tc.changedExpected {
				t.Errorf("Changes() = %v; want a change: %v", c.Changes(), tc.changedExpected)
			}
			if c.Rows[0].Disagrees() != tc.changedExpected {
				t.Errorf("row disagrees = %v, want %v", c.Rows[0].Disagrees(), tc.changedExpected)
			}
		})
	}
}

func outcome_(out string) rundir.Outcome { return outcome("s", out, "") }

func TestDiff(t *testing.T) {
	type tgt struct {
		name, kernel string
		results      map[string]string // scenario -> outcome
	}
	dir := func(id string, scenarios []string, ts ...tgt) *rundir.Dir {
		d := &rundir.Dir{Path: id, Run: rundir.Run{ID: id}}
		for _, s := range scenarios {
			d.Run.Scenarios = append(d.Run.Scenarios, rundir.Scenario{ID: s})
		}
		for _, x := range ts {
			rt := rundir.Target{Name: x.name, Status: rundir.StatusComplete, Env: &wire.Env{KernelRelease: x.kernel}}
			for _, s := range scenarios {
				if o, ok := x.results[s]; ok {
					rt.Results = append(rt.Results, outcome(s, o, ""))
				}
			}
			d.Targets = append(d.Targets, rt)
		}
		return d
	}
	ab := []string{"a/1", "b/2"}
	tests := []struct {
		name       string
		a, b       *rundir.Dir
		changes    []report.Change
		uncompared int
		kernels    int
		unrun      int
		onlyA      []string // targets
		onlyB      []string
		scenOnlyA  []string
		scenOnlyB  []string
	}{
		{name: "identical",
			a: dir("A", ab, tgt{"x", "1", map[string]string{"a/1": "ok", "b/2": "EADDRINUSE"}}),
			b: dir("B", ab, tgt{"x", "1", map[string]string{"a/1": "ok", "b/2": "EADDRINUSE"}})},
		{name: "one outcome changed on one target",
			a:       dir("A", ab, tgt{"x", "1", map[string]string{"a/1": "ok", "b/2": "EADDRINUSE"}}, tgt{"y", "1", map[string]string{"a/1": "ok", "b/2": "ok"}}),
			b:       dir("B", ab, tgt{"x", "1", map[string]string{"a/1": "ok", "b/2": "ok"}}, tgt{"y", "1", map[string]string{"a/1": "ok", "b/2": "ok"}}),
			changes: []report.Change{{Target: "x", Scenario: "b/2", Before: "EADDRINUSE", After: "ok"}}},
		{name: "targets matched by name, not position",
			a: dir("A", ab, tgt{"y", "1", map[string]string{"a/1": "EINVAL", "b/2": "ok"}}, tgt{"x", "1", map[string]string{"a/1": "ok", "b/2": "ok"}}),
			b: dir("B", ab, tgt{"x", "1", map[string]string{"a/1": "ok", "b/2": "ok"}}, tgt{"y", "1", map[string]string{"a/1": "EINVAL", "b/2": "ok"}})},
		{name: "skipped and timeout are not changes",
			a:          dir("A", ab, tgt{"x", "1", map[string]string{"a/1": "ok", "b/2": wire.Skipped}}),
			b:          dir("B", ab, tgt{"x", "1", map[string]string{"a/1": wire.Timeout, "b/2": "ok"}}),
			uncompared: 2},
		{name: "kernel changed, behaviour did not",
			a:       dir("A", ab, tgt{"x", "6.1.0-28", map[string]string{"a/1": "ok", "b/2": "ok"}}),
			b:       dir("B", ab, tgt{"x", "6.1.0-50", map[string]string{"a/1": "ok", "b/2": "ok"}}),
			kernels: 1},
		{name: "a target without results in one run",
			a:     dir("A", ab, tgt{"x", "1", map[string]string{"a/1": "ok", "b/2": "ok"}}),
			b:     dir("B", ab, tgt{"x", "1", nil}),
			unrun: 1},
		{name: "targets and scenarios in one run only",
			a:     dir("A", []string{"a/1", "old/3"}, tgt{"x", "1", map[string]string{"a/1": "ok", "old/3": "ok"}}, tgt{"gone", "1", map[string]string{"a/1": "ok"}}),
			b:     dir("B", []string{"a/1", "new/4"}, tgt{"x", "1", map[string]string{"a/1": "ok", "new/4": "ok"}}, tgt{"fresh", "1", map[string]string{"a/1": "ok"}}),
			onlyA: []string{"gone"}, onlyB: []string{"fresh"}, scenOnlyA: []string{"old/3"}, scenOnlyB: []string{"new/4"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := report.Diff(tc.a, tc.b)
			if !reflect.DeepEqual(d.Changes, tc.changes) {
				t.Errorf("Changes = %+v, want %+v", d.Changes, tc.changes)
			}
			if len(d.Uncompared) != tc.uncompared || len(d.Kernels) != tc.kernels || len(d.Unrun) != tc.unrun {
				t.Errorf("%d uncompared, %d kernel changes, %d unrun; want %d, %d, %d", len(d.Uncompared), len(d.Kernels), len(d.Unrun), tc.uncompared, tc.kernels, tc.unrun)
			}
			for _, x := range []struct {
				what      string
				got, want []string
			}{{"TargetsOnlyA", d.TargetsOnlyA, tc.onlyA}, {"TargetsOnlyB", d.TargetsOnlyB, tc.onlyB},
				{"ScenariosOnlyA", d.ScenariosOnlyA, tc.scenOnlyA}, {"ScenariosOnlyB", d.ScenariosOnlyB, tc.scenOnlyB}} {
				if !reflect.DeepEqual(x.got, x.want) {
					t.Errorf("%s = %v, want %v", x.what, x.got, x.want)
				}
			}
			text := string(d.Text())
			if want := "no behaviour changed"; (len(tc.changes) == 0) != strings.Contains(text, want) {
				t.Errorf("text says %q exactly when nothing changed:\n%s", want, text)
			}
			for _, ch := range tc.changes {
				if line := "  " + ch.Scenario + ": " + ch.Before + " -> " + ch.After; !strings.Contains(text, line) {
					t.Errorf("text lacks %q:\n%s", line, text)
				}
			}
		})
	}
}

// TestJUnitCases checks each kind of cell becomes the test case result
// junit.go documents, with and without a baseline.
func TestJUnitCases(t *testing.T) {
	type tcase struct {
		Name    string `xml:"name,attr"`
		Class   string `xml:"classname,attr"`
		Failure *struct {
			Message string `xml:"message,attr"`
		} `xml:"failure"`
		Error *struct {
			Message string `xml:"message,attr"`
		} `xml:"error"`
		Skipped *struct {
			Message string `xml:"message,attr"`
		} `xml:"skipped"`
	}
	type junitDoc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Name  string  `xml:"name,attr"`
			Cases []tcase `xml:"testcase"`
		} `xml:"testsuite"`
	}
	kind := func(c tcase) string {
		switch {
		case c.Failure != nil:
			return "failure: " + c.Failure.Message
		case c.Error != nil:
			return "error: " + c.Error.Message
		case c.Skipped != nil:
			return "skipped: " + c.Skipped.Message
		}
		return "passed"
	}
	tests := []struct {
		name     string
		baseline bool
		want     map[string]string // target + " " + scenario -> result, by prefix
	}{
		{"against the answer", false, map[string]string{
			"linux-6.1 bsd-table/row6/on":                        "failure: observed EADDRINUSE, answer claims ok (linux)",
			"linux-6.1 bsd-table/row1/off":                       "passed",
			"linux-6.1 multicast/mixed/reuseaddr-then-reuseport": "skipped: no claim",
			"fake-linux-3.2 windows/exclusiveaddruse":            "skipped: skipped: needs root",
			"fake-freebsd windows/exclusiveaddruse":              "error: timeout: the scenario outlived",
			"never-started bsd-table/row6/on":                    "error: no result: target missing: no results file",
			"fake-freebsd distribution/udp-reuseport":            "skipped: no claim",
			"fake-linux-3.2 distribution/udp-reuseport":          "passed",
		}},
		{"against a baseline", true, map[string]string{
			"linux-6.1 bsd-table/row6/on":                           "passed",
			"fake-freebsd bsd-table/row1/off":                       "failure: observed EADDRINUSE, baseline 20260101T120000Z observed ok",
			"fake-freebsd bsd-table/row1/on":                        "failure: observed EADDRINUSE, baseline 20260101T120000Z observed setup-failed",
			"fake-freebsd multicast/mixed/reuseaddr-then-reuseport": "skipped: not compared: baseline 20260101T120000Z has no result",
			"fake-freebsd windows/exclusiveaddruse":                 "error: timeout",
			"fake-linux-3.2 windows/exclusiveaddruse":               "skipped: not compared: observed skipped",
			"linux-6.1 distribution/udp-reuseport":                  "skipped: not compared: baseline 20260101T120000Z has no result",
			"never-started reuseport/exists/udp":                    "error: no result",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := report.JUnit(run2(t, tc.baseline))
			if err != nil {
				t.Fatal(err)
			}
			var doc junitDoc
			if err := xml.Unmarshal(b, &doc); err != nil {
				t.Fatalf("junit.xml does not parse: %v", err)
			}
			got := map[string]string{}
			n, failures, errs, skipped := 0, 0, 0, 0
			for _, s := range doc.Suites {
				for _, c := range s.Cases {
					if c.Class != s.Name {
						t.Errorf("case %s of suite %s has classname %q", c.Name, s.Name, c.Class)
					}
					k := kind(c)
					got[s.Name+" "+c.Name] = k
					n++
					switch strings.SplitN(k, ":", 2)[0] {
					case "failure":
						failures++
					case "error":
						errs++
					case "skipped":
						skipped++
					}
				}
			}
			if n != 4*8 || doc.Tests != n || doc.Failures != failures || doc.Errors != errs || doc.Skipped != skipped {
				t.Errorf("totals tests=%d failures=%d errors=%d skipped=%d; counted %d cases, %d, %d, %d (want 32 cases)", doc.Tests, doc.Failures, doc.Errors, doc.Skipped, n, failures, errs, skipped)
			}
			for k, want := range tc.want {
				if !strings.HasPrefix(got[k], want) {
					t.Errorf("%s: %q, want %q...", k, got[k], want)
				}
			}
		})
	}
}

// TestReportJSONRoundTrip checks report.json decodes into report.Doc with
// a cell for every target of every scenario and the traces intact.
func TestReportJSONRoundTrip(t *testing.T) {
	b, err := report.JSON(run2(t, true))
	if err != nil {
		t.Fatal(err)
	}
	var d report.Doc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Format != report.JSONFormat || d.Run.ID != "20260102T120000Z" || d.Baseline == nil || d.Baseline.ID != "20260101T120000Z" {
		t.Errorf("header: format %q run %q baseline %+v", d.Format, d.Run.ID, d.Baseline)
	}
	if len(d.Scenarios) != 8 || len(d.Targets) != 4 {
		t.Fatalf("%d scenarios, %d targets; want 8, 4", len(d.Scenarios), len(d.Targets))
	}
	for _, s := range d.Scenarios {
		if len(s.Cells) != len(d.Targets) {
			t.Errorf("%s has %d cells", s.ID, len(s.Cells))
		}
	}
	c := d.Scenarios[1].Cells[0] // bsd-table/row1/off on linux-6.1, a real trace
	if c.Result == nil || len(c.Result.Steps) != 4 || c.Result.Steps[3].Call != "bind(127.0.0.2:42587)" || c.Result.Ports["P"] != 42587 || c.ClaimKey != "linux" {
		t.Errorf("linux-6.1 bsd-table/row1/off: %+v", c)
	}
	if want := 2; len(d.Summary.Changes) != want || d.Targets[2].Changed != want {
		t.Errorf("summary changes %v, fake-freebsd changed %d; want %d", d.Summary.Changes, d.Targets[2].Changed, want)
	}

	// report.json sits in the run directory, where rundir.Read takes any
	// *.json naming a target for a target's results: it must read as none.
	var tgt rundir.Target
	if err := json.Unmarshal(b, &tgt); err != nil || tgt.Name != "" {
		t.Errorf("report.json read as a target's results: %+v, %v", tgt, err)
	}
}

// TestHTMLRows renders a run whose sections interleave and checks every
// scenario gets exactly one row, in its section, with one cell per target.
func TestHTMLRows(t *testing.T) {
	d := &rundir.Dir{Run: rundir.Run{ID: "r"}, Targets: []rundir.Target{{Name: "x", Status: rundir.StatusComplete}, {Name: "y", Status: rundir.StatusComplete}}}
	for i := range 60 {
		id := fmt.Sprintf("sec%d/s%d", i%7, i)
		d.Run.Scenarios = append(d.Run.Scenarios, rundir.Scenario{ID: id})
		d.Targets[0].Results = append(d.Targets[0].Results, outcome(id, "ok", "ok"))
	}
	b, err := report.HTML(report.Compare(d))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	if n := strings.Count(page, `<tr class="row"`); n != 60 {
		t.Errorf("%d rows, want 60", n)
	}
	if n := strings.Count(page, `<div class="section"`); n != 7 {
		t.Errorf("%d sections, want 7", n)
	}
	if n := strings.Count(page, `<td class="cell `); n != 120 {
		t.Errorf("%d cells, want 120", n)
	}
	for i := range 60 {
		if !strings.Contains(page, fmt.Sprintf(`data-id="sec%d/s%d"`, i%7, i)) {
			t.Errorf("no row for sec%d/s%d", i%7, i)
		}
	}
	for _, banned := range []string{"http://", "https://", "<link", "@import", " src="} {
		if strings.Contains(strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, ""), banned) {
			t.Errorf("the page contains %q: it must fetch nothing", banned)
		}
	}
}

// setupFailedRun is one scenario whose setup the kernel refuses on every
// target: B's bind fails before B can listen. The targets differ in what
// the answer claims for them.
func setupFailedRun(baseline bool) *rundir.Dir {
	sc := rundir.Scenario{ID: "linux/listen-specific-then-any/both/listen", Proto: "tcp",
		Steps: []string{"socket A SO_REUSEADDR", "bind A addr1:P", "listen A", "socket B SO_REUSEADDR", "bind B any:P", "listen B"}}
	failed := func(claim string) rundir.Outcome {
		o := outcome(sc.ID, wire.SetupFailed, claim)
		o.Reason = "step 5 (bind B any:P): EADDRINUSE"
		o.Steps = []wire.StepResult{{Text: "socket A SO_REUSEADDR", Result: wire.OK}, {Text: "bind A addr1:P", Result: wire.OK},
			{Text: "listen A", Result: wire.OK}, {Text: "socket B SO_REUSEADDR", Result: wire.OK}, {Text: "bind B any:P", Result: "EADDRINUSE", Errno: 98}}
		if claim != "" {
			o.ClaimKeys = map[string]string{"answer": "linux"}
		}
		return o
	}
	id := "now"
	if baseline {
		id = "before"
	}
	d := &rundir.Dir{Run: rundir.Run{ID: id, Scenarios: []rundir.Scenario{sc}}}
	for _, x := range []struct{ name, claim string }{{"claims-ok", "ok"}, {"claims-setup-failed", wire.SetupFailed}, {"claims-unsupported", wire.Unsupported}, {"no-claim", ""}} {
		d.Targets = append(d.Targets, rundir.Target{Name: x.name, Status: rundir.StatusComplete, Results: []rundir.Outcome{failed(x.claim)}})
	}
	return d
}

// TestSetupFailedAgainstClaim checks that a setup-failed outcome where the
// answer claims the script's outcome is a disagreement in every format,
// naming the step that failed, and that a baseline comparison still sets
// outcome beside outcome.
func TestSetupFailedAgainstClaim(t *testing.T) {
	const observed = "setup-failed: bind B EADDRINUSE"
	c := report.Compare(setupFailedRun(false))
	states := map[string]string{}
	for _, cl := range c.Rows[0].Cells {
		states[cl.Target] = cl.State
	}
	wantStates := map[string]string{"claims-ok": report.Differ, "claims-setup-failed": report.Match, "claims-unsupported": report.Unmeasured, "no-claim": report.Unmeasured}
	if !reflect.DeepEqual(states, wantStates) {
		t.Errorf("states %v, want %v", states, wantStates)
	}
	if got := c.Rows[0].Cells[0].Observed(); got != observed {
		t.Errorf("Observed() = %q, want %q", got, observed)
	}
	if ds := c.Disagreements(); len(ds) != 1 || len(ds[0].Targets) != 1 || ds[0].Targets[0].Target != "claims-ok" {
		t.Errorf("Disagreements = %+v, want claims-ok alone", ds)
	}

	md := string(report.Markdown(c))
	for _, s := range []string{
		"## Findings (1 from the answer's words, 0 beyond the answer, 0 from the kernel's own selftests)",
		"1 scenarios disagree with the answer.",
		"claims-ok observed `" + observed + "`; answer: `ok`",
		"| **✗ `" + observed + "`** (answer: `ok`) | ✓ `setup-failed` | `setup-failed` (step 5 (bind B any:P): EADDRINUSE) | `setup-failed` (step 5 (bind B any:P): EADDRINUSE) |",
	} {
		if !strings.Contains(md, s) {
			t.Errorf("Markdown lacks %q:\n%s", s, md)
		}
	}

	b, err := report.JSON(c)
	if err != nil {
		t.Fatal(err)
	}
	var doc report.Doc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if s := doc.Scenarios[0]; !s.Disagrees || s.Cells[0].State != report.Differ || doc.Summary.Disagreements != 1 || doc.Targets[0].Counts[report.Differ] != 1 {
		t.Errorf("JSON: disagrees %v, first cell %q, summary %d disagreements, counts %v", s.Disagrees, s.Cells[0].State, doc.Summary.Disagreements, doc.Targets[0].Counts)
	}

	page, err := report.HTML(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `<td class="cell differ" id="cell-0-0" data-s="0" data-t="0" tabindex="0" title="claims-ok: differ; answer claims ok; step 5 (bind B any:P): EADDRINUSE"><span class="mark">✗</span> <span class="outcome">` + observed + `</span><small>answer: ok</small></td>`; !strings.Contains(string(page), want) {
		t.Errorf("HTML lacks %s", want)
	}

	for _, tc := range []struct {
		name     string
		baseline bool
		want     []string // per target: the case's element and message, by prefix
	}{
		{"against the answer", false, []string{
			`<failure message="observed ` + observed + `, answer claims ok (linux); finding: `,
			"<system-out>", // passed: setup-failed as claimed
			`<skipped message="setup-failed: step 5 (bind B any:P): EADDRINUSE">`,
			`<skipped message="setup-failed: step 5 (bind B any:P): EADDRINUSE">`,
		}},
		// Against a baseline that also failed setup, nothing changed,
		// whatever the answer claims.
		{"against a baseline", true, []string{"<system-out>", "<system-out>", "<system-out>", "<system-out>"}},
	} {
		t.Run("junit "+tc.name, func(t *testing.T) {
			c := report.Compare(setupFailedRun(false))
			if tc.baseline {
				c.WithBaseline(setupFailedRun(true))
				for _, cl := range c.Rows[0].Cells {
					if cl.BaselineState != report.Same {
						t.Errorf("%s: baseline state %q, want %q", cl.Target, cl.BaselineState, report.Same)
					}
				}
			}
			b, err := report.JUnit(c)
			if err != nil {
				t.Fatal(err)
			}
			cases := strings.Split(string(b), "<testcase ")[1:]
			if len(cases) != len(tc.want) {
				t.Fatalf("%d test cases, want %d", len(cases), len(tc.want))
			}
			for i, want := range tc.want {
				if body := strings.TrimSpace(cases[i][strings.Index(cases[i], ">")+1:]); !strings.HasPrefix(body, want) {
					t.Errorf("case %d: %.200s; want it to begin %s", i, body, want)
				}
			}
		})
	}
}

// TestMarkdownColumnHeaders checks each target's column is headed by its
// name, OS and kernel release.
func TestMarkdownColumnHeaders(t *testing.T) {
	tests := []struct {
		name string
		env  *wire.Env
		want string
	}{
		{"linux-5.10", &wire.Env{OS: "linux", KernelRelease: "5.10.0-32-cloud-amd64"}, "linux-5.10<br>linux 5.10.0-32-cloud-amd64"},
		{"freebsd", &wire.Env{OS: "freebsd", KernelRelease: "14.1-RELEASE"}, "freebsd<br>freebsd 14.1-RELEASE"},
		{"wine", &wire.Env{OS: "windows", KernelRelease: "6.1.7601", KernelVersion: "Wine 8.0 on Linux 6.1.0"}, "wine<br>windows 6.1.7601 (Wine)"},
		{"never-started", nil, "never-started"},
		{"a|b", &wire.Env{OS: "linux", KernelRelease: "6.1|x"}, `a\|b<br>linux 6.1\|x`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &rundir.Dir{
				Run:     rundir.Run{ID: "r", Scenarios: []rundir.Scenario{{ID: "s/1"}}},
				Targets: []rundir.Target{{Name: tc.name, Env: tc.env, Status: rundir.StatusComplete}},
			}
			md := string(report.Markdown(report.Compare(d)))
			if want := "| scenario | answer claims | " + tc.want + " |\n"; !strings.Contains(md, want) {
				t.Errorf("Markdown lacks the header %q:\n%s", want, md)
			}
		})
	}
}

// TestHTMLChartsBySpread checks a chart is drawn for every scenario with a
// spread step or counts, whatever its id, and for no other.
func TestHTMLChartsBySpread(t *testing.T) {
	counted := func(id string) rundir.Outcome {
		o := outcome(id, wire.SpreadEven, "")
		o.Steps = []wire.StepResult{{Text: "spread 300 A,B", Result: wire.SpreadEven, Counts: []int{150, 150}, Sent: 300}}
		return o
	}
	spread := []string{"socket A SO_REUSEPORT", "bind A loop:P", "socket B SO_REUSEPORT", "bind B loop:P", "spread 300 A,B"}
	d := &rundir.Dir{
		Run: rundir.Run{ID: "r", Scenarios: []rundir.Scenario{
			{ID: "reuseport/balance", Steps: spread},          // counted, outside distribution/
			{ID: "reuseport/balance-failed", Steps: spread},   // a spread step, no counts
			{ID: "distribution/bind-only", Steps: spread[:2]}, // in distribution/, no spread
			{ID: "other/counted"},                             // counts, steps not recorded
		}},
		Targets: []rundir.Target{{Name: "x", Status: rundir.StatusComplete, Results: []rundir.Outcome{
			counted("reuseport/balance"),
			outcome("reuseport/balance-failed", wire.SetupFailed, ""),
			outcome("distribution/bind-only", wire.OK, ""),
			counted("other/counted"),
		}}},
	}
	b, err := report.HTML(report.Compare(d))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{"reuseport/balance": true, "reuseport/balance-failed": true, "distribution/bind-only": false, "other/counted": true} {
		if got := strings.Contains(string(b), `<figure class="chart" id="chart-`+id+`">`); got != want {
			t.Errorf("chart for %s: %v, want %v", id, got, want)
		}
	}
	if !strings.Contains(string(b), "No counts: x: setup-failed.") {
		t.Errorf("the chart of reuseport/balance-failed does not say why it has no counts")
	}
}

// TestCellObserved checks how an outcome is shown beside a claim.
func TestCellObserved(t *testing.T) {
	tests := []struct {
		name   string
		result wire.Result
		want   string
	}{
		{"an errno", wire.Result{Outcome: "EADDRINUSE"}, "EADDRINUSE"},
		{"setup-failed names the step", wire.Result{Outcome: wire.SetupFailed, Reason: "step 2 (bind A addr1:P): EADDRNOTAVAIL",
			Steps: []wire.StepResult{{Text: "socket A", Result: wire.OK}, {Text: "bind A addr1:P", Result: "EADDRNOTAVAIL"}}}, "setup-failed: bind A EADDRNOTAVAIL"},
		{"setup-failed without steps", wire.Result{Outcome: wire.SetupFailed, Reason: "step 2 (bind A addr1:P): EADDRNOTAVAIL"}, "setup-failed: step 2 (bind A addr1:P): EADDRNOTAVAIL"},
		{"setup-failed without steps or reason", wire.Result{Outcome: wire.SetupFailed}, "setup-failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl := report.Cell{Outcome: tc.result.Outcome, Result: &rundir.Outcome{Result: tc.result}}
			if got := cl.Observed(); got != tc.want {
				t.Errorf("Observed() = %q, want %q", got, tc.want)
			}
		})
	}
}
