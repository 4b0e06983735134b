// Package report renders a run's results: every target side by side, the
// answer's tables regenerated from observation, and every place a kernel
// disagrees with what the answer claims. It works from a run directory
// alone, so a report can be made again at any time.
package report

import (
	"fmt"
	"sort"
	"strings"

	"lab/rundir"
	"lab/scenario"
	"lab/wire"
)

// Cell states.
const (
	Match      = "match"      // observed what the source claims
	Differ     = "differ"     // observed something else, or a step before the claimed one failed: a finding
	NoClaim    = "no-claim"   // the source says nothing for this OS
	Unmeasured = "unmeasured" // skipped, timeout, error, or setup-failed with nothing to check: no comparison possible
	Missing    = "missing"    // the target has no result for this scenario
)

// Cell is one scenario on one target.
type Cell struct {
	Target  string
	Outcome string
	Claim   string // the answer's claim for this target's OS, "" when none
	State   string
	Result  *rundir.Outcome
	// Baseline is what the baseline run observed for this target and
	// scenario ("" when it has no result), and BaselineState how the cell
	// compares with it; both are empty without a baseline.
	Baseline      string
	BaselineState string
}

// Row is one scenario across every target.
type Row struct {
	Scenario rundir.Scenario
	Section  string
	Cells    []Cell
}

// Baseline states of a cell.
const (
	Same       = "same"       // the baseline observed the same outcome
	Changed    = "changed"    // the baseline observed another outcome: behaviour changed
	Uncompared = "uncompared" // one side has no result, or it was skipped, timed out or failed
)

// Comparison is a run read back and compared with the answer, and with a
// baseline run when one is given.
type Comparison struct {
	Dir      *rundir.Dir
	Source   string // the documented source compared against: "answer"
	Rows     []Row
	Targets  []rundir.Target
	Baseline *rundir.Dir // nil without a baseline
}

// Compare lines up every scenario of the run against every target.
func Compare(d *rundir.Dir) *Comparison {
	c := &Comparison{Dir: d, Source: "answer", Targets: d.Targets}
	byTarget := make([]map[string]*rundir.Outcome, len(d.Targets))
	for i := range d.Targets {
		byTarget[i] = make(map[string]*rundir.Outcome, len(d.Targets[i].Results))
		for j := range d.Targets[i].Results {
			r := &d.Targets[i].Results[j]
			byTarget[i][r.ID] = r
		}
	}
	// Sized up front: at 10,000 scenarios, growing these is most of the
	// work.
	if len(d.Run.Scenarios) > 0 {
		c.Rows = make([]Row, 0, len(d.Run.Scenarios))
	}
	cells := make([]Cell, len(d.Run.Scenarios)*len(d.Targets))
	for k, s := range d.Run.Scenarios {
		row := Row{Scenario: s, Section: Section(s.ID)}
		if len(d.Targets) > 0 {
			row.Cells = cells[k*len(d.Targets) : (k+1)*len(d.Targets) : (k+1)*len(d.Targets)]
		}
		for i, t := range d.Targets {
			row.Cells[i] = cell(t.Name, byTarget[i][s.ID], c.Source)
		}
		c.Rows = append(c.Rows, row)
	}
	return c
}

func cell(target string, r *rundir.Outcome, source string) Cell {
	if r == nil {
		return Cell{Target: target, State: Missing}
	}
	c := Cell{Target: target, Outcome: r.Outcome, Claim: r.Claims[source], Result: r}
	switch {
	case !checks(r.Outcome, c.Claim):
		c.State = Unmeasured
	case c.Claim == "":
		c.State = NoClaim
	case scenario.Matches(c.Claim, r.Outcome):
		c.State = Match
	default:
		c.State = Differ
	}
	return c
}

// Observed is the cell's outcome as a reader needs it beside a claim: for
// setup-failed, with the step that failed and its errno ("setup-failed: bind
// B EADDRINUSE"), since the claim is about a later step.
func (cl Cell) Observed() string {
	if cl.Result == nil {
		return cl.Outcome
	}
	return observed(&cl.Result.Result)
}

func observed(r *wire.Result) string {
	if r.Outcome != wire.SetupFailed {
		return r.Outcome
	}
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if st := r.Steps[i]; st.Result != wire.OK {
			// The verb and socket name the step; its address is in the trace.
			f := strings.Fields(st.Text)
			name := strings.Join(f[:min(2, len(f))], " ")
			if name == "" {
				name = fmt.Sprintf("step %d", i+1)
			}
			return r.Outcome + ": " + name + " " + st.Result
		}
	}
	if r.Reason != "" { // a result without its steps
		return r.Outcome + ": " + r.Reason
	}
	return r.Outcome
}

// checks reports whether outcome can be held against claim ("" when the
// source makes none).
//
// A claim is about a scenario's last step, and it takes for granted that the
// steps before it succeed: "B's bind succeeds" is a claim about what happens
// after A listens. So setup-failed, the kernel refusing an earlier step,
// contradicts every claim except two that themselves say the script stops
// early: setup-failed, which it matches, and unsupported (an option the OS
// does not define), which it cannot always settle, because the agent stops
// at the first failing step and that may come before the option is set.
// Skipped, timeout and error say nothing about the kernel and check nothing.
func checks(outcome, claim string) bool {
	switch outcome {
	case wire.Skipped, wire.Timeout, wire.Error:
		return false
	case wire.SetupFailed:
		return claim != "" && !scenario.Allows(claim, wire.Unsupported)
	}
	return true
}

// unmeasured reports whether outcome is something other than the last
// step's result; KernelDifferences leaves such cells out.
func unmeasured(outcome string) bool {
	switch outcome {
	case wire.Skipped, wire.SetupFailed, wire.Timeout, wire.Error:
		return true
	}
	return false
}

// Section is the part of a scenario id before its first "/".
func Section(id string) string {
	s, _, _ := strings.Cut(id, "/")
	return s
}

// Sections lists the sections in the order their first scenario appears.
func (c *Comparison) Sections() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range c.Rows {
		if !seen[r.Section] {
			seen[r.Section] = true
			out = append(out, r.Section)
		}
	}
	return out
}

// Disagreement is one scenario where observation and the answer differ, and
// the targets where they do.
type Disagreement struct {
	Row     Row
	Targets []Cell
}

// Disagreements lists every scenario with at least one differing cell.
func (c *Comparison) Disagreements() []Disagreement {
	var out []Disagreement
	for _, r := range c.Rows {
		var cells []Cell
		for _, cl := range r.Cells {
			if cl.State == Differ {
				cells = append(cells, cl)
			}
		}
		if len(cells) > 0 {
			out = append(out, Disagreement{Row: r, Targets: cells})
		}
	}
	return out
}

// Counts tallies cell states per target.
func (c *Comparison) Counts(target int) map[string]int {
	m := map[string]int{}
	for _, r := range c.Rows {
		m[r.Cells[target].State]++
	}
	return m
}

// KernelDifferences lists scenarios where targets of one OS family observed
// different outcomes: a kernel changed semantics.
func (c *Comparison) KernelDifferences() []Row {
	var out []Row
	for _, r := range c.Rows {
		byFamily := map[string]map[string]bool{}
		for i, cl := range r.Cells {
			env := c.Targets[i].Env
			if env == nil || cl.State == Missing || unmeasured(cl.Outcome) {
				continue
			}
			if byFamily[env.Family] == nil {
				byFamily[env.Family] = map[string]bool{}
			}
			byFamily[env.Family][cl.Outcome] = true
		}
		for _, outcomes := range byFamily {
			if len(outcomes) > 1 {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
