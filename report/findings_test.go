package report_test

import (
	"encoding/json"
	"encoding/xml"
	"reflect"
	"strings"
	"testing"

	"lab/report"
	"lab/scenario"
)

// TestFindings groups the disagreements of testdata/run3, real results of
// linux-5.10 and linux-6.1, into findings: stated apart from beyond the
// answer apart from kernels missing their own selftests.
func TestFindings(t *testing.T) {
	c := report.Compare(readRun(t, "testdata/run3"))
	type row struct{ id, basis, targets string }
	type finding struct {
		id, basis string
		explained bool
		rows      []row
	}
	var got []finding
	for _, f := range c.Findings() {
		g := finding{id: f.ID, basis: f.Basis, explained: f.Explained}
		for _, r := range f.Rows {
			var ts []string
			for _, cl := range r.Cells {
				ts = append(ts, cl.Target)
			}
			g.rows = append(g.rows, row{r.Scenario.ID, r.Basis, strings.Join(ts, ",")})
		}
		got = append(got, g)
	}
	want := []finding{
		{"linux-reuseaddr-on-both", report.Stated, true, []row{
			{"bsd-table/row6/on", report.Stated, "linux-5.10,linux-6.1"},
			{"ipv6/any6-then-loop6/on", report.Beyond, "linux-5.10,linux-6.1"},
		}},
		{"linux-option-after-bind", report.Beyond, true, []row{{"after-bind/reuseport/tcp", report.Beyond, "linux-5.10,linux-6.1"}}},
		// connect/duplicate-5tuple/tcp claims "fails" for Linux and holds:
		// only the beyond-the-answer errno scenario shows the finding.
		{"linux-duplicate-connect-errno", report.Beyond, true, []row{{"connect/duplicate-5tuple-errno/tcp", report.Beyond, "linux-5.10,linux-6.1"}}},
		{"udp-hash2-wildcard", report.OwnTests, true, []row{{"kernel/udp-hash2-wildcard/11-specific/any", report.OwnTests, "linux-5.10"}}},
		{"tcp-bhash2-mapped-wildcard", report.OwnTests, true, []row{{"kernel/bind-wildcard/mapped-any_mapped-local", report.OwnTests, "linux-6.1"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("findings:\n got %+v\nwant %+v", got, want)
	}
	if n := report.FindingCounts(c.Findings()); n[report.Stated] != 1 || n[report.Beyond] != 2 || n[report.OwnTests] != 2 {
		t.Errorf("FindingCounts = %v", n)
	}

	ds := c.Durations()
	if len(ds) != 2 {
		t.Fatalf("Durations = %+v, want one per target", ds)
	}
	for _, d := range ds {
		if d.Scenario != "timewait-length/server-side" || d.Waited < 60000 || d.Waited > 63000 {
			t.Errorf("duration %+v: want timewait-length/server-side, about 60 s (Linux's TIME_WAIT)", d)
		}
	}

	golden(t, "run3.md", report.Markdown(c))

	b, err := report.JSON(c)
	if err != nil {
		t.Fatal(err)
	}
	var doc report.Doc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Findings) != 5 || doc.Findings[0].Scenarios[1].ID != "ipv6/any6-then-loop6/on" || doc.Scenarios[doc.Findings[0].Scenarios[1].Index].ID != "ipv6/any6-then-loop6/on" ||
		doc.Summary.Findings[report.OwnTests] != 2 || len(doc.Durations) != 2 {
		t.Errorf("report.json findings %+v, summary %+v, durations %+v", doc.Findings, doc.Summary.Findings, doc.Durations)
	}

	page, err := report.HTML(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`<section id="findings">`, `<h3>Beyond the answer (lab&#39;s extrapolation of it)</h3>`,
		`<h3>Where a kernel misses its own selftests</h3>`, `<a href="#row-8"><code>ipv6/any6-then-loop6/on</code></a> <em>beyond the answer</em>`,
		`<section id="durations">`} {
		if !strings.Contains(string(page), s) {
			t.Errorf("report.html lacks %s", s)
		}
	}

	j, err := report.JUnit(c)
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Suites []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Type    string `xml:"type,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(j, &suites); err != nil {
		t.Fatal(err)
	}
	failures := map[string]string{}
	for _, s := range suites.Suites {
		for _, tc := range s.Cases {
			if tc.Failure != nil {
				failures[s.Name+" "+tc.Name] = tc.Failure.Type + ": " + tc.Failure.Message
			}
		}
	}
	for k, want := range map[string]string{
		"linux-5.10 kernel/udp-hash2-wildcard/11-specific/any": "kernel selftests: observed ok, the kernel's selftests expect EADDRINUSE; finding: A UDP bind to the wildcard",
		"linux-6.1 after-bind/reuseport/tcp":                   "differ: observed ok, answer claims EADDRINUSE (linux>=3.9); finding: On Linux, SO_REUSEPORT",
	} {
		if !strings.HasPrefix(failures[k], want) {
			t.Errorf("junit %s: %q, want prefix %q", k, failures[k], want)
		}
	}
	if _, ok := failures["linux-6.1 kernel/udp-hash2-wildcard/11-specific/any"]; ok {
		t.Error("junit: linux-6.1 passes the UDP hash2 selftest yet its case fails")
	}
}

// TestCatalogFindings checks every finding's scenario patterns name
// scenarios of the catalog, so a renamed scenario cannot silently drop out
// of its finding.
func TestCatalogFindings(t *testing.T) {
	scs, err := scenario.ParseFile("../scenarios.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range report.Catalog {
		if seen[f.ID] {
			t.Errorf("finding %s given twice", f.ID)
		}
		seen[f.ID] = true
		if f.Says == "" || !strings.HasSuffix(f.Says, ".") {
			t.Errorf("finding %s: says %q, want one sentence", f.ID, f.Says)
		}
		for _, p := range f.Scenarios {
			if len(scenario.Filter(scs, p)) == 0 {
				t.Errorf("finding %s: pattern %q matches no scenario of scenarios.yaml", f.ID, p)
			}
		}
	}
}
