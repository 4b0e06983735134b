package report_test

import (
	"bytes"
	"flag"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"lab/report"
	"lab/rundir"
	"lab/wire"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestMarkdownGolden renders testdata/run1, a hand-made run directory, and
// compares it with testdata/run1.md. Only linux-6.1 there is modelled on a
// real kernel: fake-linux-3.2 and fake-freebsd carry invented outcomes (see
// testdata/run1/README) chosen to exercise every part of the report: match,
// differ, no-claim, setup-failed against a claim, a missing result, a target
// that never started, the BSD table and two Linux kernels that differ.
func TestMarkdownGolden(t *testing.T) {
	d, err := rundir.Read("testdata/run1")
	if err != nil {
		t.Fatal(err)
	}
	got := report.Markdown(report.Compare(d))
	const golden = "testdata/run1.md"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Markdown differs from %s (go test ./report -update rewrites it):\n%s", golden, lineDiff(string(want), string(got)))
	}

	// The golden file could be regenerated without reading it; these are
	// the facts it must show.
	for _, s := range []string{
		"| never-started | ? | ? | ? | missing: no results file",
		"| fake-freebsd | freebsd | 14.1-RELEASE | amd64 | failed: run: ssh connection lost | 2 | 2 | 0 | 2 | boot 30.0s, run 0.1s |",
		"| linux-6.1 | linux | 6.1.0-28-cloud-amd64 | amd64 | complete | 3 | 1 | 2 | 0 | image 1.2s, boot 2.5s, run 0.3s |",
		"## The answer's BSD table, regenerated (bsd-table, TCP)",
		"| 1 | OFF | addr1:P | addr1:P | `EADDRINUSE` | ✓ `EADDRINUSE` | ✓ `EADDRINUSE` | **✗ `ok`** (answer: `EADDRINUSE`) | — |",
		"| 6 | ON | any:P | addr1:P | `ok` | **✗ `EADDRINUSE`** (answer: `ok`) |",
		// A setup failure where the answer makes a claim contradicts it.
		"| **✗ `setup-failed: bind A EADDRNOTAVAIL`** (answer: `EADDRINUSE`) | — |",
		"fake-freebsd observed `setup-failed: bind A EADDRNOTAVAIL`; answer: `EADDRINUSE`",
		"`skipped` (needs root: no user \\| to switch to)",
		"## Findings (3 from the answer's words, 0 beyond the answer, 0 from the kernel's own selftests)",
		"3 scenarios disagree with the answer.",
		// One known finding: Linux wanting SO_REUSEADDR on both sockets.
		"1. **On Linux, SO_REUSEADDR lifts a conflict only when the socket already bound",
		"   - `bsd-table/row6/on`: linux-6.1 observed `EADDRINUSE`, fake-linux-3.2 observed `EADDRINUSE`; answer: `ok`",
		// A disagreement no finding explains is one of its own.
		"2. **TCP, bind only: A on addr1:P, then B without SO_REUSEADDR on addr1:P: not what the answer claims (EADDRINUSE).** (fake-freebsd)",
		"## Where kernels of one family differ from each other (1 scenarios)",
		"- `reuseport/exists/udp`: linux-6.1 `ok`, fake-linux-3.2 `unsupported`, fake-freebsd `ok`",
		"UDP multicast: A with SO_REUSEADDR \\| B with SO_REUSEPORT",
		"| scenario | answer claims | linux-6.1<br>linux 6.1.0-28-cloud-amd64 | fake-linux-3.2<br>linux 3.2.0-fake | fake-freebsd<br>freebsd 14.1-RELEASE | never-started |",
	} {
		if !bytes.Contains(got, []byte(s)) {
			t.Errorf("report lacks %q", s)
		}
	}
	// BSD table rows are in the answer's order (row, then OFF before ON)
	// although run.json lists row 6 first.
	i1, i6 := bytes.Index(got, []byte("| 1 | ON |")), bytes.Index(got, []byte("| 6 | ON |"))
	if i0 := bytes.Index(got, []byte("| 1 | OFF |")); i0 < 0 || i1 < i0 || i6 < i1 {
		t.Errorf("BSD table rows out of order: row1/off at %d, row1/on at %d, row6/on at %d", i0, i1, i6)
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl && shown < 10 {
			shown++
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
		}
	}
	return b.String()
}

func outcome(id, out, claim string) rundir.Outcome {
	o := rundir.Outcome{Result: wire.Result{ID: id, Outcome: out}}
	if claim != "" {
		o.Claims = map[string]string{"answer": claim}
	}
	return o
}

