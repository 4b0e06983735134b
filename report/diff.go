package report

import (
	"bytes"
	"fmt"

	"lab/rundir"
)

// Delta is what changed between two runs, target by target name.
type Delta struct {
	A, B *rundir.Dir
	// Changes are scenarios whose outcome on a target differs, where both
	// runs measured the scenario on that target (see WithBaseline).
	Changes []Change
	// Uncompared are scenarios of a target both runs have that could not
	// be compared: no result, skipped, timeout or error on one side.
	Uncompared []Change
	// Unrun are targets both runs list that have no result at all in one
	// of them (missing, or failed before their first scenario); Before and
	// After are the target's status in each run.
	Unrun []Change
	// Kernels lists targets whose kernel release differs between the runs.
	Kernels []Change // Scenario is empty; Before and After are kernel releases
	// Targets and scenarios only one of the runs has.
	TargetsOnlyA, TargetsOnlyB     []string
	ScenariosOnlyA, ScenariosOnlyB []string
}

// Diff compares run b with run a, a being the earlier one.
func Diff(a, b *rundir.Dir) *Delta {
	d := &Delta{A: a, B: b}
	c := Compare(b).WithBaseline(a)
	inA := map[string]rundir.Target{}
	for _, t := range a.Targets {
		inA[t.Name] = t
	}
	inB := map[string]bool{}
	scenariosOfA := scenarioSet(a)
	for i, t := range b.Targets {
		inB[t.Name] = true
		ta, ok := inA[t.Name]
		if !ok {
			d.TargetsOnlyB = append(d.TargetsOnlyB, t.Name)
			continue
		}
		if ka, kb := kernel(ta), kernel(t); ka != "" && kb != "" && ka != kb {
			d.Kernels = append(d.Kernels, Change{Target: t.Name, Before: ka, After: kb})
		}
		if len(ta.Results) == 0 || len(t.Results) == 0 {
			d.Unrun = append(d.Unrun, Change{Target: t.Name, Before: string(ta.Status), After: string(t.Status)})
			continue
		}
		for _, r := range c.Rows {
			cl := r.Cells[i]
			ch := Change{Target: t.Name, Scenario: r.Scenario.ID, Before: cl.Baseline, After: cl.Outcome}
			switch cl.BaselineState {
			case Changed:
				d.Changes = append(d.Changes, ch)
			case Uncompared:
				if scenariosOfA[r.Scenario.ID] {
					d.Uncompared = append(d.Uncompared, ch)
				}
			}
		}
	}
	for _, t := range a.Targets {
		if !inB[t.Name] {
			d.TargetsOnlyA = append(d.TargetsOnlyA, t.Name)
		}
	}
	d.ScenariosOnlyA, d.ScenariosOnlyB = onlyIn(a, b), onlyIn(b, a)
	return d
}

func kernel(t rundir.Target) string {
	if t.Env == nil {
		return ""
	}
	return t.Env.KernelRelease
}

// scenarioSet is the ids of a run's scenarios, to look one up without a
// scan (a scan per scenario is quadratic in the catalog's size).
func scenarioSet(d *rundir.Dir) map[string]bool {
	m := make(map[string]bool, len(d.Run.Scenarios))
	for _, s := range d.Run.Scenarios {
		m[s.ID] = true
	}
	return m
}

// onlyIn lists the scenarios of x that y does not have.
func onlyIn(x, y *rundir.Dir) []string {
	var out []string
	inY := scenarioSet(y)
	for _, s := range x.Run.Scenarios {
		if !inY[s.ID] {
			out = append(out, s.ID)
		}
	}
	return out
}

// Text renders the delta for a terminal: per target, each changed scenario
// as "before -> after", then what could not be compared.
func (d *Delta) Text() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "lab diff %s (%s) -> %s (%s)\n", d.A.Path, d.A.Run.ID, d.B.Path, d.B.Run.ID)
	byTarget := func(cs []Change) (order []string, m map[string][]Change) {
		m = map[string][]Change{}
		for _, ch := range cs {
			if _, ok := m[ch.Target]; !ok {
				order = append(order, ch.Target)
			}
			m[ch.Target] = append(m[ch.Target], ch)
		}
		return order, m
	}
	kernels := map[string]Change{}
	for _, k := range d.Kernels {
		kernels[k.Target] = k
	}
	order, changes := byTarget(d.Changes)
	for _, t := range order {
		fmt.Fprintf(&b, "\n%s", t)
		if k, ok := kernels[t]; ok {
			fmt.Fprintf(&b, " (kernel %s -> %s)", k.Before, k.After)
		}
		b.WriteString(":\n")
		for _, ch := range changes[t] {
			fmt.Fprintf(&b, "  %s: %s -> %s\n", ch.Scenario, ch.Before, ch.After)
		}
	}
	for _, k := range d.Kernels {
		if _, ok := changes[k.Target]; !ok {
			fmt.Fprintf(&b, "\n%s (kernel %s -> %s): no scenario changed\n", k.Target, k.Before, k.After)
		}
	}
	if len(d.Uncompared) > 0 {
		fmt.Fprintf(&b, "\nnot compared (no result, skipped, timeout or error in one run):\n")
		uorder, unc := byTarget(d.Uncompared)
		for _, t := range uorder {
			for _, ch := range unc[t] {
				fmt.Fprintf(&b, "  %s %s: %s -> %s\n", t, ch.Scenario, orNone(ch.Before), orNone(ch.After))
			}
		}
	}
	for _, u := range d.Unrun {
		fmt.Fprintf(&b, "\n%s: not compared, one run has no result for it (status %s -> %s)\n", u.Target, u.Before, u.After)
	}
	list := func(what string, xs []string) {
		if len(xs) > 0 {
			fmt.Fprintf(&b, "\n%s:\n", what)
			for _, x := range xs {
				fmt.Fprintf(&b, "  %s\n", x)
			}
		}
	}
	list("targets only in "+d.A.Run.ID, d.TargetsOnlyA)
	list("targets only in "+d.B.Run.ID, d.TargetsOnlyB)
	list("scenarios only in "+d.A.Run.ID, d.ScenariosOnlyA)
	list("scenarios only in "+d.B.Run.ID, d.ScenariosOnlyB)
	if len(d.Changes) == 0 {
		b.WriteString("\nno behaviour changed\n")
	} else {
		fmt.Fprintf(&b, "\n%d changes on %d targets\n", len(d.Changes), len(order))
	}
	return b.Bytes()
}

func orNone(s string) string {
	if s == "" {
		return "(no result)"
	}
	return s
}
