//go:build linux && load

package orchestrator_test

// Load: many guests queued behind --parallel, many runs back to back, runs
// at once into one results directory. Run it with:
//
//	LAB_CACHE=/var/tmp/lab-cache go test -tags load -run 'TestLoad' -count=1 -timeout 60m -v ./orchestrator/

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lab/internal/testenv"
	"lab/orchestrator"
	"lab/rundir"
	"lab/target"
)

// TestLoadSixteenGuests queues 16 microVMs behind --parallel 2 in a real lab
// process: every target finishes with every result, and lab's own memory
// stays bounded (its peak RSS is logged). The 16 images are built from
// the cached packages into a cache of the test's own, which goes with it.
func TestLoadSixteenGuests(t *testing.T) {
	needGuests(t)
	const n = 16
	dir := t.TempDir()
	bin := filepath.Join(dir, "lab")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/lab").CombinedOutput(); err != nil {
		t.Fatalf("building lab: %v\n%s", err, out)
	}
	var yaml strings.Builder
	var names []string
	yaml.WriteString("targets:\n")
	for i := range n {
		name := fmt.Sprintf("load-%02d", i)
		names = append(names, name)
		fmt.Fprintf(&yaml, "  - name: %s\n    provider: qemu\n    suite: bookworm\n    kernel: linux-image-cloud-amd64\n", name)
	}
	labYAML := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(labYAML, []byte(yaml.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "results")
	cmd := exec.Command(bin, "run", "--file", labYAML, "--targets", strings.Join(names, ","), "--parallel", "2",
		"--only", "bsd-table/*", "--scenarios", "scenarios.yaml", "--out", out, "--cache", coldImageCache(t))
	cmd.Dir = ".."
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	// VmHWM is lab's own peak resident set (its QEMU children are not in
	// it); read it until lab exits, the last reading is the peak.
	hwm := make(chan int, 1)
	go func() {
		peak := 0
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
			if err != nil || strings.Contains(string(b), "State:\tZ") {
				hwm <- peak
				return
			}
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					fmt.Sscan(v, &peak)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	began := time.Now()
	err := cmd.Wait()
	if err != nil {
		t.Errorf("lab run: %v\n%s", err, lastN(stderr.String(), 40))
	}
	peakMiB := float64(<-hwm) / 1024 // kB
	// The rusage of a waited-for process covers its biggest descendant:
	// a QEMU guest.
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	// fmt, not t.Logf: the figure is the point, so scripts/test shows it
	// when the test passes too.
	fmt.Printf("load: 16 guests, --parallel 2: wall %v, lab's own peak RSS (VmHWM) %.1f MiB, largest child's %.1f MiB, CPU user %v sys %v\n",
		time.Since(began).Round(time.Second), peakMiB, float64(ru.Maxrss)/1024,
		cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime())
	if peakMiB > 256 {
		t.Errorf("lab's peak RSS %.1f MiB: memory is not bounded", peakMiB)
	}
	noQEMULeft(t, out)
	runs, _ := filepath.Glob(filepath.Join(out, "*", "run.json"))
	if len(runs) != 1 {
		t.Fatalf("run directories: %v", runs)
	}
	d, err := rundir.Read(filepath.Dir(runs[0]))
	if err != nil {
		t.Fatal(err)
	}
	want := len(scenarios(t, "bsd-table/*"))
	if len(d.Targets) != n {
		t.Errorf("%d targets in the run, want %d", len(d.Targets), n)
	}
	for _, tr := range d.Targets {
		if tr.Status != rundir.StatusComplete || len(tr.Results) != want {
			t.Errorf("%s: %s with %d of %d results: %s", tr.Name, tr.Status, len(tr.Results), want, tr.Error)
		}
	}
}

// TestLoadHundredLocalRuns runs the local target 100 times in this process:
// afterwards it holds no more file descriptors and has no more child
// processes than before.
func TestLoadHundredLocalRuns(t *testing.T) {
	scs := scenarios(t, "bsd-table/*")
	base := t.TempDir()
	run := func() {
		opts := runOpts(t, []target.Spec{defaultTarget(t, "local")}, scs)
		opts.ResultsDir = base
		sum, err := orchestrator.Run(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if f := sum.Failed(); len(f) > 0 {
			t.Fatalf("local failed: %s", f[0].Error)
		}
	}
	run() // builds the agent and warms up what stays (the logger, the agent cache)
	fds0, kids0 := openFDs(t), testenv.Children(os.Getpid())
	for range 100 {
		run()
	}
	fds1, kids1 := openFDs(t), testenv.Children(os.Getpid())
	fmt.Printf("load: 100 local runs: open fds %d before, %d after; child processes %d before, %d after\n", len(fds0), len(fds1), len(kids0), len(kids1))
	if len(fds1) > len(fds0) {
		t.Errorf("file descriptors leaked: before %v\nafter %v", fds0, fds1)
	}
	if len(kids1) > len(kids0) {
		t.Errorf("processes leaked: %v", kids1)
	}
	dirs, _ := filepath.Glob(filepath.Join(base, "*", "run.json"))
	if len(dirs) != 101 {
		t.Errorf("%d run directories, want 101", len(dirs))
	}
}

// TestLoadConcurrentRunsOneResultsDir starts runs at the same instant into
// one results directory: each gets its own run directory, and every one is
// complete.
func TestLoadConcurrentRunsOneResultsDir(t *testing.T) {
	scs := scenarios(t, "bsd-table/row1/*")
	base := t.TempDir()
	const n = 4
	var wg sync.WaitGroup
	sums := make([]*orchestrator.Summary, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := runOpts(t, []target.Spec{defaultTarget(t, "local")}, scs)
			opts.ResultsDir = base
			<-start
			sums[i], errs[i] = orchestrator.Run(context.Background(), opts)
		}()
	}
	close(start)
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if seen[sums[i].Dir] {
			t.Errorf("two runs wrote %s", sums[i].Dir)
		}
		seen[sums[i].Dir] = true
		d, err := rundir.Read(sums[i].Dir)
		if err != nil {
			t.Fatal(err)
		}
		if d.Run.Status != rundir.StatusComplete || len(d.Targets) != 1 || len(d.Targets[0].Results) != len(scs) {
			t.Errorf("%s: run %s, %+v", sums[i].Dir, d.Run.Status, d.Targets)
		}
	}
}

