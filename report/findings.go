package report

// Findings: the disagreements of a run told as what lab learned. Many
// scenarios show one rule (Linux wanting SO_REUSEADDR on both sockets shows
// in a table row, a TIME_WAIT case and an IPv6 variant), so each finding is
// one sentence with the scenarios that show it, and those the answer's words
// back are kept apart from those that rest on lab's own extrapolation
// ("beyond the answer"). Kernels that miss their own selftests' expectations
// are findings too. The renderers call Findings and Durations; nothing else
// here touches them.

import (
	"fmt"
	"strings"

	"lab/rundir"
	"lab/scenario"
	"lab/wire"
)

// Bases of a finding, and of each scenario in it.
const (
	// Stated: the answer says it, for the OS or for one the answer says it
	// behaves like.
	Stated = "stated"
	// Beyond: lab extrapolated the claim to a case the answer does not
	// consider; the scenario's source begins "beyond the answer".
	Beyond = "beyond the answer"
	// OwnTests: a kernel differs from what its own selftests expect (the
	// scenario's expect.kernel).
	OwnTests = "kernel selftests"
)

// KernelSource is the documented source holding what the kernel's own
// selftests expect.
const KernelSource = "kernel"

// A Finding is one thing a run may show, told in one sentence, and the
// scenarios (glob patterns of ids) whose disagreements it explains.
type Finding struct {
	ID        string
	Says      string
	Scenarios []string
	// Families are the OS families (wire.Family) whose cells it explains;
	// another family's disagreement on the same scenario is another finding.
	Families []string
}

// Catalog is what lab has learned so far: each finding was first seen on
// real kernels, and is shown only for the cells that show it in a run.
// A disagreement no finding explains is a finding of its own, named after
// its scenario, until someone writes the sentence here.
var Catalog = []Finding{
	{
		ID: "linux-reuseaddr-on-both",
		Says: "On Linux, SO_REUSEADDR lifts a conflict only when the socket already bound (or the one in TIME_WAIT) set it too: " +
			"set on the new socket alone it changes nothing, where the answer says BSD looks at the new socket's flag only.",
		Scenarios: []string{"bsd-table/row6/on", "bsd-table/row7/on", "bsd-table-udp/row6/on", "bsd-table-udp/row7/on",
			"timewait/reuseaddr-new-only", "timewait/reuseaddr-new-only/listen",
			"timewait/reuseaddr-and-reuseport-new", "timewait/reuseaddr-and-reuseport-new/listen",
			"linux/client-any-then-specific/b-only", "linux/listen-specific-then-any/b-only", "ipv6/any6-then-loop6/on"},
		Families: []string{"linux"},
	},
	{
		ID: "linux-listener-conflicts",
		Says: "On Linux, a listening TCP socket conflicts with every other binding of its port that overlaps its address, " +
			"so a wildcard bind after a listener on a specific address fails whatever the flags, which the answer says is possible.",
		Scenarios: []string{"linux/listen-specific-then-any/*"},
		Families:  []string{"linux"},
	},
	{
		ID: "linux-tcp-reuseaddr-exact",
		Says: "On Linux, two TCP sockets that both set SO_REUSEADDR and do not listen may bind exactly the same address and port, " +
			"as two UDP sockets may, where the answer allows that for UDP only.",
		Scenarios: []string{"linux/tcp-reuseaddr-both-same-addr"},
		Families:  []string{"linux"},
	},
	{
		ID: "linux-multicast-mixed",
		Says: "On Linux, SO_REUSEADDR and SO_REUSEPORT do not stand in for each other on a multicast address: " +
			"a socket with one and a socket with the other conflict there.",
		Scenarios: []string{"multicast/mixed/*"},
		Families:  []string{"linux"},
	},
	{
		ID: "linux-option-after-bind",
		Says: "On Linux, SO_REUSEPORT (and for UDP SO_REUSEADDR) set after bind() still lets another socket share the port: " +
			"the flag counts when a conflict is checked, not when the socket was bound.",
		Scenarios: []string{"after-bind/*"},
		Families:  []string{"linux"},
	},
	{
		ID: "linux-duplicate-connect-errno",
		Says: "On Linux, a connect() that would duplicate another connection's five values fails with EADDRNOTAVAIL, " +
			"not with the EADDRINUSE the answer names for BSD.",
		Scenarios: []string{"connect/duplicate-5tuple/tcp", "connect/duplicate-5tuple-errno/tcp"},
		Families:  []string{"linux"},
	},
	{
		ID: "udp-hash2-wildcard",
		Says: "A UDP bind to the wildcard succeeds beside more than ten sockets bound to specific addresses of its port, " +
			"where it must fail: the conflict check Linux commit e537dd15d0d4 fixed.",
		Scenarios: []string{"kernel/udp-hash2-wildcard/*"},
	},
	{
		ID: "tcp-bhash2-mapped-wildcard",
		Says: "A TCP bind to ::ffff:127.0.0.1 succeeds on a port an IPv6 socket holds on the IPv4-mapped wildcard ::ffff:0.0.0.0, " +
			"which the kernel's own bind_wildcard selftest says must fail: TCP's second bind hash (bhash2, Linux 6.1) misses that conflict.",
		Scenarios: []string{"kernel/bind-wildcard/*"},
	},
	{
		ID:        "tcp-bind-timewait",
		Says:      "A TCP bind succeeds on an endpoint a TIME_WAIT entry still holds, where the kernel's bind_timewait selftest expects EADDRINUSE.",
		Scenarios: []string{"kernel/bind-timewait/*"},
	},
}

