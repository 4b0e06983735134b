// Package report renders a run's results: every target side by side, the
// answer's tables regenerated from observation, and every place a kernel
// disagrees with what the answer claims. It works from a run directory
// alone, so a report can be made again at any time.
package report

import (
	"sort"
	"strings"

	"lab/rundir"
	"lab/wire"
)

// Cell states.
const (
	Match      = "match"      // observed what the source claims
	Differ     = "differ"     // observed something else: a finding
	NoClaim    = "no-claim"   // the source says nothing for this OS
	Unmeasured = "unmeasured" // skipped, setup-failed, timeout or error: no comparison possible
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
		byTarget[i] = map[string]*rundir.Outcome{}
		for j := range d.Targets[i].Results {
			r := &d.Targets[i].Results[j]
			byTarget[i][r.ID] = r
		}
	}
	for _, s := range d.Run.Scenarios {
		row := Row{Scenario: s, Section: Section(s.ID)}
		for i, t := range d.Targets {
			row.Cells = append(row.Cells, cell(t.Name, byTarget[i][s.ID], c.Source))
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
	case unmeasured(r.Outcome):
		c.State = Unmeasured
	case c.Claim == "":
		c.State = NoClaim
	case c.Claim == r.Outcome:
		c.State = Match
	default:
		c.State = Differ
	}
	return c
}

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
