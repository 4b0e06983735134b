package report

import (
	"fmt"
	"strings"
)

// pageFindingGroup is the findings of one basis, numbered on from the
// group before.
type pageFindingGroup struct {
	Head     string
	Start    int
	Findings []pageFinding
}

type pageFinding struct {
	Anchor, Class, Says, Where string
	Scenarios                  []pageFindingScenario
}

type pageFindingScenario struct {
	ID           string
	Index        int
	Beyond       bool
	Whose, Claim string
	Cells        []pageFindingCell
}

type pageFindingCell struct {
	S, T             int // the cell's #cell-S-T
	Target, Observed string
}

var findingHeads = map[string]string{
	Stated:   "Where kernels contradict the answer",
	Beyond:   "Beyond the answer (lab's extrapolation of it)",
	OwnTests: "Where a kernel misses its own selftests",
}

func findingGroups(d *Doc) []pageFindingGroup {
	targetIndex := map[string]int{}
	for i, t := range d.Targets {
		targetIndex[t.Name] = i
	}
	var out []pageFindingGroup
	for i, f := range d.Findings {
		if len(out) == 0 || out[len(out)-1].Head != findingHeads[f.Basis] {
			out = append(out, pageFindingGroup{Head: findingHeads[f.Basis], Start: i + 1})
		}
		pf := pageFinding{Anchor: strings.NewReplacer(":", "-", "/", "-", " ", "-").Replace(f.ID), Class: strings.ReplaceAll(f.Basis, " ", "-"),
			Says: f.Says, Where: "(" + strings.Join(f.Targets, ", ") + ")"}
		for _, s := range f.Scenarios {
			ps := pageFindingScenario{ID: s.ID, Index: s.Index, Beyond: s.Basis == Beyond && f.Basis != Beyond, Whose: "answer"}
			if s.Basis == OwnTests {
				ps.Whose = "selftest"
			}
			claims := map[string]bool{}
			for _, c := range s.Cells {
				ps.Cells = append(ps.Cells, pageFindingCell{S: s.Index, T: targetIndex[c.Target], Target: c.Target, Observed: c.Observed})
				claims[c.Claim] = true
				ps.Claim = c.Claim
			}
			if len(claims) > 1 {
				ps.Claim = "differs per OS (see each cell)"
			}
			pf.Scenarios = append(pf.Scenarios, ps)
		}
		g := &out[len(out)-1]
		g.Findings = append(g.Findings, pf)
	}
	return out
}

type pageDurationRow struct {
	ID    string
	Cells []string
}

func durationRows(d *Doc) []pageDurationRow {
	var out []pageDurationRow
	index := map[string]int{}
	for _, x := range d.Durations {
		i, ok := index[x.Scenario]
		if !ok {
			i = len(out)
			index[x.Scenario] = i
			out = append(out, pageDurationRow{ID: x.Scenario, Cells: make([]string, len(d.Targets))})
			for j := range out[i].Cells {
				out[i].Cells[j] = "—"
			}
		}
		for j, t := range d.Targets {
			if t.Name == x.Target {
				out[i].Cells[j] = durationCell(x)
			}
		}
	}
	return out
}

func durationCell(x DocDuration) string {
	s := fmt.Sprintf("%.1f s", float64(x.Waited)/1000)
	if strings.HasPrefix(x.Outcome, "E") {
		s = x.Outcome + " after " + s
	}
	return s
}
