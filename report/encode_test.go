package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"lab/internal/gencatalog"
	"lab/rundir"
)

// TestEncodeDocIsMarshal: the document encoded a scenario at a time is the
// very bytes json.Marshal and json.MarshalIndent make of it whole, for a
// generated run with a baseline (changes, every cell state) and for runs
// without scenarios or targets.
func TestEncodeDocIsMarshal(t *testing.T) {
	gen := func(seed string) *rundir.Dir {
		dir := filepath.Join(t.TempDir(), "run-"+seed)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := gencatalog.WriteRunDir(dir, gencatalog.RunDirOptions{Scenarios: 1200, Seed: seed}); err != nil {
			t.Fatal(err)
		}
		d, err := rundir.Read(dir)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	docs := map[string]*Doc{
		"generated, with a baseline": Document(Compare(gen("a")).WithBaseline(gen("b"))),
		"no scenarios":               Document(Compare(&rundir.Dir{Run: rundir.Run{ID: "r", Targets: []string{"t"}}, Targets: []rundir.Target{{Name: "t"}}})),
		"nothing at all":             Document(Compare(&rundir.Dir{})),
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			for _, indent := range []bool{false, true} {
				got, err := encodeDoc(doc, indent, nil)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := json.Marshal(doc)
				if indent {
					want, _ = json.MarshalIndent(doc, "", "  ")
				}
				if !bytes.Equal(got, want) {
					i := 0
					for i < min(len(got), len(want)) && got[i] == want[i] {
						i++
					}
					t.Errorf("indent %v: differs at byte %d of %d/%d: %q vs %q", indent, i, len(got), len(want),
						got[max(0, i-40):min(len(got), i+40)], want[max(0, i-40):min(len(want), i+40)])
				}
			}
		})
	}
}
