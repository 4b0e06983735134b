package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"lab/rundir"
	"lab/wire"
)

// JSONFormat names the layout of report.json; it changes when a field
// changes meaning or goes away.
const JSONFormat = "lab-report/1"

// Doc is the whole comparison as report.json holds it, for other tools and
// for the HTML page, which embeds it.
type Doc struct {
	Format   string      `json:"format"`
	Run      DocRun      `json:"run"`
	Source   string      `json:"source"`             // the documented source compared against
	Baseline *DocRun     `json:"baseline,omitempty"` // the baseline run, when one was given
	Targets  []DocTarget `json:"targets"`
	Sections []string    `json:"sections"`
	// Scenarios are in the run's order, each with one cell per target in
	// the order of Targets.
	Scenarios []DocScenario `json:"scenarios"`
	// Findings are the disagreements grouped into what they show (see
	// Comparison.Findings); Durations are the waitfree measurements.
	Findings  []DocFinding  `json:"findings"`
	Durations []DocDuration `json:"durations,omitempty"`
	Summary   DocSummary    `json:"summary"`
}

// DocRun identifies a run.
type DocRun struct {
	ID       string        `json:"id"`
	Started  time.Time     `json:"started"`
	Finished *time.Time    `json:"finished,omitempty"`
	Command  string        `json:"command"`
	Status   rundir.Status `json:"status"`
}

// DocTarget is a target, how its run went and its cells' states counted.
type DocTarget struct {
	Name     string         `json:"name"`
	Provider string         `json:"provider,omitempty"`
	Status   rundir.Status  `json:"status"`
	Error    string         `json:"error,omitempty"`
	Env      *wire.Env      `json:"env,omitempty"`
	Phases   []rundir.Phase `json:"phases,omitempty"`
	Counts   map[string]int `json:"counts"` // state -> cells
	// Changed counts the cells that changed since the baseline.
	Changed int `json:"changed,omitempty"`
}

// DocScenario is a scenario and its cells.
type DocScenario struct {
	rundir.Scenario
	Section string `json:"section"`
	// Disagrees is true when a cell differs from the answer or changed
	// since the baseline.
	Disagrees bool      `json:"disagrees"`
	Cells     []DocCell `json:"cells"`
}

// DocCell is one scenario on one target: the comparison and the full
// trace of what was measured.
type DocCell struct {
	Target        string `json:"target"`
	State         string `json:"state"` // match, differ, no-claim, unmeasured, missing
	Outcome       string `json:"outcome,omitempty"`
	Claim         string `json:"claim,omitempty"`
	ClaimKey      string `json:"claim_key,omitempty"` // the expect key the claim came from, e.g. linux>=3.9
	Baseline      string `json:"baseline,omitempty"`
	BaselineState string `json:"baseline_state,omitempty"` // same, changed, uncompared
	// Result is everything the agent reported: steps, ports, addresses.
	Result *wire.Result `json:"result,omitempty"`
}

// DocSummary counts what a reader looks for first.
type DocSummary struct {
	Scenarios         int      `json:"scenarios"`
	Targets           int      `json:"targets"`
	Disagreements     int      `json:"disagreements"` // scenarios with a cell that differs from the answer
	Changes           []Change `json:"changes,omitempty"`
	KernelDifferences []string `json:"kernel_differences,omitempty"` // scenarios where kernels of one family differ
	// Findings counts the findings by basis: stated, "beyond the answer",
	// "kernel selftests".
	Findings map[string]int `json:"findings"`
}

