package testenv

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"lab/wire"
)

// Unexplained checks that doc (a backend's docs/*.md) has a table row for
// every scenario whose outcome in got differs from the one the target of
// reference (a <target>.json of results/reference) measured: a kernel's
// difference from Linux is explained from its source, never left as a
// number. It returns how many differ, and fails t for each row missing.
func Unexplained(t testing.TB, doc, reference string, got map[string]*wire.Result) int {
	t.Helper()
	docs, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := os.ReadFile(reference)
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Results []wire.Result `json:"results"`
	}
	if err := json.Unmarshal(ref, &want); err != nil {
		t.Fatalf("%s: %v", reference, err)
	}
	differ := 0
	for _, w := range want.Results {
		if res := got[w.ID]; res != nil && res.Outcome != w.Outcome {
			differ++
			if !bytes.Contains(docs, []byte("| `"+w.ID+"` |")) {
				t.Errorf("%s: %s here, %s in %s, and %s does not say why", w.ID, res.Outcome, w.Outcome, reference, doc)
			}
		}
	}
	return differ
}
