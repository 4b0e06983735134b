package orchestrator

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"lab/rundir"
	"lab/scenario"
	"lab/target"
	"lab/wire"
)

// FuzzAgentProtocol feeds arbitrary bytes to the orchestrator's reader of
// the agent's standard output: it must record exactly the result lines that
// parse, keep the results file readable, and never panic.
func FuzzAgentProtocol(f *testing.F) {
	f.Add([]byte(`{"env":{"os":"linux","family":"linux","kernel_release":"6.1.0","arch":"amd64","uid":0,"addrs":{"addr1":"127.0.0.2"},"agent_version":"x"}}
{"progress":{"id":"a"}}
{"result":{"id":"bsd-table/row1/x","outcome":"EADDRINUSE","steps":[{"text":"bind A any:P","errno":"EADDRINUSE"}]}}
{"done":{}}
`))
	f.Add([]byte("not json\n{\"result\":null}\n{\"result\":{}}\n\n{}\r\n"))
	f.Add([]byte(`{"result":{"id":"x","outcome":"ok","steps":null,"ports":{"P":-1}}}`))
	f.Add([]byte(`{"done":{"results":3}}{"done":{}}`))
	f.Add([]byte("{\"env\":{\"addrs\":null}}\n{\"result\":{\"id\":\"bsd-table/row1/x\",\"outcome\":\"ok\"}}\x00\n"))
	f.Add([]byte(strings.Repeat("[", 1<<16) + "\n"))
	scs, err := scenario.ParseFile("../scenarios.yaml")
	if err != nil {
		f.Fatal(err)
	}
	claims := map[string]scenario.Scenario{}
	for _, s := range scs {
		claims[s.ID] = s
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		dir := t.TempDir()
		res := rundir.Target{Name: "fuzz", Status: rundir.StatusRunning, Phases: []rundir.Phase{}, Results: []rundir.Outcome{}}
		j, err := rundir.CreateJournal(dir, res)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		tr := &targetRun{
			t:       target.Spec{Name: "fuzz"},
			dir:     dir,
			journal: j,
			log:     hclog.NewNullLogger(),
			res:     res,
			claims:  claims,
		}
		done, err := tr.readAgent(bytes.NewReader(out))
		if err != nil && !errors.Is(err, errAgentOutput) {
			t.Fatalf("saving: %v", err)
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
		// Count what a strict reader of the same lines sees.
		want, wantDone := 0, false
		for _, line := range strings.Split(string(out), "\n") {
			var l wire.Line
			if json.Unmarshal([]byte(strings.TrimSuffix(line, "\r")), &l) != nil {
				continue
			}
			switch {
			case l.Env != nil, l.Progress != nil:
			case l.Result != nil:
				want++
			case l.Done != nil:
				wantDone = true
			}
		}
		if err == nil && (len(tr.res.Results) != want || done != wantDone) {
			t.Errorf("recorded %d results (done %v), want %d (done %v)", len(tr.res.Results), done, want, wantDone)
		}
		// What was journalled reads back as recorded, before and after
		// the target's file is written.
		back, err := rundir.ReadJournal(j.Path())
		if err != nil {
			t.Fatalf("journal unreadable: %v", err)
		}
		if len(back.Results) != len(tr.res.Results) || (tr.res.Env != nil) != (back.Env != nil) {
			t.Errorf("journal holds %d results (env %v), reader %d (env %v)", len(back.Results), back.Env != nil, len(tr.res.Results), tr.res.Env != nil)
		}
		if err := j.Finish(tr.res); err != nil {
			t.Fatalf("finishing: %v", err)
		}
		var final rundir.Target
		b, err := os.ReadFile(filepath.Join(dir, "fuzz.json"))
		if err == nil {
			err = json.Unmarshal(b, &final)
		}
		if err != nil || len(final.Results) != len(tr.res.Results) {
			t.Errorf("fuzz.json: %d results, %v; want %d", len(final.Results), err, len(tr.res.Results))
		}
	})
}