// TestLoadIncompleteRunReported leaves a run directory as a killed lab
// would (run.json "running", one target never written) and renders it with
// lab report: the report says the run is incomplete and which target is
// missing.
func TestLoadIncompleteRunReported(t *testing.T) {
	scs := scenarios(t, "bsd-table/row1/*")
	opts := runOpts(t, []target.Spec{defaultTarget(t, "local")}, scs)
	sum, err := orchestrator.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	runFile := filepath.Join(sum.Dir, "run.json")
	var d *rundir.Dir
	if d, err = rundir.Read(sum.Dir); err != nil {
		t.Fatal(err)
	}
	r := d.Run
	r.Status = rundir.StatusRunning
	r.Finished = nil
	r.Targets = append(r.Targets, "linux-6.1")
	if err := rundir.WriteJSON(runFile, r); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "lab")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/lab").CombinedOutput(); err != nil {
		t.Fatalf("building lab: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "report", sum.Dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("lab report on an incomplete run: %v, want exit status 3\n%s", err, out)
	}
	md, err := os.ReadFile(filepath.Join(sum.Dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	head := string(md)
	if i := strings.Index(head, "\n## "); i > 0 {
		head = head[:i]
	}
	for _, want := range []string{"incomplete: lab stopped before the run finished", "linux-6.1"} {
		if !strings.Contains(head, want) {
			t.Errorf("report.md's header does not say %q:\n%s", want, head)
		}
	}
}

// openFDs lists this process's open file descriptors and what they are.
func openFDs(t *testing.T) []string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		out = append(out, e.Name()+"->"+l)
	}
	return out
}

func lastN(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
