// Package rundir is the on-disk form of a run: results/<run-id>/run.json
// describes the run and its scenarios, and each target's results are
// <target>.jsonl, a journal appended to as results arrive (see Journal),
// until <target>.json, the whole target in one document, is written once
// when the target ends. Whole files are replaced atomically (written beside,
// then renamed), so a crash or Ctrl-C leaves the last complete version and
// never a torn one; a journal cut by a crash loses at most its torn last
// line. Read takes either form, so nothing measured is lost.
package rundir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"lab/wire"
)

// Run describes one run of lab: when, what and where.
type Run struct {
	ID        string     `json:"id"`
	Started   time.Time  `json:"started"`
	Finished  *time.Time `json:"finished,omitempty"` // nil while running or after a crash
	Command   string     `json:"command"`
	Targets   []string   `json:"targets"`
	Scenarios []Scenario `json:"scenarios"`
	// Status is running, complete, interrupted or failed.
	Status Status `json:"status"`
	// Catalog and TargetsFile are the scenarios and targets files the run
	// read, and Lab what produced it (absent from older runs).
	Catalog     *Input `json:"catalog,omitempty"`
	TargetsFile *Input `json:"targets_file,omitempty"`
	Lab         *Build `json:"lab,omitempty"`
}

// Input is a file a run read: its path, or "built-in" for the copy lab
// carries, and a short hex SHA-256 of what was read.
type Input struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Build says which lab produced a run.
type Build struct {
	Version     string `json:"version"`      // lab's module version and VCS revision
	Go          string `json:"go"`           // the Go toolchain lab was built with
	AgentSource string `json:"agent_source"` // short hash of the agent sources lab carries and builds agents from
	Catalog     string `json:"catalog"`      // short hash of the catalog lab carries (built-in)
}

// Scenario is what the report needs to know of a scenario besides results.
type Scenario struct {
	ID     string                       `json:"id"`
	Title  string                       `json:"title,omitempty"`
	Source string                       `json:"source,omitempty"`
	Note   string                       `json:"note,omitempty"`
	Proto  string                       `json:"proto"`
	Steps  []string                     `json:"steps"`
	Expect map[string]map[string]string `json:"expect,omitempty"`
	Vars   map[string]string            `json:"vars,omitempty"`
}

// Target is what one target measured.
type Target struct {
	Name     string    `json:"target"`
	Provider string    `json:"provider"`
	Env      *wire.Env `json:"env,omitempty"`
	// Status is running, complete, failed, interrupted or unavailable;
	// missing when the run directory has no results file for the target.
	Status Status `json:"status"`
	// Error says why a failed target failed, naming the phase.
	Error string `json:"error,omitempty"`
	// Phases records how long each phase of the target's life took.
	Phases  []Phase   `json:"phases"`
	Total   int       `json:"total"` // scenarios asked for
	Results []Outcome `json:"results"`
}

// Phase is one step of a target's life and how long it took.
type Phase struct {
	Name   string `json:"name"` // image, boot, connect, build (the agent), upload, run, teardown
	Millis int64  `json:"ms"`
	Error  string `json:"error,omitempty"`
}

// Outcome is one scenario's result on a target, with the documented claims
// for this target beside it.
type Outcome struct {
	wire.Result
	// Claims maps a documented source (answer) to its claim for this
	// target's OS, and ClaimKeys to the expect key that matched.
	Claims    map[string]string `json:"claims,omitempty"`
	ClaimKeys map[string]string `json:"claim_keys,omitempty"`
}

// Status is how far a run, or one target of it, got.
type Status string

const (
	StatusRunning     Status = "running"
	StatusComplete    Status = "complete"
	StatusFailed      Status = "failed"
	StatusInterrupted Status = "interrupted"
	// StatusUnavailable: this host cannot run the target (no image, no
	// QEMU for its architecture); nothing was measured and nothing faked.
	StatusUnavailable Status = "unavailable"
	// StatusMissing: the run directory has no results file for the target
	// (it never started, or the run was cut off before it did). It is never
	// written, only reported by Read.
	StatusMissing Status = "missing"
)

