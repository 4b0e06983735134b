package rundir_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"lab/rundir"
)

// shard writes a run directory as lab run --shard would leave it.
type shard struct {
	id        string
	status    rundir.Status
	finished  bool
	scenarios []rundir.Scenario
	targets   []string
	extra     map[string]string // more files: console logs, a stale report
}

var (
	t0     = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	scensA = []rundir.Scenario{{ID: "a/1", Proto: "tcp", Steps: []string{"socket A"}}, {ID: "b/2", Proto: "udp", Steps: []string{"socket A"}}}
)

func (s shard) write(t *testing.T, base string) string {
	t.Helper()
	dir := filepath.Join(base, s.id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	started := t0.Add(time.Duration(len(s.id)) * time.Minute)
	run := rundir.Run{ID: s.id, Started: started, Command: "lab run --shard", Targets: s.targets, Scenarios: s.scenarios, Status: s.status}
	if s.finished {
		f := started.Add(time.Hour)
		run.Finished = &f
	}
	if err := rundir.WriteJSON(filepath.Join(dir, "run.json"), run); err != nil {
		t.Fatal(err)
	}
	for _, name := range s.targets {
		tgt := rundir.Target{Name: name, Status: rundir.StatusComplete, Results: []rundir.Outcome{}}
		if err := rundir.WriteJSON(filepath.Join(dir, name+".json"), tgt); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range s.extra {
		writeFile(t, filepath.Join(dir, name), data)
	}
	return dir
}

func TestMerge(t *testing.T) {
	other := []rundir.Scenario{scensA[0], {ID: "c/3", Proto: "tcp", Steps: []string{"socket A"}}}
	redefined := []rundir.Scenario{scensA[0], {ID: "b/2", Proto: "tcp", Steps: []string{"socket A"}}}
	tests := []struct {
		name     string
		shards   []shard
		missing  bool // a shard directory that does not exist
		exists   bool // the output directory exists already
		targets  []string
		status   rundir.Status
		finished bool
		files    []string // beside run.json, in the merged directory
		err      string   // in the error, when Merge must fail
	}{
		{
			name: "two shards",
			shards: []shard{
				{id: "s1", status: rundir.StatusComplete, finished: true, scenarios: scensA, targets: []string{"local", "linux-5.10"},
					extra: map[string]string{"linux-5.10.console.log": "boot", "report.md": "# stale", "junit.xml": "<x/>", "report.html": "x", "report.json": "{}"}},
				{id: "s22", status: rundir.StatusComplete, finished: true, scenarios: scensA, targets: []string{"linux-6.1", "linux-6.12"},
					extra: map[string]string{"linux-6.1.console.log": "boot"}},
			},
			targets: []string{"local", "linux-5.10", "linux-6.1", "linux-6.12"}, status: rundir.StatusComplete, finished: true,
			files: []string{"linux-5.10.console.log", "linux-5.10.json", "linux-6.1.console.log", "linux-6.1.json", "linux-6.12.json", "local.json"},
		},
		{
			name:    "one shard",
			shards:  []shard{{id: "s1", status: rundir.StatusComplete, finished: true, scenarios: scensA, targets: []string{"local"}}},
			targets: []string{"local"}, status: rundir.StatusComplete, finished: true, files: []string{"local.json"},
		},
		{
			name: "a failed shard fails the run",
			shards: []shard{
				{id: "s1", status: rundir.StatusFailed, finished: true, scenarios: scensA, targets: []string{"a"}},
				{id: "s2", status: rundir.StatusComplete, finished: true, scenarios: scensA, targets: []string{"b"}},
			},
			targets: []string{"a", "b"}, status: rundir.StatusFailed, finished: true, files: []string{"a.json", "b.json"},
		},
		{
			name: "an interruption outweighs a failure",
			shards: []shard{
				{id: "s1", status: rundir.StatusFailed, finished: true, scenarios: scensA, targets: []string{"a"}},
				{id: "s2", status: rundir.StatusInterrupted, finished: true, scenarios: scensA, targets: []string{"b"}},
				{id: "s3", status: rundir.StatusComplete, finished: true, scenarios: scensA, targets: []string{"c"}},
			},
			targets: []string{"a", "b", "c"}, status: rundir.StatusInterrupted, finished: true, files: []string{"a.json", "b.json", "c.json"},
		},
		{
			name: "a shard that never finished",
			shards: []shard{
				{id: "s1", status: rundir.StatusRunning, scenarios: scensA, targets: []string{"a"}},
				{id: "s2", status: rundir.StatusComplete, finished: true, scenarios: scensA, targets: []string{"b"}},
			},
			targets: []string{"a", "b"}, status: rundir.StatusFailed, finished: false, files: []string{"a.json", "b.json"},
		},
		{
			name: "scenarios differ",
			shards: []shard{
				{id: "s1", status: rundir.StatusComplete, scenarios: scensA, targets: []string{"a"}},
				{id: "s2", status: rundir.StatusComplete, scenarios: other, targets: []string{"b"}},
			},
			err: "ran different scenarios (only the first has b/2)",
		},
		{
			name: "a scenario defined differently",
			shards: []shard{
				{id: "s1", status: rundir.StatusComplete, scenarios: scensA, targets: []string{"a"}},
				{id: "s2", status: rundir.StatusComplete, scenarios: redefined, targets: []string{"b"}},
			},
			err: "b/2 is defined differently",
		},
		{
			name: "scenarios in another order",
			shards: []shard{
				{id: "s1", status: rundir.StatusComplete, scenarios: scensA, targets: []string{"a"}},
				{id: "s2", status: rundir.StatusComplete, scenarios: []rundir.Scenario{scensA[1], scensA[0]}, targets: []string{"b"}},
			},
			err: "in a different order",
		},
		{
			name: "a target in two shards",
			shards: []shard{
				{id: "s1", status: rundir.StatusComplete, scenarios: scensA, targets: []string{"a", "b"}},
				{id: "s2", status: rundir.StatusComplete, scenarios: scensA, targets: []string{"b"}},
			},
			err: "target b is in both",
		},
		{
			name: "a file in two shards",
			shards: []shard{
				{id: "s1", status: rundir.StatusComplete, scenarios: scensA, targets: []string{"a"}, extra: map[string]string{"notes.txt": "1"}},
				{id: "s2", status: rundir.StatusComplete, scenarios: scensA, targets: []string{"b"}, extra: map[string]string{"notes.txt": "2"}},
			},
			err: "have notes.txt",
		},
		{
			name:    "a missing shard directory",
			shards:  []shard{{id: "s1", status: rundir.StatusComplete, scenarios: scensA, targets: []string{"a"}}},
			missing: true,
			err:     "is not a run directory",
		},
		{
			name:   "the output exists",
			shards: []shard{{id: "s1", status: rundir.StatusComplete, scenarios: scensA, targets: []string{"a"}}},
			exists: true,
			err:    "must not exist yet",
		},
		{name: "no shards", err: "no shard directories given"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			var dirs []string
			for _, s := range tc.shards {
				dirs = append(dirs, s.write(t, filepath.Join(base, "shards")))
			}
			if tc.missing {
				dirs = append(dirs, filepath.Join(base, "shards", "nonexistent"))
			}
			out := filepath.Join(base, "merged", "20260102T030000Z")
			if tc.exists {
				if err := os.MkdirAll(out, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			d, err := rundir.Merge(out, dirs, "lab merge test")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Merge error = %v, want one containing %q", err, tc.err)
				}
				if _, serr := os.Stat(filepath.Join(out, "run.json")); serr == nil {
					t.Errorf("a failed merge left %s/run.json", out)
				}
				if !tc.exists {
					if _, serr := os.Stat(out); serr == nil {
						t.Errorf("a failed merge left %s behind", out)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Run.ID != "20260102T030000Z" || d.Run.Command != "lab merge test" {
				t.Errorf("ID, Command = %q, %q", d.Run.ID, d.Run.Command)
			}
			if !reflect.DeepEqual(d.Run.Targets, tc.targets) || d.Run.Status != tc.status {
				t.Errorf("targets %v status %q; want %v %q", d.Run.Targets, d.Run.Status, tc.targets, tc.status)
			}
			if !reflect.DeepEqual(d.Run.Scenarios, scensA) {
				t.Errorf("scenarios = %+v", d.Run.Scenarios)
			}
			if !d.Run.Started.Equal(t0.Add(2 * time.Minute)) {
				t.Errorf("started %v, want the earliest shard's start", d.Run.Started)
			}
			if (d.Run.Finished != nil) != tc.finished {
				t.Errorf("finished = %v, want set: %v", d.Run.Finished, tc.finished)
			}
			var got []string
			for _, tg := range d.Targets {
				if tg.Status == "missing" {
					t.Errorf("target %s has no results after the merge", tg.Name)
				}
				got = append(got, tg.Name)
			}
			if !reflect.DeepEqual(got, tc.targets) {
				t.Errorf("read back targets %v, want %v", got, tc.targets)
			}
			assertOnly(t, out, append(tc.files, "run.json")...) // sorted
		})
	}
}