// FoundFinding is a finding a run shows, with every disagreement that shows
// it.
type FoundFinding struct {
	Finding
	// Basis is Stated when any of its scenarios rests on the answer's
	// words, Beyond when all rest on lab's extrapolation, OwnTests for a
	// kernel that misses its own selftests.
	Basis string
	// Explained is false for a disagreement no finding of the Catalog
	// explains: the sentence is then made from its scenario.
	Explained bool
	Rows      []FindingRow
}

// FindingRow is one scenario of a finding and the cells that disagree.
type FindingRow struct {
	Scenario rundir.Scenario
	Basis    string // Stated or Beyond; OwnTests for a kernel finding
	Cells    []FindingCell
}

// FindingCell is one target where the scenario shows the finding.
type FindingCell struct {
	Target   string `json:"target"`
	Kernel   string `json:"kernel,omitempty"` // the target's kernel release
	Observed string `json:"observed"`
	Claim    string `json:"claim"` // what the answer (or the kernel's selftests) says
}

// Targets lists the targets where a finding shows, in the run's order.
func (f FoundFinding) Targets() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range f.Rows {
		for _, cl := range r.Cells {
			if !seen[cl.Target] {
				seen[cl.Target] = true
				out = append(out, cl.Target)
			}
		}
	}
	return out
}

// scenarioBasis is whether a scenario's claim is the answer's or lab's
// extrapolation of it: a source that begins "beyond the answer" says so.
func scenarioBasis(s rundir.Scenario) string {
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(s.Source)), "beyond the answer") {
		return Beyond
	}
	return Stated
}

