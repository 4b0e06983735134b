package report

import (
	"bytes"
	"fmt"
	"strings"
)

// findingsMarkdown renders the findings: one sentence each, the targets
// that show it, and each scenario with what it observed against what the
// answer (or the kernel's selftests) says; those the answer states, those
// beyond it, those where a kernel misses its own tests, apart.
func findingsMarkdown(b *bytes.Buffer, c *Comparison) {
	fs := c.Findings()
	n := FindingCounts(fs)
	fmt.Fprintf(b, "## Findings (%d from the answer's words, %d beyond the answer, %d from the kernel's own selftests)\n\n", n[Stated], n[Beyond], n[OwnTests])
	if len(fs) == 0 {
		b.WriteString("None: every claim the answer makes for these systems held, and every kernel did what its selftests expect.\n\n")
		return
	}
	fmt.Fprintf(b, "%d scenarios disagree with the answer. Each finding below is one thing they show, with the scenarios "+
		"that show it; a scenario's claim comes from the answer's words unless it is marked *beyond the answer* "+
		"(lab extrapolated the answer to a case it does not consider).\n\n", len(c.Disagreements()))
	heads := map[string]string{
		Stated:   "### Where kernels contradict the answer",
		Beyond:   "### Beyond the answer (lab's extrapolation of it)",
		OwnTests: "### Where a kernel misses its own selftests",
	}
	last, num := "", 0
	for _, f := range fs {
		if f.Basis != last {
			if last != "" {
				b.WriteString("\n")
			}
			fmt.Fprintf(b, "%s\n\n", heads[f.Basis])
			last = f.Basis
		}
		num++
		fmt.Fprintf(b, "%d. **%s** (%s)\n", num, esc(f.Says), strings.Join(f.Targets(), ", "))
		for _, r := range f.Rows {
			mark := ""
			if r.Basis == Beyond && f.Basis != Beyond {
				mark = " *(beyond the answer)*"
			}
			whose := "answer"
			if r.Basis == OwnTests {
				whose = "selftest"
			}
			fmt.Fprintf(b, "   - `%s`%s: %s  \n     %s\n", r.Scenario.ID, mark, cellsText(r.Cells, whose), esc(r.Scenario.Source))
		}
	}
	b.WriteString("\n")
}

// durationsMarkdown renders how long each endpoint stayed unavailable
// (waitfree steps), per target: the TIME_WAIT lengths.
func durationsMarkdown(b *bytes.Buffer, c *Comparison) {
	ds := c.Durations()
	if len(ds) == 0 {
		return
	}
	b.WriteString("## How long endpoints stayed unavailable\n\n")
	b.WriteString("Measured by binding every 100 ms until a bind succeeded (`waitfree`): a TIME_WAIT length, per kernel.\n\n")
	b.WriteString("| scenario |")
	for _, t := range c.Targets {
		fmt.Fprintf(b, " %s |", targetHeader(t))
	}
	b.WriteString("\n|---|")
	for range c.Targets {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range c.Rows {
		var row []string
		have := false
		for _, t := range c.Targets {
			cell := "—"
			for _, d := range ds {
				if d.Scenario == r.Scenario.ID && d.Target == t.Name {
					cell, have = durationText(d), true
				}
			}
			row = append(row, cell)
		}
		if have {
			fmt.Fprintf(b, "| `%s` | %s |\n", r.Scenario.ID, strings.Join(row, " | "))
		}
	}
	b.WriteString("\n")
}

// durationText is a measured wait: its length, or what stopped it.
func durationText(d Duration) string {
	s := fmt.Sprintf("%.1f s", float64(d.Waited)/1000)
	if !strings.HasSuffix(d.Outcome, "s") || strings.HasPrefix(d.Outcome, "E") {
		s = fmt.Sprintf("%s after %s", code(d.Outcome), s)
	}
	return s
}

// cellsText is a finding's cells on one scenario: each target's outcome,
// and the claim once when every target has the same one.
func cellsText(cells []FindingCell, whose string) string {
	same := true
	for _, cl := range cells {
		same = same && cl.Claim == cells[0].Claim
	}
	var parts []string
	for _, cl := range cells {
		p := fmt.Sprintf("%s observed %s", cl.Target, code(esc(cl.Observed)))
		if !same {
			p += fmt.Sprintf(" (%s: %s)", whose, code(esc(cl.Claim)))
		}
		parts = append(parts, p)
	}
	s := strings.Join(parts, ", ")
	if same {
		s += fmt.Sprintf("; %s: %s", whose, code(esc(cells[0].Claim)))
	}
	return s
}
