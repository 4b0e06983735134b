package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"lab/rundir"
	"lab/wire"
)

// runDir writes a run directory: every target gets the outcomes given, in
// the order of the scenarios "a/1", "b/2".
func runDir(t *testing.T, dir string, status rundir.Status, targets map[string][]string, failed ...string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	scs := []rundir.Scenario{{ID: "a/1", Proto: "tcp"}, {ID: "b/2", Proto: "udp"}}
	run := rundir.Run{ID: filepath.Base(dir), Started: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Status: status, Scenarios: scs}
	for _, name := range sortedNames(targets) {
		run.Targets = append(run.Targets, name)
		tgt := rundir.Target{Name: name, Status: rundir.StatusComplete, Env: &wire.Env{OS: "linux", Family: "linux", KernelRelease: "6.1"}}
		for _, f := range failed {
			if f == name {
				tgt.Status, tgt.Error = rundir.StatusFailed, "boot: timeout"
			}
		}
		for i, o := range targets[name] {
			tgt.Results = append(tgt.Results, rundir.Outcome{Result: wire.Result{ID: scs[i].ID, Outcome: o}, Claims: map[string]string{"answer": "ok"}})
		}
		if err := rundir.WriteJSON(filepath.Join(dir, name+".json"), tgt); err != nil {
			t.Fatal(err)
		}
	}
	if err := rundir.WriteJSON(filepath.Join(dir, "run.json"), run); err != nil {
		t.Fatal(err)
	}
	return dir
}

func sortedNames(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

var (
	okOK     = map[string][]string{"x": {"ok", "ok"}, "y": {"ok", "EADDRINUSE"}}
	changedY = map[string][]string{"x": {"ok", "ok"}, "y": {"ok", "ok"}}
)

func TestReportCommand(t *testing.T) {
	base := t.TempDir()
	good := runDir(t, filepath.Join(base, "good"), rundir.StatusComplete, okOK)
	same := runDir(t, filepath.Join(base, "same"), rundir.StatusComplete, okOK)
	changed := runDir(t, filepath.Join(base, "changed"), rundir.StatusComplete, changedY)
	failed := runDir(t, filepath.Join(base, "failed"), rundir.StatusFailed, okOK, "y")
	interrupted := runDir(t, filepath.Join(base, "interrupted"), rundir.StatusInterrupted, okOK)
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"complete, no baseline", []string{good}, exitOK},
		{"disagreements with the answer are not failures", []string{changed}, exitOK},
		{"same as the baseline", []string{"--baseline", same, good}, exitOK},
		{"flags after the run directory", []string{good, "--baseline", same}, exitOK},
		{"changed since the baseline", []string{"--baseline", changed, good}, exitChanged},
		{"a target failed", []string{failed}, exitInfra},
		{"a target failed and a change", []string{"--baseline", changed, failed}, exitInfra},
		{"interrupted", []string{interrupted}, exitInterrupted},
		{"no such run directory", []string{filepath.Join(base, "nope")}, exitUsage},
		{"no such baseline", []string{"--baseline", filepath.Join(base, "nope"), good}, exitUsage},
		{"no run directory", nil, exitUsage},
		{"two run directories", []string{good, same}, exitUsage},
		{"unknown flag", []string{"--nope", good}, exitUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code := run(context.Background(), append([]string{"report"}, tc.args...)); code != tc.code {
				t.Errorf("lab report %v exited %d, want %d", tc.args, code, tc.code)
			}
		})
	}
	for _, f := range []string{"report.md", "report.html", "report.json", "junit.xml"} {
		if fi, err := os.Stat(filepath.Join(good, f)); err != nil || fi.Size() == 0 {
			t.Errorf("lab report did not write %s: %v", f, err)
		}
	}
	// Rendering again over the rendered files gives the same files.
	var renders [2][]byte
	for i := range renders {
		if code := run(context.Background(), []string{"report", "--baseline", same, good}); code != exitOK {
			t.Fatalf("lab report exited %d", code)
		}
		renders[i], _ = os.ReadFile(filepath.Join(good, "report.json"))
	}
	if len(renders[0]) == 0 || string(renders[0]) != string(renders[1]) {
		t.Error("report.json changed when rendered again from the same results")
	}
}

func TestDiffCommand(t *testing.T) {
	base := t.TempDir()
	a := runDir(t, filepath.Join(base, "a"), rundir.StatusComplete, okOK)
	same := runDir(t, filepath.Join(base, "same"), rundir.StatusComplete, okOK)
	changed := runDir(t, filepath.Join(base, "changed"), rundir.StatusComplete, changedY)
	fewer := runDir(t, filepath.Join(base, "fewer"), rundir.StatusComplete, map[string][]string{"x": {"ok", "ok"}})
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"nothing changed", []string{a, same}, exitOK},
		{"an outcome changed", []string{a, changed}, exitChanged},
		{"a target gone is no behaviour change", []string{a, fewer}, exitOK},
		{"missing directory", []string{a, filepath.Join(base, "nope")}, exitUsage},
		{"one directory", []string{a}, exitUsage},
		{"three directories", []string{a, same, changed}, exitUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code := run(context.Background(), append([]string{"diff"}, tc.args...)); code != tc.code {
				t.Errorf("lab diff %v exited %d, want %d", tc.args, code, tc.code)
			}
		})
	}
}