// Findings groups every disagreement of the run into findings: first those
// the answer's words back, then those beyond the answer, then kernels that
// miss their own selftests; within each, the Catalog's order, then
// unexplained disagreements in the run's order. A scenario two findings
// explain (it fails on Linux for two reasons) shows under both.
func (c *Comparison) Findings() []FoundFinding {
	found := map[string]*FoundFinding{}
	var unexplained []*FoundFinding
	add := func(f Finding, explained bool, basis string, r Row, cells []FindingCell) *FoundFinding {
		ff := found[f.ID]
		if ff == nil {
			ff = &FoundFinding{Finding: f, Explained: explained}
			found[f.ID] = ff
			if !explained {
				unexplained = append(unexplained, ff)
			}
		}
		ff.Rows = append(ff.Rows, FindingRow{Scenario: r.Scenario, Basis: basis, Cells: cells})
		return ff
	}
	for _, r := range c.Rows {
		basis := scenarioBasis(r.Scenario)
		c.group(r, basis, answerCells(c, r), add)
		c.group(r, OwnTests, kernelCells(c, r), add)
	}
	var out []FoundFinding
	for _, basis := range []string{Stated, Beyond, OwnTests} {
		for _, f := range Catalog {
			if ff := found[f.ID]; ff != nil && findingBasis(ff) == basis {
				ff.Basis = basis
				out = append(out, *ff)
			}
		}
		for _, ff := range unexplained {
			if findingBasis(ff) == basis {
				ff.Basis = basis
				out = append(out, *ff)
			}
		}
	}
	return out
}

// group files the cells of one row that disagree on one basis under the
// findings that explain them, and the rest under a finding of the row's own.
func (c *Comparison) group(r Row, basis string, cells []targetCell, add func(Finding, bool, string, Row, []FindingCell) *FoundFinding) {
	if len(cells) == 0 {
		return
	}
	byFinding := map[string][]FindingCell{}
	var rest []FindingCell
	for _, tc := range cells {
		matched := false
		for _, f := range Catalog {
			if f.explains(r.Scenario.ID, tc.family) && (basis == OwnTests) == f.aboutKernels() {
				byFinding[f.ID] = append(byFinding[f.ID], tc.cell)
				matched = true
			}
		}
		if !matched {
			rest = append(rest, tc.cell)
		}
	}
	for _, f := range Catalog {
		if fc := byFinding[f.ID]; fc != nil {
			add(f, true, basis, r, fc)
		}
	}
	if rest != nil {
		claim := rest[0].Claim
		says := fmt.Sprintf("%s: not what the answer claims (%s).", r.Scenario.Title, claim)
		if basis == OwnTests {
			says = fmt.Sprintf("%s: not what the kernel's own selftests expect (%s).", r.Scenario.Title, claim)
		}
		add(Finding{ID: "scenario:" + r.Scenario.ID + ":" + basis, Says: says, Scenarios: []string{r.Scenario.ID}}, false, basis, r, rest)
	}
}

// aboutKernels reports whether a finding is about kernels missing their
// selftests rather than about the answer: its scenarios are kernel/ ones.
func (f Finding) aboutKernels() bool {
	for _, p := range f.Scenarios {
		if !strings.HasPrefix(p, "kernel/") {
			return false
		}
	}
	return len(f.Scenarios) > 0
}

// explains reports whether the finding covers scenario id on a target of
// family.
func (f Finding) explains(id, family string) bool {
	if len(f.Families) > 0 && !contains(f.Families, family) {
		return false
	}
	for _, p := range f.Scenarios {
		if scenario.Match(p, id) {
			return true
		}
	}
	return false
}

func findingBasis(ff *FoundFinding) string {
	basis := Beyond
	for _, r := range ff.Rows {
		switch r.Basis {
		case OwnTests:
			return OwnTests
		case Stated:
			basis = Stated
		}
	}
	return basis
}

type targetCell struct {
	family string
	cell   FindingCell
}

// answerCells are a row's cells that differ from the answer.
func answerCells(c *Comparison, r Row) []targetCell {
	var out []targetCell
	for i, cl := range r.Cells {
		if cl.State == Differ {
			out = append(out, targetCell{c.family(i), FindingCell{Target: cl.Target, Kernel: c.kernel(i), Observed: cl.Observed(), Claim: cl.Claim}})
		}
	}
	return out
}

// kernelCells are a row's cells that differ from what the kernel's own
// selftests expect, where the scenario records it.
func kernelCells(c *Comparison, r Row) []targetCell {
	var out []targetCell
	for i, cl := range r.Cells {
		if cl.Result == nil {
			continue
		}
		claim := cl.Result.Claims[KernelSource]
		if claim == "" || !checks(cl.Outcome, claim) || scenario.Matches(claim, cl.Outcome) {
			continue
		}
		out = append(out, targetCell{c.family(i), FindingCell{Target: cl.Target, Kernel: c.kernel(i), Observed: cl.Observed(), Claim: claim}})
	}
	return out
}

