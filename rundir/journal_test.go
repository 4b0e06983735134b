package rundir_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"lab/rundir"
	"lab/wire"
)

func outcome(i int) rundir.Outcome {
	return rundir.Outcome{
		Result: wire.Result{ID: fmt.Sprintf("gen/%05d", i), Outcome: wire.OK, Micros: int64(i),
			Steps: []wire.StepResult{{Text: "socket A", Result: wire.OK}, {Text: "bind A any:P", Call: "bind(0.0.0.0:4000)", Result: wire.OK}}},
		Claims: map[string]string{"answer": wire.OK}, ClaimKeys: map[string]string{"answer": "linux"},
	}
}

func header(name string, total int) rundir.Target {
	return rundir.Target{Name: name, Provider: "local", Status: rundir.StatusRunning, Total: total}
}

var env = &wire.Env{OS: "linux", Family: "linux", KernelRelease: "6.1.0", Arch: "amd64", Addrs: map[string]string{"any": "0.0.0.0"}, AgentVersion: "t"}

// TestJournalFinish runs a journal through its whole life: what Finish
// writes as <target>.json is every result appended, with the final status,
// and the journal is gone.
func TestJournalFinish(t *testing.T) {
	dir := t.TempDir()
	j, err := rundir.CreateJournal(dir, header("local", 3))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.SetEnv(env); err != nil {
		t.Fatal(err)
	}
	if err := j.Phase(rundir.Phase{Name: "build", Millis: 7}); err != nil {
		t.Fatal(err)
	}
	var want []rundir.Outcome
	for i := range 3 {
		o := outcome(i)
		want = append(want, o)
		if err := j.Append(o); err != nil {
			t.Fatal(err)
		}
	}
	assertOnly(t, dir, "local.jsonl")
	final := header("local", 3)
	final.Status = rundir.StatusComplete
	final.Env = env
	final.Phases = []rundir.Phase{{Name: "build", Millis: 7}, {Name: "run", Millis: 9}, {Name: "teardown", Millis: 1}}
	final.Results = want
	if err := j.Finish(final); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, dir, "local.json")
	var got rundir.Target
	b, err := os.ReadFile(filepath.Join(dir, "local.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, final) {
		t.Errorf("local.json:\n got %+v\nwant %+v", got, final)
	}
	if err := j.Append(outcome(9)); err == nil {
		t.Error("Append after Finish succeeded")
	}
	if err := j.Close(); err != nil {
		t.Errorf("Close after Finish: %v", err)
	}
}

// TestJournalFinishChecksResults: a final target whose results are not the
// journal's is a wiring bug, reported rather than written.
func TestJournalFinishChecksResults(t *testing.T) {
	dir := t.TempDir()
	j, err := rundir.CreateJournal(dir, header("t", 2))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Append(outcome(0)); err != nil {
		t.Fatal(err)
	}
	final := header("t", 2)
	final.Status = rundir.StatusComplete
	final.Results = []rundir.Outcome{outcome(0), outcome(1)}
	if err := j.Finish(final); err == nil || !strings.Contains(err.Error(), "2 results, the journal 1") {
		t.Errorf("Finish = %v; want it to refuse 2 results against the journal's 1", err)
	}
	assertOnly(t, dir, "t.jsonl")
}