func TestMergeCommand(t *testing.T) {
	base := t.TempDir()
	s1 := runDir(t, filepath.Join(base, "shard-1"), rundir.StatusComplete, map[string][]string{"x": {"ok", "ok"}})
	s2 := runDir(t, filepath.Join(base, "shard-2"), rundir.StatusComplete, map[string][]string{"y": {"ok", "EADDRINUSE"}})
	s2failed := runDir(t, filepath.Join(base, "shard-2-failed"), rundir.StatusFailed, map[string][]string{"y": {"ok"}}, "y")
	baseline := runDir(t, filepath.Join(base, "baseline"), rundir.StatusComplete, changedY)
	odd := filepath.Join(base, "odd")
	runDir(t, odd, rundir.StatusComplete, map[string][]string{"z": {"ok", "ok"}})
	// A shard of another scenarios file.
	var r rundir.Run
	b, _ := os.ReadFile(filepath.Join(odd, "run.json"))
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	r.Scenarios = r.Scenarios[:1]
	if err := rundir.WriteJSON(filepath.Join(odd, "run.json"), r); err != nil {
		t.Fatal(err)
	}
	out := func(name string) string { return filepath.Join(base, "out", name) }
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"two shards", []string{s1, s2, "--out", out("ok")}, exitOK},
		{"--out first", []string{"--out", out("ok2"), s1, s2}, exitOK},
		{"against a baseline that differs", []string{s1, s2, "--out", out("changed"), "--baseline", baseline}, exitChanged},
		{"a failed shard", []string{s1, s2failed, "--out", out("failed")}, exitInfra},
		{"scenarios differ", []string{s1, odd, "--out", out("odd")}, exitUsage},
		{"a target twice", []string{s1, s1, "--out", out("twice")}, exitUsage},
		{"missing shard", []string{s1, filepath.Join(base, "nope"), "--out", out("missing")}, exitUsage},
		{"no --out", []string{s1, s2}, exitUsage},
		{"no shards", []string{"--out", out("none")}, exitUsage},
		{"output exists", []string{s1, s2, "--out", out("ok")}, exitUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code := run(context.Background(), append([]string{"merge"}, tc.args...)); code != tc.code {
				t.Errorf("lab merge %v exited %d, want %d", tc.args, code, tc.code)
			}
		})
	}
	d, err := rundir.Read(out("ok"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Run.Targets, []string{"x", "y"}) || len(d.Targets) != 2 || d.Targets[1].Results[1].Outcome != "EADDRINUSE" {
		t.Errorf("merged run: %+v", d.Run)
	}
	for _, f := range []string{"report.md", "report.html", "report.json", "junit.xml"} {
		if _, err := os.Stat(filepath.Join(out("ok"), f)); err != nil {
			t.Errorf("lab merge did not render %s: %v", f, err)
		}
	}
}

func TestReportArgsInterleaved(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		out  string
	}{
		{[]string{"a", "b", "--out", "c"}, []string{"a", "b"}, "c"},
		{[]string{"--out", "c", "a", "b"}, []string{"a", "b"}, "c"},
		{[]string{"a", "--out=c", "b"}, []string{"a", "b"}, "c"},
		{[]string{"a", "--", "--out", "b"}, []string{"a", "--out", "b"}, ""},
		{nil, nil, ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			out := fs.String("out", "", "")
			pos, err := parseInterleaved(fs, tc.args)
			if err != nil || !reflect.DeepEqual(pos, tc.pos) || *out != tc.out {
				t.Errorf("parseInterleaved(%q) = %q, out %q, %v; want %q, out %q", tc.args, pos, *out, err, tc.pos, tc.out)
			}
		})
	}
}

// TestReportNightlyWorkflow checks docs/nightly.yml is valid YAML, is the
// workflow the README shows, and runs lab with the flags lab has.
func TestReportNightlyWorkflow(t *testing.T) {
	wf, err := os.ReadFile("../../docs/nightly.yml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+string(wf)+"```") {
		t.Error("README.md does not show docs/nightly.yml as it is")
	}
	var doc struct {
		Jobs map[string]struct {
			Needs any `yaml:"needs"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(wf, &doc); err != nil {
		t.Fatalf("docs/nightly.yml: %v", err)
	}
	for _, job := range []string{"shard", "merge", "publish", "verdict"} {
		if _, ok := doc.Jobs[job]; !ok {
			t.Errorf("docs/nightly.yml has no job %q", job)
		}
	}
	for _, use := range []string{"lab run --targets \"$TARGETS\" --shard", "/lab\" merge \"${shards[@]}\" --out", "$BASELINE", "go build -o"} {
		if !strings.Contains(string(wf), use) {
			t.Errorf("docs/nightly.yml lacks %q", use)
		}
	}
}

// TestNightlyWorkflowLints checks docs/nightly.yml as GitHub users check
// their workflows: actionlint (v1.7.12, from the Go module proxy) with
// Debian's shellcheck on every run: script. Any finding fails the test.
func TestNightlyWorkflowLints(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is not installed (scripts/setup installs Debian's shellcheck)")
	}
	wf, err := filepath.Abs("../../docs/nightly.yml")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12", "-no-color", "-shellcheck", sc, wf)
	cmd.Dir = t.TempDir() // outside lab's module: actionlint is a tool, not a dependency
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("actionlint %s: %v\n%s", wf, err, out)
	}
}
