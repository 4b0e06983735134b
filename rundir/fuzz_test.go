package rundir_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"lab/rundir"
)

// FuzzReadRunDir writes arbitrary bytes as a run's run.json, as a target's
// results file t.json and as a target's journal j.jsonl: Read must return a
// run or an error naming the file, never panic.
func FuzzReadRunDir(f *testing.F) {
	run := `{"id":"r","started":"2026-11-25T09:00:00Z","status":"running","targets":["t","j","../x",""],"scenarios":[{"id":"a","proto":"tcp","steps":["socket A"]}]}`
	target := `{"name":"t","provider":"qemu","status":"failed","total":2,"phases":[{"name":"run","ms":3,"error":"x"}],"results":[{"id":"a","outcome":"ok","steps":[]}]}`
	f.Add([]byte(run), []byte(target), []byte(journalSeed))
	f.Add([]byte(`{"targets":["t"]}`), []byte(`{}`), []byte(journalSeed[:70]))
	f.Add([]byte(`{"targets":null}`), []byte(`null`), []byte(`{"journal":"lab-journal/1","target":{}}`+"\n{}\n"))
	f.Add([]byte(`{"targets":["t","t"]}`), []byte(`{"name":"other"}`), []byte("\n"))
	f.Add([]byte(`[]`), []byte(`{"results":[null,{"id":7}]}`), []byte(`null`+"\n"))
	f.Add([]byte(`{"status":"complete","finished":"not a time"}`), []byte("\xff\xfe"), []byte{})
	f.Fuzz(func(t *testing.T, runJSON, targetJSON, journal []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "run.json"), runJSON, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "t.json"), targetJSON, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "j.jsonl"), journal, 0o644); err != nil {
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

// journalSeed is a journal as Journal writes it: header, env, a phase, two
// results and a final line.
const journalSeed = `{"journal":"lab-journal/1","target":{"target":"j","provider":"local","status":"running","phases":[],"total":2,"results":null}}
{"env":{"os":"linux","family":"linux","kernel_release":"6.1.0","arch":"amd64","uid":0,"addrs":{"any":"0.0.0.0"},"agent_version":"t"}}
{"phase":{"name":"build","ms":5}}
{"result":{"id":"a","outcome":"ok","steps":[{"text":"socket A","result":"ok"}],"micros":3},"claims":{"answer":"ok"}}
{"result":{"id":"b","outcome":"EADDRINUSE","steps":[],"micros":4}}
{"final":{"target":"j","provider":"local","status":"complete","phases":[{"name":"run","ms":9}],"total":2}}
`

// FuzzReadJournal reads arbitrary bytes as a journal: never a panic, every
// error names the file, and bytes after the last newline (a torn line)
// change nothing: the journal reads exactly as if they were not there.
func FuzzReadJournal(f *testing.F) {
	f.Add([]byte(journalSeed))
	f.Add([]byte(journalSeed[:len(journalSeed)-30]))
	f.Add([]byte(strings.Replace(journalSeed, "\n", "\n\n", 1)))
	f.Add([]byte(`{"journal":"lab-journal/1","target":{"target":"j"}}` + "\n" + `{"result":{"id":"a"},"final":{}}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		read := func(b []byte) (rundir.Target, error) {
			path := filepath.Join(dir, "j.jsonl")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			tg, err := rundir.ReadJournal(path)
			if err != nil && !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
			return tg, err
		}
		tg, err := read(data)
		whole := data[:bytes.LastIndexByte(data, '\n')+1]
		tgWhole, errWhole := read(whole)
		if (err == nil) != (errWhole == nil) {
			t.Fatalf("with the torn tail: %v; without: %v", err, errWhole)
		}
		if err == nil && !reflect.DeepEqual(tg, tgWhole) {
			t.Fatalf("the torn tail changed the target:\n%+v\n%+v", tg, tgWhole)
		}
		if err == nil && (tg.Results == nil || tg.Phases == nil) {
			t.Errorf("nil results or phases: %+v", tg)
		}
	})
}