func TestCompareStates(t *testing.T) {
	tests := []struct {
		name    string
		result  *rundir.Outcome // nil: the target has no result
		state   string
		outcome string
		claim   string
	}{
		{"match", ptr(outcome("s", "EADDRINUSE", "EADDRINUSE")), report.Match, "EADDRINUSE", "EADDRINUSE"},
		{"unsupported as claimed", ptr(outcome("s", wire.Unsupported, wire.Unsupported)), report.Match, "unsupported", "unsupported"},
		{"spread as claimed", ptr(outcome("s", wire.SpreadEven, wire.SpreadEven)), report.Match, "even", "even"},
		{"differ", ptr(outcome("s", "ok", "EADDRINUSE")), report.Differ, "ok", "EADDRINUSE"},
		{"unsupported where ok is claimed", ptr(outcome("s", wire.Unsupported, "ok")), report.Differ, "unsupported", "ok"},
		{"no claim", ptr(outcome("s", "ok", "")), report.NoClaim, "ok", ""},
		// A claim takes the steps before the last to succeed: the kernel
		// refusing one contradicts it, unless the claim says itself that
		// the script stops early.
		{"setup-failed where ok is claimed", ptr(outcome("s", wire.SetupFailed, "ok")), report.Differ, "setup-failed", "ok"},
		{"setup-failed where an errno is claimed", ptr(outcome("s", wire.SetupFailed, "EADDRINUSE")), report.Differ, "setup-failed", "EADDRINUSE"},
		{"setup-failed where a spread is claimed", ptr(outcome("s", wire.SetupFailed, wire.SpreadEven)), report.Differ, "setup-failed", "even"},
		{"setup-failed as claimed", ptr(outcome("s", wire.SetupFailed, wire.SetupFailed)), report.Match, "setup-failed", "setup-failed"},
		{"setup-failed where unsupported is claimed", ptr(outcome("s", wire.SetupFailed, wire.Unsupported)), report.Unmeasured, "setup-failed", "unsupported"},
		{"setup-failed without a claim", ptr(outcome("s", wire.SetupFailed, "")), report.Unmeasured, "setup-failed", ""},
		{"skipped", ptr(outcome("s", wire.Skipped, "ok")), report.Unmeasured, "skipped", "ok"},
		{"skipped where setup-failed is claimed", ptr(outcome("s", wire.Skipped, wire.SetupFailed)), report.Unmeasured, "skipped", "setup-failed"},
		{"timeout", ptr(outcome("s", wire.Timeout, "")), report.Unmeasured, "timeout", ""},
		{"agent error", ptr(outcome("s", wire.Error, "ok")), report.Unmeasured, "error", "ok"},
		{"missing", nil, report.Missing, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tgt := rundir.Target{Name: "t1"}
			if tc.result != nil {
				tgt.Results = []rundir.Outcome{*tc.result}
			}
			d := &rundir.Dir{
				Run:     rundir.Run{Scenarios: []rundir.Scenario{{ID: "s"}}},
				Targets: []rundir.Target{tgt},
			}
			c := report.Compare(d)
			if len(c.Rows) != 1 || len(c.Rows[0].Cells) != 1 {
				t.Fatalf("got %d rows; want 1 row of 1 cell", len(c.Rows))
			}
			cl := c.Rows[0].Cells[0]
			if cl.State != tc.state || cl.Outcome != tc.outcome || cl.Claim != tc.claim || cl.Target != "t1" {
				t.Errorf("cell = %+v; want state %q, outcome %q, claim %q", cl, tc.state, tc.outcome, tc.claim)
			}
			if (cl.Result == nil) != (tc.result == nil) {
				t.Errorf("cell.Result = %v; want it set exactly when there is a result", cl.Result)
			}
			if n := c.Counts(0)[tc.state]; n != 1 {
				t.Errorf("Counts(0)[%q] = %d, want 1", tc.state, n)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestDisagreements(t *testing.T) {
	d := &rundir.Dir{
		Run: rundir.Run{Scenarios: []rundir.Scenario{{ID: "a/one"}, {ID: "b/two"}, {ID: "a/three"}, {ID: "c/four"}}},
		Targets: []rundir.Target{
			{Name: "x", Env: &wire.Env{Family: "linux"}, Results: []rundir.Outcome{
				outcome("a/one", "ok", "ok"),
				outcome("b/two", "EADDRINUSE", "ok"),
				outcome("a/three", "ok", "EADDRINUSE"),
				outcome("c/four", "ok", ""),
			}},
			{Name: "y", Env: &wire.Env{Family: "linux"}, Results: []rundir.Outcome{
				outcome("a/one", "EINVAL", "ok"),
				outcome("b/two", "EADDRINUSE", "ok"),
				outcome("a/three", wire.SetupFailed, "EADDRINUSE"),
			}},
			{Name: "z", Env: &wire.Env{Family: "bsd"}, Results: []rundir.Outcome{
				outcome("a/one", "ok", "ok"),
				outcome("b/two", "ok", "ok"),
				outcome("a/three", "EADDRINUSE", "EADDRINUSE"),
				outcome("c/four", "EACCES", ""),
			}},
		},
	}
	c := report.Compare(d)
	type dis struct {
		ID      string
		Targets []string
	}
	var got []dis
	for _, x := range c.Disagreements() {
		var ts []string
		for _, cl := range x.Targets {
			if cl.State != report.Differ {
				t.Errorf("%s: disagreement cell %s has state %q", x.Row.Scenario.ID, cl.Target, cl.State)
			}
			ts = append(ts, cl.Target)
		}
		got = append(got, dis{x.Row.Scenario.ID, ts})
	}
	// y's setup failed in a/three, where the answer claims B's bind
	// fails: a disagreement too.
	want := []dis{{"a/one", []string{"y"}}, {"b/two", []string{"x", "y"}}, {"a/three", []string{"x", "y"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Disagreements = %+v, want %+v", got, want)
	}

	// x and y are both linux: a/one differs between them; a/three does not
	// count because y's setup failed; c/four is missing on y.
	var kd []string
	for _, r := range c.KernelDifferences() {
		kd = append(kd, r.Scenario.ID)
	}
	if want := []string{"a/one"}; !reflect.DeepEqual(kd, want) {
		t.Errorf("KernelDifferences = %v, want %v", kd, want)
	}
	if got, want := c.Sections(), []string{"a", "b", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Sections = %v, want %v", got, want)
	}
	if got, want := c.Counts(1), map[string]int{report.Differ: 3, report.Missing: 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("Counts(1) = %v, want %v", got, want)
	}
}

func TestSection(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"bsd-table/row1/off", "bsd-table"},
		{"plain", "plain"},
		{"/lead", ""},
	} {
		t.Run(tc.id, func(t *testing.T) {
			if got := report.Section(tc.id); got != tc.want {
				t.Errorf("Section(%q) = %q, want %q", tc.id, got, tc.want)
			}
		})
	}
}
