package scenario_test

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"lab/scenario"
	"lab/wire"
)

// claimRow is one numbered claim of docs/claims.md.
type claimRow struct {
	line     int
	num      int
	says     string
	patterns []string // the scenarios column's ids and globs
	reason   string
}

var patternRE = regexp.MustCompile("`([^`]+)`")

// readClaimsDoc parses the claims table of docs/claims.md: rows of
// | # | the answer says | for | scenarios | reason |, cells split at pipes
// that are not escaped.
func readClaimsDoc(t *testing.T, path string) []claimRow {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows []claimRow
	for i, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := splitRow(line)
		if len(cells) != 5 {
			t.Errorf("%s:%d: %d cells, want 5 (#, the answer says, for, scenarios, reason)", path, i+1, len(cells))
			continue
		}
		n, err := strconv.Atoi(cells[0])
		if err != nil {
			continue // the header
		}
		r := claimRow{line: i + 1, num: n, says: cells[1], reason: cells[4]}
		for _, m := range patternRE.FindAllStringSubmatch(cells[3], -1) {
			r.patterns = append(r.patterns, m[1])
		}
		if strings.Trim(patternRE.ReplaceAllString(cells[3], ""), ", ") != "" {
			t.Errorf("%s:%d: claim %d: the scenarios column holds more than `ids` separated by commas: %q", path, i+1, n, cells[3])
		}
		rows = append(rows, r)
	}
	return rows
}

// splitRow splits a Markdown table row at its unescaped pipes.
func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(strings.TrimSuffix(line, "|"), "|")
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// TestClaimsDoc keeps docs/claims.md true to the catalog: the claims are
// numbered 1, 2, ... in order; each names scenarios that exist or says why
// it is not tested; and every scenario that records a claim of the answer
// is named by one of them, so a new claim cannot go unlisted.
func TestClaimsDoc(t *testing.T) {
	const path = "../docs/claims.md"
	scs, err := scenario.ParseFile("../scenarios.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rows := readClaimsDoc(t, path)
	if len(rows) < 81 {
		t.Fatalf("%s lists %d claims; the audit found 81 testable ones", path, len(rows))
	}
	for _, p := range checkClaims(path, rows, scs) {
		t.Error(p)
	}
}

// checkClaims lists what is wrong with the claims of a claims file.
func checkClaims(path string, rows []claimRow, scs []scenario.Scenario) []string {
	var problems []string
	bad := func(r claimRow, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d: claim %d ", path, r.line, r.num)+fmt.Sprintf(format, args...))
	}
	named := map[string]bool{}
	for i, r := range rows {
		if r.num != i+1 {
			bad(r, "is numbered out of order: want %d (numbered in order, none skipped)", i+1)
		}
		if strings.Trim(r.says, `"`) == "" {
			bad(r, "quotes nothing of the answer")
		}
		if len(r.patterns) == 0 && r.reason == "" {
			bad(r, "has neither a scenario nor a reason it is not tested")
		}
		for _, p := range r.patterns {
			var m []scenario.Scenario
			for _, s := range scs {
				if s.ID == p || (strings.ContainsAny(p, "*?") && scenario.Match(p, s.ID)) {
					m = append(m, s)
				}
			}
			if len(m) == 0 {
				bad(r, "names %q, which is no scenario of the catalog", p)
			}
			for _, s := range m {
				named[s.ID] = true
			}
		}
	}
	for _, s := range scs {
		if len(s.Expect["answer"]) > 0 && !named[s.ID] {
			problems = append(problems, fmt.Sprintf("%s: scenario %s records a claim of the answer, but no claim of %s names it", s.Pos, s.ID, path))
		}
	}
	return problems
}

// TestClaimsDocCatchesMistakes checks the checks fail where they must: a
// scenario that does not exist, a claim with neither scenarios nor a
// reason, a gap in the numbers, a claimed scenario no claim names.
func TestClaimsDocCatchesMistakes(t *testing.T) {
	dir := t.TempDir()
	doc := "| # | the answer says | for | scenarios | why |\n|---|---|---|---|---|\n" +
		"| 1 | \"a\" | all | `t/one`, `no/such/*` | |\n" +
		"| 2 | \"b\" | all | | |\n" +
		"| 4 | \"c \\| d\" | all | | history |\n"
	if err := os.WriteFile(dir+"/claims.md", []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	rows := readClaimsDoc(t, dir+"/claims.md")
	if len(rows) != 3 || rows[2].says != `"c | d"` {
		t.Fatalf("parsed %+v", rows)
	}
	scs := []scenario.Scenario{
		{Scenario: wire.Scenario{ID: "t/one"}, Expect: map[string]map[string]string{"answer": {"bsd": "ok"}}},
		{Scenario: wire.Scenario{ID: "t/two"}, Expect: map[string]map[string]string{"answer": {"bsd": "ok"}}},
		{Scenario: wire.Scenario{ID: "t/three"}},
	}
	got := strings.Join(checkClaims("c.md", rows, scs), "\n")
	for _, want := range []string{
		`c.md:3: claim 1 names "no/such/*", which is no scenario of the catalog`,
		"c.md:4: claim 2 has neither a scenario nor a reason",
		"c.md:5: claim 4 is numbered out of order: want 3",
		"scenario t/two records a claim of the answer, but no claim of c.md names it",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("checks miss %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, "t/three") || strings.Contains(got, "t/one records") {
		t.Errorf("checks blame a scenario without a claim, or one a claim names:\n%s", got)
	}
}