// NewRunDir creates a fresh directory for a run under base. The directory is
// created exclusively, so two runs started at once never share one.
func NewRunDir(base string, now time.Time) (id, dir string, err error) {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", "", fmt.Errorf("creating results directory: %w", err)
	}
	stamp := now.UTC().Format("20060102T150405Z")
	for i := 1; i < 100; i++ {
		id = stamp
		if i > 1 {
			id = fmt.Sprintf("%s-%d", stamp, i)
		}
		dir = filepath.Join(base, id)
		err = os.Mkdir(dir, 0o755)
		if err == nil {
			return id, dir, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", "", fmt.Errorf("creating run directory: %w", err)
		}
	}
	return "", "", fmt.Errorf("creating run directory under %s: %w", base, err)
}

// WriteJSON replaces path with v as indented JSON, atomically.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(path), err)
	}
	return WriteFile(path, append(b, '\n'))
}

// WriteFile replaces path with data atomically: a reader sees the old file
// or the new one, never part of either.
func WriteFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Dir is a run directory read back.
type Dir struct {
	Path    string
	Run     Run
	Targets []Target // in the run's target order, then by name
}

// Read loads a run directory. A target listed in run.json whose file is
// missing is returned with status "missing".
func Read(dir string) (*Dir, error) {
	d := &Dir{Path: dir}
	if err := readJSON(filepath.Join(dir, "run.json"), &d.Run); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, name := range d.Run.Targets {
		// A target's file is <name>.json in this directory: a name that is
		// a path would read a file elsewhere.
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("reading results %s: %w", filepath.Join(dir, "run.json"), err)
		}
		seen[name] = true
	}
	// Targets not listed in run.json (e.g. copied in by hand) still count.
	var unlisted []string
	for _, pattern := range []string{"*.json", "*.jsonl"} {
		files, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
			if name == "run" || name == "report" || seen[name] || strings.HasPrefix(name, ".") {
				continue
			}
			seen[name] = true
			unlisted = append(unlisted, name)
		}
	}
	sort.Strings(unlisted)
	names := append(slices.Clip(d.Run.Targets), unlisted...)
	targets, err := readTargets(dir, names)
	if err != nil {
		return nil, err
	}
	for i, t := range targets {
		listed := i < len(d.Run.Targets)
		switch {
		case !listed && (!t.found || t.Name == ""):
			continue // not a target's results, or gone since the glob
		case !t.found:
			t.Target = Target{Name: names[i], Status: StatusMissing, Error: "no results file: the target never started or the run was cut off"}
		case t.Name == "":
			t.Name = names[i]
		}
		d.Targets = append(d.Targets, t.Target)
	}
	return d, nil
}

// readTargets reads the named targets' results, a few at a time: decoding
// JSON is most of the time of reading a large run, and the targets are
// independent. The error is the first target's in names order.
func readTargets(dir string, names []string) ([]foundTarget, error) {
	out := make([]foundTarget, len(names))
	errs := make([]error, len(names))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(len(names), runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := range next {
				out[i].Target, out[i].found, errs[i] = readTarget(dir, names[i])
			}
		})
	}
	for i := range names {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := firstNonNil(errs); err != nil {
		return nil, err
	}
	return out, nil
}

type foundTarget struct {
	Target
	found bool
}

func firstNonNil(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// readTarget reads a target's results: <name>.json when there is one (it is
// written only when the target has ended, so it is the whole story), else
// its journal <name>.jsonl. ok is false when there is neither.
func readTarget(dir, name string) (t Target, ok bool, err error) {
	err = readJSON(filepath.Join(dir, name+".json"), &t)
	if err == nil {
		return t, true, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return Target{}, false, err
	}
	t, err = ReadJournal(filepath.Join(dir, JournalName(name)))
	if errors.Is(err, os.ErrNotExist) {
		return Target{}, false, nil
	}
	if err != nil {
		return Target{}, false, err
	}
	return t, true, nil
}

// checkName rejects a target name that is not a plain file name: results
// are <name>.json in the run directory, and a path would reach elsewhere.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("target name %q is not a file name", name)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading results: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("reading results %s: %w", path, err)
	}
	return nil
}