func (c *Comparison) family(i int) string {
	if env := c.Targets[i].Env; env != nil {
		return env.Family
	}
	return ""
}

func (c *Comparison) kernel(i int) string {
	if env := c.Targets[i].Env; env != nil {
		return env.KernelRelease
	}
	return ""
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// FindingCounts counts findings by basis.
func FindingCounts(fs []FoundFinding) map[string]int {
	m := map[string]int{}
	for _, f := range fs {
		m[f.Basis]++
	}
	return m
}

// Duration is how long a waitfree step waited on one target: how long an
// endpoint stayed unavailable (a TIME_WAIT length).
type Duration struct {
	Scenario string
	Target   string
	Kernel   string
	Waited   wire.Millis
	Outcome  string // the step's result: a duration, EADDRINUSE when it gave up
}

// Durations lists every waitfree measurement of the run, scenario by
// scenario in the run's order, targets in theirs.
func (c *Comparison) Durations() []Duration {
	var out []Duration
	for _, r := range c.Rows {
		for i, cl := range r.Cells {
			if cl.Result == nil {
				continue
			}
			for _, st := range cl.Result.Steps {
				if strings.HasPrefix(st.Text, wire.VerbWaitfree+" ") || strings.HasPrefix(st.Text, "try "+wire.VerbWaitfree+" ") {
					out = append(out, Duration{Scenario: r.Scenario.ID, Target: cl.Target, Kernel: c.kernel(i), Waited: st.Waited, Outcome: st.Result})
				}
			}
		}
	}
	return out
}

// DocFinding is a finding as report.json holds it.
type DocFinding struct {
	ID   string `json:"id"` // a Catalog finding's id, or "scenario:ID:BASIS" for one no finding explains
	Says string `json:"says"`
	// Basis is "stated", "beyond the answer" or "kernel selftests".
	Basis     string               `json:"basis"`
	Explained bool                 `json:"explained"`
	Targets   []string             `json:"targets"`
	Scenarios []DocFindingScenario `json:"scenarios"`
}

// DocFindingScenario is one scenario of a finding: its index in the
// document's scenarios, and the cells that disagree.
type DocFindingScenario struct {
	ID     string        `json:"id"`
	Index  int           `json:"index"`
	Basis  string        `json:"basis"`
	Source string        `json:"source,omitempty"`
	Cells  []FindingCell `json:"cells"`
}

// DocDuration is a waitfree measurement as report.json holds it.
type DocDuration struct {
	Scenario string      `json:"scenario"`
	Target   string      `json:"target"`
	Kernel   string      `json:"kernel,omitempty"`
	Waited   wire.Millis `json:"waited_ms"`
	Outcome  string      `json:"outcome"`
}

func docFindings(fs []FoundFinding, d *Doc) []DocFinding {
	index := map[string]int{}
	for i, s := range d.Scenarios {
		index[s.ID] = i
	}
	out := []DocFinding{}
	for _, f := range fs {
		df := DocFinding{ID: f.ID, Says: f.Says, Basis: f.Basis, Explained: f.Explained, Targets: f.Targets()}
		for _, r := range f.Rows {
			df.Scenarios = append(df.Scenarios, DocFindingScenario{ID: r.Scenario.ID, Index: index[r.Scenario.ID], Basis: r.Basis, Source: r.Scenario.Source, Cells: r.Cells})
		}
		out = append(out, df)
	}
	return out
}

func docDurations(ds []Duration) []DocDuration {
	var out []DocDuration
	for _, x := range ds {
		out = append(out, DocDuration{Scenario: x.Scenario, Target: x.Target, Kernel: x.Kernel, Waited: x.Waited, Outcome: x.Outcome})
	}
	return out
}