func TestCreateJournalErrors(t *testing.T) {
	dir := t.TempDir()
	j, err := rundir.CreateJournal(dir, header("t", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	tests := []struct {
		name   string
		target rundir.Target
		policy rundir.SyncPolicy
		want   string
	}{
		{"a target journalled twice", header("t", 1), rundir.DefaultSync(), "file exists"},
		{"a name that is a path", header("../t", 1), rundir.DefaultSync(), "not a file name"},
		{"no name", header("", 1), rundir.DefaultSync(), "not a file name"},
		{"no lines allowed unsynced", header("u", 1), rundir.SyncPolicy{Lines: 0, Delay: time.Second}, "sync bound"},
		{"no delay", header("u", 1), rundir.SyncPolicy{Lines: 1}, "sync bound"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j, err := rundir.CreateJournalSync(dir, tc.target, tc.policy)
			if err == nil {
				j.Close()
				t.Fatal("CreateJournal succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want %q", err, tc.want)
			}
		})
	}
	assertOnly(t, dir, "t.jsonl")
}

// TestJournalSyncBound checks both halves of the bound in-process, where
// Synced can watch them: never more than Lines lines unsynced when Append
// returns, and the last lines synced by the timer with no Append after
// them.
func TestJournalSyncBound(t *testing.T) {
	tests := []struct {
		name   string
		policy rundir.SyncPolicy
	}{
		{"lines bound alone (the delay never comes)", rundir.SyncPolicy{Lines: 4, Delay: time.Hour}},
		{"one line", rundir.SyncPolicy{Lines: 1, Delay: time.Hour}},
		{"the default", rundir.DefaultSync()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j, err := rundir.CreateJournalSync(t.TempDir(), header("t", 500), tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			worst := 0
			for i := range 500 {
				if err := j.Append(outcome(i)); err != nil {
					t.Fatal(err)
				}
				w, s := j.Synced()
				worst = max(worst, w-s)
			}
			if worst > tc.policy.Lines {
				t.Errorf("%d lines unsynced after an Append; the bound is %d", worst, tc.policy.Lines)
			}
			t.Logf("at most %d of %d lines unsynced after an Append", worst, tc.policy.Lines)
		})
	}
	t.Run("delay bound: lines synced with nothing after them", func(t *testing.T) {
		p := rundir.SyncPolicy{Lines: 1000, Delay: 20 * time.Millisecond}
		j, err := rundir.CreateJournalSync(t.TempDir(), header("t", 3), p)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		for i := range 3 {
			if err := j.Append(outcome(i)); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		for {
			w, s := j.Synced()
			if w == s {
				t.Logf("synced %v after the last Append (delay %v)", time.Since(start).Round(time.Millisecond), p.Delay)
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%d of %d lines still unsynced 10 s after the last Append; the delay is %v", w-s, w, p.Delay)
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// journalBytes writes a journal through the API (env, 3 results, and a
// final line when final is set) and returns the file's bytes.
func journalBytes(t *testing.T, final bool) []byte {
	t.Helper()
	dir := t.TempDir()
	j, err := rundir.CreateJournal(dir, header("t", 3))
	if err != nil {
		t.Fatal(err)
	}
	path := j.Path()
	j.SetEnv(env)
	for i := range 3 {
		if err := j.Append(outcome(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if final {
		b = append(b, `{"final":{"target":"t","provider":"local","status":"complete","phases":[{"name":"run","ms":3}],"total":3,"results":null}}`+"\n"...)
	}
	return b
}

// TestReadJournalTornLastLine cuts a journal at every byte of its last line:
// the lines before it always read whole, and the cut one is ignored.
func TestReadJournalTornLastLine(t *testing.T) {
	for _, final := range []bool{false, true} {
		b := journalBytes(t, final)
		last := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
		path := filepath.Join(t.TempDir(), "t.jsonl")
		for cut := last; cut < len(b); cut++ {
			writeFile(t, path, string(b[:cut]))
			tg, err := rundir.ReadJournal(path)
			if err != nil {
				t.Fatalf("final %v, cut at %d of %d: %v", final, cut, len(b), err)
			}
			wantResults := 3
			if !final {
				wantResults = 2 // the torn line is the third result
			}
			if len(tg.Results) != wantResults || tg.Status != rundir.StatusRunning {
				t.Fatalf("final %v, cut at %d: %d results, status %s; want %d, running", final, cut, len(tg.Results), tg.Status, wantResults)
			}
		}
		writeFile(t, path, string(b))
		tg, err := rundir.ReadJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(tg.Results) != 3 || tg.Env == nil || tg.Env.KernelRelease != "6.1.0" {
			t.Errorf("whole journal: %d results, env %+v", len(tg.Results), tg.Env)
		}
		if final && (tg.Status != rundir.StatusComplete || len(tg.Phases) != 1 || tg.Error != "") {
			t.Errorf("with a final line: status %s, phases %v, error %q", tg.Status, tg.Phases, tg.Error)
		}
		if !final && !strings.Contains(tg.Error, "lab stopped before this target finished") {
			t.Errorf("without a final line, error = %q", tg.Error)
		}
	}
}

// TestReadJournalErrors: only the torn last line is forgiven; any other line
// that does not read is an error naming the file and the line.
func TestReadJournalErrors(t *testing.T) {
	head := `{"journal":"lab-journal/1","target":{"target":"t","provider":"local","status":"running","phases":[],"total":2,"results":null}}` + "\n"
	res := `{"result":{"id":"a","outcome":"ok","steps":[],"micros":1}}` + "\n"
	fin := `{"final":{"target":"t","status":"complete","phases":[],"total":2}}` + "\n"
	tests := []struct {
		name string
		data string
		want string // in the error; "" when it must read
		n    int    // results when it reads
	}{
		{"header only", head, "", 0},
		{"empty file: lab died creating it", "", "", 0},
		{"torn header", head[:20], "", 0},
		{"a broken middle line", head + `{"result":{"id":` + "\n" + res, "t.jsonl:2:", 0},
		{"a blank middle line", head + "\n" + res, "t.jsonl:2:", 0},
		{"not a journal", `{"target":"t","status":"complete"}` + "\n", "t.jsonl:1: not a journal", 0},
		{"another journal format", strings.Replace(head, "lab-journal/1", "lab-journal/9", 1), "t.jsonl:1: not a journal", 0},
		{"two headers", head + head, "t.jsonl:2: a second journal header", 0},
		{"two kinds on a line", head + `{"result":{"id":"a"},"env":{"os":"linux"}}` + "\n", "t.jsonl:2: a line must hold exactly one", 0},
		{"an empty object", head + "{}\n", "t.jsonl:2: a line must hold exactly one", 0},
		{"a result after the final line", head + res + fin + res, "t.jsonl:4: a line after the final status", 0},
		{"a result of the wrong type", head + `{"result":{"id":7}}` + "\n", "t.jsonl:2:", 0},
		{"results and a final line", head + res + res + fin, "", 2},
		{"a final line cut off", head + res + fin[:len(fin)-1], "", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.jsonl")
			writeFile(t, path, tc.data)
			tg, err := rundir.ReadJournal(path)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(tg.Results) != tc.n || tg.Name != "t" {
					t.Errorf("read %q with %d results; want t with %d", tg.Name, len(tg.Results), tc.n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want %q", err, tc.want)
			}
		})
	}
}

// TestReadBothForms: a run directory's targets may be journals, .json files,
// or both (lab died between writing the .json and removing the journal),
// listed in run.json or not.
func TestReadBothForms(t *testing.T) {
	dir := t.TempDir()
	run := rundir.Run{ID: "r", Status: rundir.StatusRunning, Targets: []string{"json", "journal", "both", "live"}}
	if err := rundir.WriteJSON(filepath.Join(dir, "run.json"), run); err != nil {
		t.Fatal(err)
	}
	done := func(name string, n int) rundir.Target {
		tg := header(name, n)
		tg.Status = rundir.StatusComplete
		tg.Phases = []rundir.Phase{}
		for i := range n {
			tg.Results = append(tg.Results, outcome(i))
		}
		return tg
	}
	if err := rundir.WriteJSON(filepath.Join(dir, "json.json"), done("json", 2)); err != nil {
		t.Fatal(err)
	}
	journal := journalBytes(t, false) // target "t": 3 results, no final line
	for _, name := range []string{"journal", "both", "unlisted"} {
		writeFile(t, filepath.Join(dir, name+".jsonl"), strings.Replace(string(journal), `"target":"t"`, `"target":"`+name+`"`, 1))
	}
	if err := rundir.WriteJSON(filepath.Join(dir, "both.json"), done("both", 1)); err != nil {
		t.Fatal(err)
	}
	live, err := rundir.CreateJournal(dir, header("live", 5))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	live.Append(outcome(0))

	d, err := rundir.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range d.Targets {
		got = append(got, fmt.Sprintf("%s:%s:%d", tg.Name, tg.Status, len(tg.Results)))
	}
	want := "json:complete:2,journal:running:3,both:complete:1,live:running:1,unlisted:running:3"
	if strings.Join(got, ",") != want {
		t.Errorf("targets = %v\nwant      %s", got, want)
	}
	errs := map[string]string{}
	for _, tg := range d.Targets {
		errs[tg.Name] = tg.Error
	}
	if !strings.Contains(errs["journal"], "lab stopped") || !strings.Contains(errs["live"], "still running") {
		t.Errorf("a dead journal says %q, a live one %q", errs["journal"], errs["live"])
	}
}

// TestMergeCarriesJournals: a shard whose lab died leaves a journal; the
// merged run reads its results as the shard did.
func TestMergeCarriesJournals(t *testing.T) {
	base := t.TempDir()
	s1 := shard{id: "s1", status: rundir.StatusComplete, finished: true, scenarios: scensA, targets: []string{"a"}}.write(t, base)
	s2 := shard{id: "s2", status: rundir.StatusRunning, scenarios: scensA, targets: []string{"b"}}.write(t, base)
	if err := os.Remove(filepath.Join(s2, "b.json")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s2, "b.jsonl"), strings.Replace(string(journalBytes(t, false)), `"target":"t"`, `"target":"b"`, 1))
	d, err := rundir.Merge(filepath.Join(base, "out"), []string{s1, s2}, "lab merge")
	if err != nil {
		t.Fatal(err)
	}
	assertOnly(t, filepath.Join(base, "out"), "a.json", "b.jsonl", "run.json")
	if len(d.Targets) != 2 || d.Targets[1].Name != "b" || len(d.Targets[1].Results) != 3 || d.Targets[1].Status != rundir.StatusRunning {
		t.Errorf("merged targets: %+v", d.Targets)
	}
}
