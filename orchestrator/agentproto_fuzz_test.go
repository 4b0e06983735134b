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
		tr := &targetRun{
			t:      target.Spec{Name: "fuzz"},
			file:   filepath.Join(t.TempDir(), "fuzz.json"),
			log:    hclog.NewNullLogger(),
			res:    rundir.Target{Name: "fuzz", Status: rundir.StatusRunning, Phases: []rundir.Phase{}, Results: []rundir.Outcome{}},
			claims: claims,
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
		if len(tr.res.Results) > 0 || tr.res.Env != nil {
			var back rundir.Target
			b, err := os.ReadFile(tr.file)
			if err == nil {
				err = json.Unmarshal(b, &back)
			}
			if err != nil {
				t.Fatalf("results file unreadable: %v", err)
			}
			if len(back.Results) != len(tr.res.Results) {
				t.Errorf("file holds %d results, reader %d", len(back.Results), len(tr.res.Results))
			}
		}
	})
}
