package orchestrator_test

import (
	"os"
	"path/filepath"
	"testing"

	"lab/orchestrator"
	"lab/scenario"
	"lab/target"

	"github.com/hashicorp/go-hclog"
)

// oneTarget parses one lab.yaml entry, written as a YAML flow mapping
// ("{name: x, provider: ssh, ...}"), as lab run would read it.
func oneTarget(t testing.TB, entry string) target.Spec {
	t.Helper()
	ts, err := target.Parse("test.yaml", []byte("targets:\n  - "+entry+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return ts[0]
}

// defaultTarget is one of lab's built-in targets.
func defaultTarget(t testing.TB, name string) target.Spec {
	t.Helper()
	ts, err := target.Select(target.Defaults(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ts[0]
}

func cacheDir(t testing.TB) string {
	if d := os.Getenv("LAB_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "lab-cache")
}

func scenarios(t testing.TB, only string) []scenario.Scenario {
	t.Helper()
	scs, err := scenario.ParseFile("../scenarios.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return scenario.Filter(scs, only)
}

func quietLog() hclog.Logger { return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Warn}) }

// progressFunc adapts a function to orchestrator.Progress.
type progressFunc func(orchestrator.TargetState)

func (f progressFunc) Update(s orchestrator.TargetState) { f(s) }
