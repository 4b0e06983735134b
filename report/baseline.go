package report

import (
	"lab/rundir"
	"lab/wire"
)

// WithBaseline compares every cell with what the baseline run observed for
// the same target name and scenario id, and returns c. Targets and
// scenarios the baseline lacks are Uncompared.
func (c *Comparison) WithBaseline(b *rundir.Dir) *Comparison {
	c.Baseline = b
	before := map[string]map[string]string{} // target -> scenario -> outcome
	for _, t := range b.Targets {
		m := map[string]string{}
		for _, r := range t.Results {
			m[r.ID] = r.Outcome
		}
		before[t.Name] = m
	}
	for i := range c.Rows {
		r := &c.Rows[i]
		for j := range r.Cells {
			cl := &r.Cells[j]
			cl.Baseline = before[cl.Target][r.Scenario.ID]
			cl.BaselineState = baselineState(cl.Baseline, cl.Outcome)
		}
	}
	return c
}

// baselineState compares an outcome with the baseline's. Both must be
// behaviour: an errno, ok, unsupported, a spread verdict or setup-failed (a
// step before the last failed, which a kernel decides too). Skipped, timeout,
// error and no result say nothing about the kernel, so they are never a
// change.
func baselineState(before, after string) string {
	if !behaviour(before) || !behaviour(after) {
		return Uncompared
	}
	if before == after {
		return Same
	}
	return Changed
}

func behaviour(outcome string) bool {
	switch outcome {
	case "", wire.Skipped, wire.Timeout, wire.Error:
		return false
	}
	return true
}

// Change is one scenario whose outcome on a target differs from the
// baseline's.
type Change struct {
	Target   string `json:"target"`
	Scenario string `json:"scenario,omitempty"`
	Before   string `json:"before"`
	After    string `json:"after"`
}

// Changes lists every cell whose outcome changed since the baseline,
// scenario by scenario in the run's order; nil without a baseline.
func (c *Comparison) Changes() []Change {
	var out []Change
	for _, r := range c.Rows {
		for _, cl := range r.Cells {
			if cl.BaselineState == Changed {
				out = append(out, Change{Target: cl.Target, Scenario: r.Scenario.ID, Before: cl.Baseline, After: cl.Outcome})
			}
		}
	}
	return out
}

// Disagrees reports whether a row has a cell that differs from the answer
// or, with a baseline, from the baseline.
func (r Row) Disagrees() bool {
	for _, cl := range r.Cells {
		if cl.State == Differ || cl.BaselineState == Changed {
			return true
		}
	}
	return false
}
