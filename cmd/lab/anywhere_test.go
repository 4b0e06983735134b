package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"lab"
	"lab/rundir"
	"lab/scenario"
)

// TestVersion: lab version names lab's version and Go, and the hashes of
// the agent sources and the catalog it carries.
func TestVersion(t *testing.T) {
	code, stdout, stderr := runLab(t, labBinary(t), nil, "version")
	scs, err := scenario.Parse("built-in", lab.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lab ", runtime.Version(), "agent sources " + lab.AgentSourceHash(), "built-in catalog " + lab.Hash(lab.Catalog), "(" + strconv.Itoa(len(scs)) + " scenarios)"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("lab version: exit %d, %q lacks %q (%s)", code, stdout, want, stderr)
		}
	}
}

// TestAnywhere builds lab, copies it into an empty directory outside the
// source tree and runs it there, on this machine and a microVM: the
// catalog and the targets are the ones lab carries, the agent is built from
// the sources it carries, and run.json says so.
func TestAnywhere(t *testing.T) {
	targets := "local,linux-6.1"
	if testing.Short() {
		targets = "local" // the microVM half boots QEMU
	}
	bin := filepath.Join(t.TempDir(), "lab")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir() // empty: no scenarios.yaml, no lab.yaml, no go.mod above it
	out := filepath.Join(t.TempDir(), "results")
	cmd := exec.Command(bin, "run", "--targets", targets, "--out", out, "--cache", cacheDirForTest())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LAB_SRC=") // nothing may point lab at its source tree
	output, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("lab run in an empty directory: %v\n%s", err, output)
	}
	if !strings.Contains(string(output), "scenarios: built-in (sha256 "+lab.Hash(lab.Catalog)+")") ||
		!strings.Contains(string(output), "targets:   built-in (sha256 "+lab.Hash(lab.Targets)+")") {
		t.Errorf("lab run does not say it used the built-in catalog and targets:\n%s", output)
	}
	runs, _ := filepath.Glob(filepath.Join(out, "*", "run.json"))
	if len(runs) != 1 {
		t.Fatalf("run directories: %v", runs)
	}
	d, err := rundir.Read(filepath.Dir(runs[0]))
	if err != nil {
		t.Fatal(err)
	}
	r := d.Run
	if r.Catalog == nil || r.Catalog.Path != "built-in" || r.Catalog.SHA256 != lab.Hash(lab.Catalog) ||
		r.TargetsFile == nil || r.TargetsFile.Path != "built-in" ||
		r.Lab == nil || r.Lab.AgentSource != lab.AgentSourceHash() || r.Lab.Go == "" {
		t.Errorf("run.json says catalog %+v, targets %+v, lab %+v", r.Catalog, r.TargetsFile, r.Lab)
	}
	all, _ := scenario.Parse("built-in", lab.Catalog)
	scs := scenario.Filter(all, "") // a run without --only leaves the slow scenarios out
	for _, tr := range d.Targets {
		if tr.Status != rundir.StatusComplete || len(tr.Results) != len(scs) {
			t.Errorf("%s: %s with %d of %d results: %s", tr.Name, tr.Status, len(tr.Results), len(scs), tr.Error)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("lab wrote into the directory it ran from: %v", left)
	}
}

// cacheDirForTest is the cache lab's tests share (images built once).
func cacheDirForTest() string {
	if d := os.Getenv("LAB_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "lab-cache")
}
