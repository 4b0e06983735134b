package gencatalog_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lab/internal/gencatalog"
	"lab/report"
	"lab/rundir"
	"lab/scenario"
)

// TestCatalogParses writes catalogs of several sizes and reads them back
// with lab's own parser: every scenario is valid, ids are unique, and the
// sizes are exactly what was asked for, past the matrix's size too.
func TestCatalogParses(t *testing.T) {
	for _, n := range []int{1, 7, 300, 2000, gencatalog.Distinct, 10000} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			scs, err := scenario.Parse("gen.yaml", gencatalog.Catalog(n))
			if err != nil {
				t.Fatal(err)
			}
			if len(scs) != n {
				t.Fatalf("parsed %d scenarios; want %d", len(scs), n)
			}
			sections := map[string]int{}
			for _, s := range scs {
				sections[report.Section(s.ID)]++
			}
			if n >= 300 && len(sections) < 24 {
				t.Errorf("%d scenarios fall in %d sections; want every kind and A address (24)", n, len(sections))
			}
		})
	}
}

// TestDistinct checks the constant against the matrix: one full round has
// no repeated id, and the next round starts the repeats.
func TestDistinct(t *testing.T) {
	scs := gencatalog.Scenarios(gencatalog.Distinct + 1)
	seen := map[string]bool{}
	for _, s := range scs[:gencatalog.Distinct] {
		if seen[s.ID] {
			t.Fatalf("%s twice in one round", s.ID)
		}
		seen[s.ID] = true
		if strings.HasPrefix(s.ID, "r2-") {
			t.Fatalf("%s in the first round", s.ID)
		}
	}
	if last := scs[gencatalog.Distinct]; !strings.HasPrefix(last.ID, "r2-") {
		t.Errorf("scenario %d is %s; want the second round", gencatalog.Distinct+1, last.ID)
	}
}

// TestCatalogHasMappedForms: the catalog exercises the bracketed
// IPv4-mapped endpoints the parser now accepts.
func TestCatalogHasMappedForms(t *testing.T) {
	cat := string(gencatalog.Catalog(gencatalog.Distinct))
	for _, want := range []string{"bind A [::ffff:127.0.0.1]:P", "bind B [::ffff:0.0.0.0]:P", "socket A ip6 IPV6_V6ONLY=1 SO_REUSEADDR SO_REUSEPORT", "listen A"} {
		if !strings.Contains(cat, want) {
			t.Errorf("catalog lacks %q", want)
		}
	}
}

// TestWriteRunDir generates run directories in both forms and reads them
// back as lab report would: every target has every result, the comparison
// has disagreements, kernel differences and spreads to render.
func TestWriteRunDir(t *testing.T) {
	for _, journal := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "run")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := gencatalog.WriteRunDir(dir, gencatalog.RunDirOptions{Scenarios: 2500, Journal: journal}); err != nil {
			t.Fatal(err)
		}
		d, err := rundir.Read(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Targets) != 5 || len(d.Run.Scenarios) != 2500 {
			t.Fatalf("journal %v: %d targets, %d scenarios", journal, len(d.Targets), len(d.Run.Scenarios))
		}
		for _, tg := range d.Targets {
			if len(tg.Results) != 2500 || tg.Env == nil {
				t.Errorf("journal %v: %s has %d results, env %v", journal, tg.Name, len(tg.Results), tg.Env)
			}
		}
		c := report.Compare(d)
		ds, kd, spreads := len(c.Disagreements()), len(c.KernelDifferences()), 0
		for _, r := range c.Rows {
			if strings.HasPrefix(r.Scenario.ID, "spread/") {
				spreads++
			}
		}
		if ds < 100 || kd < 100 || spreads != 2 {
			t.Errorf("journal %v: %d disagreements, %d kernel differences, %d spreads; want some of each", journal, ds, kd, spreads)
		}
		t.Logf("journal %v: %d disagreements, %d kernel differences, %d spreads", journal, ds, kd, spreads)
	}
}
