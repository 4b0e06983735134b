package rundir_test

import (
	"os"
	"path/filepath"
	"testing"

	"lab/rundir"
)

// FuzzReadRunDir writes arbitrary bytes as a run's run.json and as a
// target's results file: Read must return a run or an error naming the file,
// never panic.
func FuzzReadRunDir(f *testing.F) {
	run := `{"id":"r","started":"2026-11-25T09:00:00Z","status":"running","targets":["t","../x",""],"scenarios":[{"id":"a","proto":"tcp","steps":["socket A"]}]}`
	target := `{"name":"t","provider":"qemu","status":"failed","total":2,"phases":[{"name":"run","ms":3,"error":"x"}],"results":[{"id":"a","outcome":"ok","steps":[]}]}`
	f.Add([]byte(run), []byte(target))
	f.Add([]byte(`{"targets":["t"]}`), []byte(`{}`))
	f.Add([]byte(`{"targets":null}`), []byte(`null`))
	f.Add([]byte(`{"targets":["t","t"]}`), []byte(`{"name":"other"}`))
	f.Add([]byte(`[]`), []byte(`{"results":[null,{"id":7}]}`))
	f.Add([]byte(`{"status":"complete","finished":"not a time"}`), []byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, runJSON, targetJSON []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "run.json"), runJSON, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "t.json"), targetJSON, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := rundir.Read(dir)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if d == nil {
			t.Fatal("no run and no error")
		}
		for _, tg := range d.Targets {
			if tg.Status == "" && tg.Name == "" {
				t.Errorf("target with neither name nor status: %+v", tg)
			}
		}
	})
}
