package report

import (
	"encoding/xml"
	"fmt"
	"strings"

	"lab/rundir"
	"lab/wire"
)

// JUnit renders junit.xml: one test suite per target and one test case per
// scenario on it, so a CI shows findings like failing tests.
//
// Without a baseline a case is checked against the answer's claim:
//
//	match                       passed
//	differ                      failure (observed X, the answer claims Y); this includes
//	                            setup-failed where the answer claims the last step's outcome
//	                            (observed setup-failed: bind B EADDRINUSE, the answer claims ok)
//	no claim                    skipped (nothing to check; the outcome is in the message)
//	skipped; setup-failed with  skipped (the claim could not be checked; the reason is in the message)
//	no claim or unsupported
//	claimed
//	timeout, error              error   (the agent could not measure)
//	no result                   error   (the target failed or never ran)
//
// With a baseline a case is checked against what the baseline observed:
// same outcome passes, another outcome is a failure, and a cell that cannot
// be compared (see WithBaseline) is an error when this run has no result, a
// timeout or an agent error, and skipped otherwise.
func JUnit(c *Comparison) ([]byte, error) {
	suites := junitSuites{Name: "lab " + c.Dir.Run.ID}
	found := findingsByCell(c.Findings())
	for i, t := range c.Targets {
		s := junitSuite{Name: t.Name, Properties: targetProperties(t)}
		for _, r := range c.Rows {
			tc := junitCase(c, r, r.Cells[i], found[cellKey{r.Scenario.ID, t.Name}])
			s.Tests++
			switch {
			case tc.Failure != nil:
				s.Failures++
			case tc.Error != nil:
				s.Errors++
			case tc.Skipped != nil:
				s.Skipped++
			}
			s.time += tc.micros
			s.Cases = append(s.Cases, tc)
		}
		s.Time = seconds(s.time)
		suites.Tests += s.Tests
		suites.Failures += s.Failures
		suites.Errors += s.Errors
		suites.Skipped += s.Skipped
		suites.time += s.time
		suites.Suites = append(suites.Suites, s)
	}
	suites.Time = seconds(suites.time)
	b, err := xml.MarshalIndent(suites, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding junit.xml: %w", err)
	}
	return append(append([]byte(xml.Header), b...), '\n'), nil
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
	time     int64
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitTestCase `xml:"testcase"`
	time       int64
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitTestCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure"`
	Error     *junitProblem `xml:"error"`
	Skipped   *junitProblem `xml:"skipped"`
	SystemOut *junitText    `xml:"system-out"`
	micros    int64
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",cdata"` // the trace, its lines readable as they are
}

type junitText struct {
	Text string `xml:",cdata"`
}

func targetProperties(t rundir.Target) []junitProperty {
	ps := []junitProperty{{"status", string(t.Status)}}
	if t.Error != "" {
		ps = append(ps, junitProperty{"error", t.Error})
	}
	if t.Env != nil {
		ps = append(ps, junitProperty{"os", t.Env.OS}, junitProperty{"kernel_release", t.Env.KernelRelease}, junitProperty{"arch", t.Env.Arch})
	}
	return ps
}

func junitCase(c *Comparison, r Row, cl Cell, found []FoundFinding) junitTestCase {
	tc := junitTestCase{Name: r.Scenario.ID, ClassName: cl.Target}
	var body string
	if cl.Result != nil {
		tc.micros = cl.Result.Micros
		body = trace(r, cl)
	}
	tc.Time = seconds(tc.micros)
	problem := func(msg, typ string) *junitProblem { return &junitProblem{Message: msg, Type: typ, Body: body} }
	noResult := func() *junitProblem {
		msg := "no result"
		if t := c.targetNamed(cl.Target); t != nil && t.Error != "" {
			msg += ": target " + string(t.Status) + ": " + t.Error
		}
		return problem(msg, "missing")
	}
	if c.Baseline != nil {
		switch {
		case cl.BaselineState == Same:
		case cl.BaselineState == Changed:
			tc.Failure = problem(fmt.Sprintf("observed %s, baseline %s observed %s", cl.Outcome, c.Baseline.Run.ID, cl.Baseline), Changed)
		case cl.State == Missing:
			tc.Error = noResult()
		case cl.Outcome == wire.Timeout || cl.Outcome == wire.Error:
			tc.Error = problem(outcomeReason(cl), cl.Outcome)
		case cl.Baseline == "":
			tc.Skipped = problem(fmt.Sprintf("not compared: baseline %s has no result; observed %s", c.Baseline.Run.ID, cl.Outcome), "")
		default:
			tc.Skipped = problem(fmt.Sprintf("not compared: observed %s, baseline %s observed %s", outcomeReason(cl), c.Baseline.Run.ID, cl.Baseline), "")
		}
	} else {
		switch cl.State {
		case Match:
		case Differ:
			tc.Failure = problem(fmt.Sprintf("observed %s, %s claims %s%s%s", cl.Observed(), c.Source, cl.Claim, claimKey(c, cl), findingNote(found, false)), Differ)
		case NoClaim:
			if note := findingNote(found, true); note != "" {
				tc.Failure = problem(fmt.Sprintf("observed %s, the kernel's selftests expect %s%s", cl.Observed(), cl.Result.Claims[KernelSource], note), OwnTests)
				break
			}
			tc.Skipped = problem(fmt.Sprintf("no claim: the %s says nothing for this OS; observed %s", c.Source, cl.Outcome), "")
		case Missing:
			tc.Error = noResult()
		case Unmeasured:
			if cl.Outcome == wire.Timeout || cl.Outcome == wire.Error {
				tc.Error = problem(outcomeReason(cl), cl.Outcome)
			} else {
				tc.Skipped = problem(outcomeReason(cl), "")
			}
		}
	}
	if tc.Failure == nil && tc.Error == nil && tc.Skipped == nil && body != "" {
		tc.SystemOut = &junitText{body} // otherwise the trace is in the problem's body
	}
	return tc
}

func (c *Comparison) targetNamed(name string) *rundir.Target {
	for i := range c.Targets {
		if c.Targets[i].Name == name {
			return &c.Targets[i]
		}
	}
	return nil
}

func claimKey(c *Comparison, cl Cell) string {
	if cl.Result == nil || cl.Result.ClaimKeys[c.Source] == "" {
		return ""
	}
	return " (" + cl.Result.ClaimKeys[c.Source] + ")"
}

func outcomeReason(cl Cell) string {
	if cl.Result != nil && cl.Result.Reason != "" {
		return cl.Outcome + ": " + cl.Result.Reason
	}
	return cl.Outcome
}

// trace is a scenario's steps as text: what each call did.
func trace(r Row, cl Cell) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nsource: %s\n", r.Scenario.Title, r.Scenario.Source)
	res := cl.Result
	for i, st := range res.Steps {
		fmt.Fprintf(&b, "%d. %s", i+1, st.Text)
		if st.Call != "" {
			fmt.Fprintf(&b, "  %s", st.Call)
		}
		fmt.Fprintf(&b, " -> %s", st.Result)
		if st.Errno != 0 {
			fmt.Fprintf(&b, " (errno %d)", st.Errno)
		}
		if st.Local != "" {
			fmt.Fprintf(&b, " local %s", st.Local)
		}
		if len(st.Counts) > 0 {
			fmt.Fprintf(&b, " counts %v of %d", st.Counts, st.Sent)
		}
		if st.Bytes != 0 {
			fmt.Fprintf(&b, " %d bytes", st.Bytes)
		}
		if st.Waited != 0 {
			fmt.Fprintf(&b, " waited %dms", st.Waited)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "outcome: %s\n", res.Outcome)
	return b.String()
}

func seconds(micros int64) string {
	return fmt.Sprintf("%.6f", float64(micros)/1e6)
}

type cellKey struct{ scenario, target string }

// findingsByCell maps each disagreeing cell to the findings it shows.
func findingsByCell(fs []FoundFinding) map[cellKey][]FoundFinding {
	m := map[cellKey][]FoundFinding{}
	for _, f := range fs {
		for _, r := range f.Rows {
			for _, cl := range r.Cells {
				k := cellKey{r.Scenario.ID, cl.Target}
				m[k] = append(m[k], f)
			}
		}
	}
	return m
}

// findingNote names the findings a failing case shows, those about the
// kernel's own selftests when kernel is true, the others otherwise.
func findingNote(fs []FoundFinding, kernel bool) string {
	var says []string
	for _, f := range fs {
		if (f.Basis == OwnTests) == kernel {
			says = append(says, f.Says)
		}
	}
	if len(says) == 0 {
		return ""
	}
	return "; finding: " + strings.Join(says, "; ")
}
