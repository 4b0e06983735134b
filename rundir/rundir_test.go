package rundir_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lab/rundir"
	"lab/wire"
)

func TestNewRunDir(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		name  string
		calls int
		want  []string
	}{
		{"one run", 1, []string{"20260304T040607Z"}},
		{"two runs in the same second", 2, []string{"20260304T040607Z", "20260304T040607Z-2"}},
		{"three runs in the same second", 3, []string{"20260304T040607Z", "20260304T040607Z-2", "20260304T040607Z-3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := filepath.Join(t.TempDir(), "results") // created by NewRunDir
			seen := map[string]bool{}
			for i := 0; i < tc.calls; i++ {
				id, dir, err := rundir.NewRunDir(base, now)
				if err != nil {
					t.Fatal(err)
				}
				if id != tc.want[i] {
					t.Errorf("call %d: id = %q, want %q", i+1, id, tc.want[i])
				}
				if dir != filepath.Join(base, id) {
					t.Errorf("call %d: dir = %q, want %q", i+1, dir, filepath.Join(base, id))
				}
				if seen[dir] {
					t.Errorf("call %d: dir %s handed out twice", i+1, dir)
				}
				seen[dir] = true
				if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
					t.Errorf("call %d: %s is not a directory: %v", i+1, dir, err)
				}
			}
		})
	}
}

func TestNewRunDirConcurrent(t *testing.T) {
	base := t.TempDir()
	now := time.Now()
	const n = 20
	dirs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, dirs[i], errs[i] = rundir.NewRunDir(base, now) })
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("NewRunDir: %v", errs[i])
		}
		if seen[dirs[i]] {
			t.Errorf("two concurrent runs got %s", dirs[i])
		}
		seen[dirs[i]] = true
	}
}

func TestWriteJSON(t *testing.T) {
	tests := []struct {
		name     string
		existing os.FileMode // 0: no file before
	}{
		{"new file", 0},
		{"replaces a private file", 0o600},
		{"replaces a read-only file", 0o444},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "t.json")
			if tc.existing != 0 {
				if err := os.WriteFile(path, []byte("old"), tc.existing); err != nil {
					t.Fatal(err)
				}
			}
			v := rundir.Target{Name: "t", Status: rundir.StatusComplete, Total: 1}
			if err := rundir.WriteJSON(path, v); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o644 {
				t.Errorf("mode = %v, want 0644", fi.Mode().Perm())
			}
			var back rundir.Target
			b, _ := os.ReadFile(path)
			if err := json.Unmarshal(b, &back); err != nil || back.Name != "t" || back.Total != 1 {
				t.Errorf("read back %+v, %v", back, err)
			}
			if !strings.HasSuffix(string(b), "}\n") {
				t.Errorf("file does not end in a newline: %q", b)
			}
			assertOnly(t, dir, "t.json")
		})
	}
}

func TestWriteJSONUnencodable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.json")
	err := rundir.WriteJSON(path, map[string]any{"f": func() {}})
	if err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("err = %v; want an error naming bad.json", err)
	}
	assertOnly(t, dir)
}

// assertOnly checks dir holds exactly the named files: no temporary file
// is left behind.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

// TestWriteJSONAtomic rewrites a file 200 times, each version a different
// size, while readers read it: every read must be one complete version.
func TestWriteJSONAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "target.json")
	version := func(i int) rundir.Target {
		tg := rundir.Target{Name: "t", Status: rundir.StatusRunning, Total: i}
		for j := range i % 37 {
			tg.Results = append(tg.Results, rundir.Outcome{Result: wire.Result{ID: strings.Repeat("x", j*50), Outcome: wire.OK}})
		}
		return tg
	}
	if err := rundir.WriteJSON(path, version(0)); err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 4 {
		wg.Go(func() {
			for !done.Load() {
				b, err := os.ReadFile(path)
				if err != nil {
					errs <- err
					return
				}
				var tg rundir.Target
				if err := json.Unmarshal(b, &tg); err != nil {
					errs <- err
					return
				}
				if len(tg.Results) != tg.Total%37 {
					errs <- errors.New("a version mixing two writes")
					return
				}
				reads.Add(1)
			}
		})
	}
	for i := 1; i <= 200; i++ {
		if err := rundir.WriteJSON(path, version(i)); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("reader: %v", err)
	}
	if reads.Load() == 0 {
		t.Error("readers never read the file")
	}
	assertOnly(t, dir, "target.json")
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	run := rundir.Run{ID: "r", Status: rundir.StatusComplete, Targets: []string{"b", "gone", "a"}}
	if err := rundir.WriteJSON(filepath.Join(dir, "run.json"), run); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "extra"} {
		if err := rundir.WriteJSON(filepath.Join(dir, name+".json"), rundir.Target{Name: name, Status: rundir.StatusComplete}); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, ".b.json.123"), "{") // a temporary file of an interrupted write
	writeFile(t, filepath.Join(dir, "report.md"), "# report")

	d, err := rundir.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Path != dir || d.Run.ID != "r" {
		t.Errorf("Path, Run.ID = %q, %q", d.Path, d.Run.ID)
	}
	var got []string
	for _, tg := range d.Targets {
		got = append(got, tg.Name+":"+string(tg.Status))
	}
	// run.json's order first, then files it does not list.
	want := "b:complete,gone:missing,a:complete,extra:complete"
	if strings.Join(got, ",") != want {
		t.Errorf("targets = %v, want %s", got, want)
	}
	if gone := d.Targets[1]; gone.Error == "" {
		t.Errorf("missing target has no explanation: %+v", gone)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // in the error
	}{
		{"no run.json", map[string]string{"a.json": "{}"}, "run.json"},
		{"malformed run.json", map[string]string{"run.json": `{"id": "r",`}, "run.json"},
		{"malformed listed target", map[string]string{"run.json": `{"id": "r", "targets": ["a"]}`, "a.json": `{"target": "a", "results": [`}, "a.json"},
		{"wrong type in a target", map[string]string{"run.json": `{"id": "r", "targets": ["a"]}`, "a.json": `{"target": 7}`}, "a.json"},
		{"malformed unlisted target", map[string]string{"run.json": `{"id": "r"}`, "stray.json": `not json`}, "stray.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tc.files {
				writeFile(t, filepath.Join(dir, name), data)
			}
			d, err := rundir.Read(dir)
			if err == nil {
				t.Fatalf("Read succeeded: %+v", d)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, tc.want)) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
		})
	}
}
