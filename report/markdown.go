package report

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"lab/rundir"
	"lab/wire"
)

// Markdown renders the comparison: targets, the answer's BSD tables
// regenerated, every scenario by section, and the list of disagreements.
func Markdown(c *Comparison) []byte {
	var b bytes.Buffer
	run := c.Dir.Run
	fmt.Fprintf(&b, "# SO_REUSEADDR and SO_REUSEPORT, measured\n\n")
	fmt.Fprintf(&b, "Run `%s`, started %s, status **%s**. %d scenarios on %d targets.\n\n",
		run.ID, run.Started.UTC().Format("2006-01-02 15:04 UTC"), run.Status, len(run.Scenarios), len(c.Targets))
	if run.Status == rundir.StatusRunning {
		// Only a lab that is still running, or was killed, leaves this.
		var cut []string
		for _, t := range c.Dir.Targets {
			if t.Status == rundir.StatusMissing || t.Status == rundir.StatusRunning {
				cut = append(cut, fmt.Sprintf("%s (%s, %d of %d results)", t.Name, t.Status, len(t.Results), t.Total))
			}
		}
		if len(cut) == 0 {
			cut = []string{"none (every target's file is final)"}
		}
		fmt.Fprintf(&b, "**incomplete: lab stopped before the run finished.** Targets not finished: %s.\n\n", strings.Join(cut, ", "))
	}
	fmt.Fprintf(&b, "Each cell is what the kernel did. Where the StackOverflow answer (\"the answer\") claims something else "+
		"for that OS, the cell is marked **✗** with the claim beside it; ✓ marks agreement, and a bare outcome means the answer "+
		"makes no claim for that OS. `setup-failed` means the kernel refused a step before the last one (named beside it); "+
		"where the answer makes a claim, that is a **✗** too, since the claim takes those steps to succeed.\n\n")

	targetsTable(&b, c)
	bsdTables(&b, c)
	findingsMarkdown(&b, c)
	baselineChanges(&b, c)
	kernelDiffs(&b, c)
	durationsMarkdown(&b, c)
	allScenarios(&b, c)
	return b.Bytes()
}

func targetsTable(b *bytes.Buffer, c *Comparison) {
	b.WriteString("## Targets\n\n| target | OS | kernel | arch | status | agree | disagree | no claim | not measured | phases |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for i, t := range c.Targets {
		osName, kernel, arch := "?", "?", "?"
		if t.Env != nil {
			osName, kernel, arch = envOS(t.Env), envKernel(t.Env), t.Env.Arch
		}
		n := c.Counts(i)
		status := string(t.Status)
		if t.Error != "" {
			status += ": " + t.Error
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %d | %d | %d | %d | %s |\n", t.Name, osName, kernel, arch, esc(status),
			n[Match], n[Differ], n[NoClaim], n[Unmeasured]+n[Missing], phases(t.Phases))
	}
	b.WriteString("\n")
}

// envOS names a target's OS for the targets table. An agent that found
// itself running under Wine says so in kernel_version ("Wine 8.0 on Linux
// ..."): its results are Wine's emulation of the Windows API, never Windows.
func envOS(env *wire.Env) string {
	if strings.HasPrefix(env.KernelVersion, "Wine ") {
		return "wine (Windows API emulated by " + env.KernelVersion + ")"
	}
	return env.OS
}

// envKernel is the kernel column: under Wine, the Windows version Wine
// imitates, marked as such.
func envKernel(env *wire.Env) string {
	if strings.HasPrefix(env.KernelVersion, "Wine ") {
		return env.KernelRelease + " (imitated by Wine)"
	}
	return env.KernelRelease
}