// Document builds the JSON document of a comparison.
func Document(c *Comparison) *Doc {
	d := &Doc{Format: JSONFormat, Run: docRun(c.Dir.Run), Source: c.Source, Sections: c.Sections()}
	if c.Baseline != nil {
		b := docRun(c.Baseline.Run)
		d.Baseline = &b
	}
	if d.Sections == nil {
		d.Sections = []string{}
	}
	for i, t := range c.Targets {
		d.Targets = append(d.Targets, DocTarget{Name: t.Name, Provider: t.Provider, Status: t.Status, Error: t.Error,
			Env: t.Env, Phases: t.Phases, Counts: c.Counts(i)})
	}
	for _, r := range c.Rows {
		s := DocScenario{Scenario: r.Scenario, Section: r.Section, Disagrees: r.Disagrees(), Cells: []DocCell{}}
		for _, cl := range r.Cells {
			dc := DocCell{Target: cl.Target, State: cl.State, Outcome: cl.Outcome, Claim: cl.Claim,
				Baseline: cl.Baseline, BaselineState: cl.BaselineState}
			if cl.Result != nil {
				dc.ClaimKey = cl.Result.ClaimKeys[c.Source]
				res := cl.Result.Result
				dc.Result = &res
			}
			s.Cells = append(s.Cells, dc)
		}
		d.Scenarios = append(d.Scenarios, s)
	}
	for _, ch := range c.Changes() {
		for i := range d.Targets {
			if d.Targets[i].Name == ch.Target {
				d.Targets[i].Changed++
			}
		}
	}
	fs := c.Findings()
	d.Findings = docFindings(fs, d)
	d.Durations = docDurations(c.Durations())
	d.Summary = DocSummary{Scenarios: len(c.Rows), Targets: len(c.Targets), Disagreements: len(c.Disagreements()), Changes: c.Changes(),
		Findings: FindingCounts(fs)}
	for _, r := range c.KernelDifferences() {
		d.Summary.KernelDifferences = append(d.Summary.KernelDifferences, r.Scenario.ID)
	}
	return d
}

func docRun(r rundir.Run) DocRun {
	return DocRun{ID: r.ID, Started: r.Started, Finished: r.Finished, Command: r.Command, Status: r.Status}
}

// JSON renders report.json: the whole comparison, indented.
func JSON(c *Comparison) ([]byte, error) {
	b, err := encodeDoc(Document(c), true, nil)
	if err != nil {
		return nil, fmt.Errorf("encoding report.json: %w", err)
	}
	return append(b, '\n'), nil
}

// encodeDoc encodes d exactly as json.MarshalIndent(d, "", "  ") would, or
// json.Marshal when !indent, with each scenario passed through each when it
// is not nil, but a scenario at a time: encoding the whole
// document at once builds it twice over (encoded, then indented) in buffers
// that grow by copying, which for 10,000 scenarios on 5 targets is hundreds
// of megabytes and most of the time.
// sizeSample is how many scenarios encodeDoc encodes before it estimates
// the size of the rest.
const sizeSample = 64

func encodeDoc(d *Doc, indent bool, each func(*DocScenario) *DocScenario) ([]byte, error) {
	if d.Scenarios == nil && each == nil { // "scenarios": null, and nothing big to encode
		if indent {
			return json.MarshalIndent(d, "", "  ")
		}
		return json.Marshal(d)
	}
	head := *d
	head.Scenarios = []DocScenario{}
	marshal, marker := json.Marshal, []byte(`,"scenarios":[]`)
	if indent {
		marshal = func(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }
		marker = []byte(",\n  \"scenarios\": []")
	}
	b, err := marshal(head)
	if err != nil {
		return nil, err
	}
	// Quotes inside strings are escaped, so the marker is the top-level
	// field and nothing else.
	at := bytes.Index(b, marker)
	if at < 0 || bytes.Count(b, marker) != 1 {
		return nil, fmt.Errorf("encoding the document: %d scenario lists in its head", bytes.Count(b, marker))
	}
	open := at + len(marker) - 1 // the ']' of the empty list
	var out, scratch bytes.Buffer
	out.Write(b[:open])
	for i := range d.Scenarios {
		if i == sizeSample && i < len(d.Scenarios) {
			// Room for the rest at the rate so far, so the output grows
			// once, not by doubling (which at this size is twice the
			// memory and a copy of everything at each step).
			perScenario := (out.Len() - open) / i
			out.Grow((len(d.Scenarios)-i)*perScenario*9/8 + len(b) - open)
		}
		sc := &d.Scenarios[i]
		if each != nil {
			sc = each(sc)
		}
		s, err := json.Marshal(sc)
		if err != nil {
			return nil, fmt.Errorf("encoding scenario %s: %w", d.Scenarios[i].ID, err)
		}
		if i > 0 {
			out.WriteByte(',')
		}
		if !indent {
			out.Write(s)
			continue
		}
		out.WriteString("\n    ")
		// Indent asks its buffer for twice the input's room each time:
		// a small reused one, not the document.
		scratch.Reset()
		if err := json.Indent(&scratch, s, "    ", "  "); err != nil {
			return nil, fmt.Errorf("encoding scenario %s: %w", d.Scenarios[i].ID, err)
		}
		out.Write(scratch.Bytes())
	}
	if indent && len(d.Scenarios) > 0 {
		out.WriteString("\n  ")
	}
	out.Write(b[open:])
	return out.Bytes(), nil
}
