package rump_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"lab/emit"
	"lab/rump"
	"lab/scenario"
	"lab/wire"
)

// emitSamples are catalog scenarios lab repro --emit c may be asked for on
// netbsd-rump: every verb the emitter has, on a rump kernel's outcomes
// (rows 6 and 7 are ok there, the TIME_WAIT entry does not block).
var emitSamples = []string{
	"bsd-table/row1/off",
	"bsd-table/row6/on",
	"bsd-table/row7/on",
	"reuseport/all-set/tcp",
	"linux/udp-reuseaddr/both",
	"ipv6/v6only1-any6-then-v4-any/tcp",
	"ipv6/default-any6-then-v4-any/udp",
	"timewait/no-flag",
	"timewait/reuseaddr-both",
	"connect/duplicate-5tuple/tcp",
	"windows/exclusiveaddruse/plain-same",
}

// TestEmittedRumpCMatchesAgent: for each sample, the rump agent's result,
// the C program emit.C(..., emit.Rump) writes from it, compiled (-Wall
// -Werror) against the same libraries, and its trace compared with the
// agent's by emit.Compare.
func TestEmittedRumpCMatchesAgent(t *testing.T) {
	l := buildLibs(t)
	bin := buildAgent(t, rump.Tags)
	all, err := scenario.ParseFile("../scenarios.yaml")
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]wire.Scenario{}
	for _, s := range all {
		byID[s.ID] = s.Scenario
	}
	var scs []wire.Scenario
	for _, id := range emitSamples {
		scs = append(scs, byID[id])
	}
	req, _ := json.Marshal(wire.Request{Scenarios: scs})
	r := runAgent(t, bin, req)
	if r.err != nil {
		t.Fatalf("the agent: %v\n%s", r.err, r.stderr)
	}
	dir := t.TempDir()
	for _, sc := range scs {
		t.Run(sc.ID, func(t *testing.T) {
			res := r.results[sc.ID]
			if res == nil {
				t.Fatal("the agent gave no result")
			}
			src, err := emit.C(sc, res, "netbsd-rump", emit.Rump)
			if err != nil {
				t.Fatal(err)
			}
			name := strings.ReplaceAll(sc.ID, "/", "_")
			cfile, cbin := filepath.Join(dir, name+".c"), filepath.Join(dir, name)
			if err := os.WriteFile(cfile, src, 0o644); err != nil {
				t.Fatal(err)
			}
			// A fresh kernel per program: the agent's ports are free in it.
			args := append([]string{"-Wall", "-Werror", "-O2", "-o", cbin, cfile}, l.CCFlags()...)
			args = append(args, emit.RumpLinkFlags...)
			if out, err := exec.Command("cc", args...).CombinedOutput(); err != nil {
				t.Fatalf("cc: %v\n%s", err, out)
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(cbin)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("the reproducer: %v\n%s", err, stderr.String())
			}
			tr, err := emit.Parse(&stdout)
			if err != nil {
				t.Fatal(err)
			}
			if err := emit.Compare(res, tr); err != nil {
				t.Errorf("the reproducer's trace differs from the agent's:\n%v", err)
			}
		})
	}
}
