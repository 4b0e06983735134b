package rundir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Merge joins the run directories of the shards of one run (lab run --shard
// i/n, each on its own machine) into out, a new directory: every shard's
// files are copied in and run.json describes the whole run. The shards must
// have run the same scenarios and no target twice; Merge checks every shard
// before it writes anything. Targets keep the order of the shards as given,
// then each shard's order, so shards given as 1/n, 2/n, ... restore the
// order of the targets selected. command is recorded in run.json.
func Merge(out string, shards []string, command string) (_ *Dir, err error) {
	if len(shards) == 0 {
		return nil, errors.New("merging shards: no shard directories given")
	}
	runs := make([]Run, len(shards))
	for i, dir := range shards {
		if err := readJSON(filepath.Join(dir, "run.json"), &runs[i]); err != nil {
			return nil, fmt.Errorf("merging shards: %s is not a run directory: %w", dir, err)
		}
	}
	run, err := mergeRuns(shards, runs)
	if err != nil {
		return nil, fmt.Errorf("merging shards: %w", err)
	}
	run.ID = filepath.Base(filepath.Clean(out))
	run.Command = command

	// Every file of every shard but run.json and the shard's rendered
	// reports is the shard's own: results and consoles of its targets.
	from := map[string]string{} // file name -> shard it comes from
	var files []string
	for _, dir := range shards {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("merging shards: listing %s: %w", dir, err)
		}
		for _, e := range entries {
			name := e.Name()
			if !e.Type().IsRegular() || rendered[name] || strings.HasPrefix(name, ".") {
				continue
			}
			if prev, dup := from[name]; dup {
				return nil, fmt.Errorf("merging shards: both %s and %s have %s", prev, dir, name)
			}
			from[name] = dir
			files = append(files, name)
		}
	}

	if err := os.MkdirAll(filepath.Dir(filepath.Clean(out)), 0o755); err != nil {
		return nil, fmt.Errorf("merging shards: creating %s: %w", out, err)
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, fmt.Errorf("merging shards: creating %s (it must not exist yet): %w", out, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(out) // created above, so nothing but our copies is lost
		}
	}()
	for _, name := range files {
		if err := copyFile(filepath.Join(out, name), filepath.Join(from[name], name)); err != nil {
			return nil, fmt.Errorf("merging shards: %w", err)
		}
	}
	// run.json last: a directory without it is plainly not a finished merge.
	if err := WriteJSON(filepath.Join(out, "run.json"), run); err != nil {
		return nil, fmt.Errorf("merging shards: %w", err)
	}
	return Read(out)
}

// rendered names the files of a run directory made from its results, which
// a merge renders again rather than copies.
var rendered = map[string]bool{"run.json": true, "report.md": true, "report.html": true, "report.json": true, "junit.xml": true}

// mergeRuns combines the run.json of every shard; dirs name them in errors.
func mergeRuns(dirs []string, runs []Run) (Run, error) {
	m := Run{Started: runs[0].Started, Scenarios: runs[0].Scenarios, Targets: []string{}}
	first, err := scenarioKey(runs[0].Scenarios)
	if err != nil {
		return Run{}, err
	}
	owner := map[string]string{} // target -> shard that ran it
	var finished time.Time
	allFinished := true
	for i, r := range runs {
		if i > 0 {
			key, err := scenarioKey(r.Scenarios)
			if err != nil {
				return Run{}, err
			}
			if key != first {
				return Run{}, fmt.Errorf("%s and %s ran different scenarios (%s); shards of one run must use the same scenarios file and --only", dirs[0], dirs[i], scenarioDiff(runs[0].Scenarios, r.Scenarios))
			}
		}
		for _, t := range r.Targets {
			if prev, dup := owner[t]; dup {
				return Run{}, fmt.Errorf("target %s is in both %s and %s", t, prev, dirs[i])
			}
			owner[t] = dirs[i]
			m.Targets = append(m.Targets, t)
		}
		if r.Started.Before(m.Started) {
			m.Started = r.Started
		}
		switch {
		case r.Finished == nil:
			allFinished = false
		case r.Finished.After(finished):
			finished = *r.Finished
		}
		m.Status = worse(m.Status, r.Status)
	}
	if allFinished {
		m.Finished = &finished // as Run.Finished: nil after a crash
	}
	if m.Status == StatusRunning {
		// A shard still saying "running" never finished: its lab died.
		m.Status = StatusFailed
	}
	return m, nil
}

// worse is the status of a run made of runs with statuses a and b: an
// interruption outweighs a failure, which outweighs a shard that never
// finished, which outweighs completion.
func worse(a, b Status) Status {
	rank := func(s Status) int {
		switch s {
		case "":
			return 0
		case StatusComplete:
			return 1
		case StatusRunning:
			return 2
		case StatusFailed:
			return 3
		case StatusInterrupted:
			return 4
		}
		return 3 // an unknown status is no success
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

func scenarioKey(ss []Scenario) (string, error) {
	b, err := json.Marshal(ss)
	if err != nil {
		return "", fmt.Errorf("comparing scenarios: %w", err)
	}
	return string(b), nil
}

// scenarioDiff says how two scenario lists differ, briefly.
func scenarioDiff(a, b []Scenario) string {
	ia, ib := map[string]Scenario{}, map[string]Scenario{}
	for _, s := range a {
		ia[s.ID] = s
	}
	for _, s := range b {
		ib[s.ID] = s
	}
	for _, s := range a {
		if _, ok := ib[s.ID]; !ok {
			return fmt.Sprintf("only the first has %s", s.ID)
		}
	}
	for _, s := range b {
		if _, ok := ia[s.ID]; !ok {
			return fmt.Sprintf("only the second has %s", s.ID)
		}
	}
	for _, s := range a {
		ka, _ := scenarioKey([]Scenario{s})
		kb, _ := scenarioKey([]Scenario{ib[s.ID]})
		if ka != kb {
			return fmt.Sprintf("%s is defined differently", s.ID)
		}
	}
	return "in a different order"
}

func copyFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := WriteFile(dst, b); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return nil
}