// targetHeader heads a target's column: its name, and below it the OS and
// kernel release it ran, so a column reads without the targets table. Under
// Wine the release is the Windows version Wine imitates.
func targetHeader(t rundir.Target) string {
	if t.Env == nil {
		return esc(t.Name)
	}
	osName := t.Env.OS
	kernel := t.Env.KernelRelease
	if strings.HasPrefix(t.Env.KernelVersion, "Wine ") {
		kernel += " (Wine)"
	}
	return esc(t.Name) + "<br>" + esc(strings.TrimSpace(osName+" "+kernel))
}

func phases(ps []rundir.Phase) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s %.1fs", p.Name, float64(p.Millis)/1000))
	}
	return strings.Join(parts, ", ")
}

// bsdTables regenerates the answer's BSD table, in its layout, from the
// scenarios that carry its row numbers (matrix variables row and flag).
func bsdTables(b *bytes.Buffer, c *Comparison) {
	groups := map[string][]Row{}
	var order []string
	for _, r := range c.Rows {
		v := r.Scenario.Vars
		if !strings.HasPrefix(r.Scenario.Source, "answer, BSD table") || v["row"] == "" || v["a"] == "" || v["b"] == "" {
			continue
		}
		if _, ok := groups[r.Section]; !ok {
			order = append(order, r.Section)
		}
		groups[r.Section] = append(groups[r.Section], r)
	}
	for _, sec := range order {
		rows := groups[sec]
		sort.SliceStable(rows, func(i, j int) bool {
			a, b := rows[i].Scenario.Vars, rows[j].Scenario.Vars
			return a["row"] < b["row"] || (a["row"] == b["row"] && flag(rows[i]) < flag(rows[j]))
		})
		fmt.Fprintf(b, "## The answer's BSD table, regenerated (%s, %s)\n\n", sec, strings.ToUpper(rows[0].Scenario.Proto))
		b.WriteString("socketA is bound first; socketB, with SO_REUSEADDR or not, is bound second; the result is socketB's bind. " +
			"addr1 and addr2 stand for the answer's 192.168.0.1 and 10.0.0.1.\n\n")
		b.WriteString("| row | SO_REUSEADDR | socketA | socketB | answer (BSD) |")
		for _, t := range c.Targets {
			fmt.Fprintf(b, " %s |", targetHeader(t))
		}
		b.WriteString("\n|---|---|---|---|---|")
		for range c.Targets {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for _, r := range rows {
			v := r.Scenario.Vars
			fmt.Fprintf(b, "| %s | %s | %s:P | %s:P | %s |", v["row"], strings.ToUpper(flag(r)), v["a"], v["b"], code(r.Scenario.Expect[c.Source]["bsd"]))
			for _, cl := range r.Cells {
				fmt.Fprintf(b, " %s |", cellText(cl))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
}

// flag is whether socketB of a BSD table scenario sets SO_REUSEADDR: its
// matrix variable, else read from the step that creates socketB.
func flag(r Row) string {
	if f := r.Scenario.Vars["flag"]; f != "" {
		return f
	}
	for _, st := range r.Scenario.Steps {
		if strings.HasPrefix(st, "socket B") {
			if strings.Contains(st, "SO_REUSEADDR") {
				return "on"
			}
			return "off"
		}
	}
	return "?"
}

// baselineChanges lists what changed since the baseline run, if one was
// given.
func baselineChanges(b *bytes.Buffer, c *Comparison) {
	if c.Baseline == nil {
		return
	}
	chs := c.Changes()
	fmt.Fprintf(b, "## Changed since the baseline run `%s` (%d)\n\n", c.Baseline.Run.ID, len(chs))
	if len(chs) == 0 {
		b.WriteString("Nothing: every outcome both runs measured is the same.\n\n")
		return
	}
	for _, ch := range chs {
		fmt.Fprintf(b, "- `%s` on %s: `%s`, was `%s`\n", ch.Scenario, ch.Target, ch.After, ch.Before)
	}
	b.WriteString("\n")
}

func kernelDiffs(b *bytes.Buffer, c *Comparison) {
	families := map[string][]string{}
	for _, t := range c.Targets {
		if t.Env != nil {
			families[t.Env.Family] = append(families[t.Env.Family], t.Name)
		}
	}
	multi := false
	for _, ts := range families {
		multi = multi || len(ts) > 1
	}
	if !multi {
		return
	}
	rows := c.KernelDifferences()
	fmt.Fprintf(b, "## Where kernels of one family differ from each other (%d scenarios)\n\n", len(rows))
	if len(rows) == 0 {
		for _, fam := range sortedFamilies(families) {
			if ts := families[fam]; len(ts) > 1 {
				fmt.Fprintf(b, "The %s targets (%s) agree on every scenario they measured.\n", fam, strings.Join(ts, ", "))
			}
		}
		b.WriteString("\n")
		return
	}
	for _, r := range rows {
		var parts []string
		for _, cl := range r.Cells {
			if cl.State != Missing {
				parts = append(parts, fmt.Sprintf("%s `%s`", cl.Target, cl.Outcome))
			}
		}
		line := strings.Join(parts, ", ")
		if want := r.Scenario.Expect[KernelSource]; len(want) > 0 {
			line += "; the kernel's selftests expect " + claims(want)
		}
		fmt.Fprintf(b, "- `%s`: %s\n", r.Scenario.ID, line)
	}
	b.WriteString("\n")
}

func sortedFamilies(m map[string][]string) []string {
	fams := make([]string, 0, len(m))
	for f := range m {
		fams = append(fams, f)
	}
	sort.Strings(fams)
	return fams
}

func allScenarios(b *bytes.Buffer, c *Comparison) {
	b.WriteString("## Every scenario\n\n")
	bySection := map[string][]Row{} // one pass: rows x sections is quadratic in a generated catalog
	for _, r := range c.Rows {
		bySection[r.Section] = append(bySection[r.Section], r)
	}
	for _, sec := range c.Sections() {
		fmt.Fprintf(b, "### %s\n\n| scenario | answer claims |", sec)
		for _, t := range c.Targets {
			fmt.Fprintf(b, " %s |", targetHeader(t))
		}
		b.WriteString("\n|---|---|")
		for range c.Targets {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for _, r := range bySection[sec] {
			fmt.Fprintf(b, "| `%s`<br>%s | %s |", r.Scenario.ID, esc(r.Scenario.Title), claims(r.Scenario.Expect[c.Source]))
			for _, cl := range r.Cells {
				fmt.Fprintf(b, " %s |", cellText(cl))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
}

func claims(m map[string]string) string {
	if len(m) == 0 {
		return "—"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s: `%s`", k, m[k]))
	}
	return strings.Join(parts, "<br>")
}

// cellText is a cell as Markdown: the outcome, marked by how it compares
// with the answer and, when it changed, with the baseline.
func cellText(cl Cell) string {
	if cl.BaselineState == Changed {
		return answerText(cl) + " Δ was " + code(cl.Baseline)
	}
	return answerText(cl)
}

func answerText(cl Cell) string {
	switch cl.State {
	case Missing:
		return "—"
	case Match:
		return "✓ " + code(cl.Outcome)
	case Differ:
		return fmt.Sprintf("**✗ %s** (answer: %s)", code(esc(cl.Observed())), code(cl.Claim))
	case Unmeasured:
		if cl.Result != nil && cl.Result.Reason != "" {
			return fmt.Sprintf("%s (%s)", code(cl.Outcome), esc(cl.Result.Reason))
		}
	}
	return code(cl.Outcome)
}

func code(s string) string {
	if s == "" {
		return "—"
	}
	return "`" + s + "`"
}

// esc keeps free text from breaking a Markdown table.
func esc(s string) string { return tableEscaper.Replace(s) }

// tableEscaper is built once: a Replacer builds its tables on first use,
// which per call cost more than the replacing.
var tableEscaper = strings.NewReplacer("|", "\\|", "\n", " ")
