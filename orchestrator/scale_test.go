//go:build linux

package orchestrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"lab/internal/gencatalog"
	"lab/orchestrator"
	"lab/remote"
	"lab/rundir"
	"lab/scenario"
	"lab/target"
	"lab/wire"
)

// generated is a catalog of n scenarios of the kind the kernel's own
// bind-conflict selftests run, parsed as lab parses a scenarios file.
func generated(t testing.TB, n int) []scenario.Scenario {
	t.Helper()
	scs, err := scenario.Parse("generated.yaml", gencatalog.Catalog(n))
	if err != nil {
		t.Fatal(err)
	}
	if len(scs) != n {
		t.Fatalf("the generator made %d scenarios, want %d", len(scs), n)
	}
	return scs
}

// TestThousandsInARow runs a 2,000-scenario catalog on this machine three
// times in a row: every run completes with every result, none twice, and
// each result is in the target's file.
func TestThousandsInARow(t *testing.T) {
	if testing.Short() {
		t.Skip("three runs of 2,000 scenarios")
	}
	scs := generated(t, 2000)
	for i := 1; i <= 3; i++ {
		opts := runOpts(t, []target.Spec{defaultTarget(t, "local")}, scs)
		start := time.Now()
		sum, err := orchestrator.Run(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		d, err := rundir.Read(sum.Dir)
		if err != nil {
			t.Fatal(err)
		}
		tr := d.Targets[0]
		seen := map[string]bool{}
		for _, r := range tr.Results {
			seen[r.ID] = true
		}
		t.Logf("run %d: %s, %d results in %v", i, tr.Status, len(tr.Results), time.Since(start).Round(10*time.Millisecond))
		if tr.Status != rundir.StatusComplete || len(tr.Results) != len(scs) || len(seen) != len(scs) {
			t.Errorf("run %d: status %s (%s), %d results, %d distinct; want complete with %d", i, tr.Status, tr.Error, len(tr.Results), len(seen), len(scs))
		}
		if _, err := os.Stat(filepath.Join(sum.Dir, rundir.JournalName("local"))); !os.IsNotExist(err) {
			t.Errorf("run %d: the journal outlived the finished target (%v)", i, err)
		}
	}
}

// agentAlone runs the agent binary at bin on req, its output thrown away,
// and returns how long it took.
func agentAlone(b *testing.B, bin string, req []byte) time.Duration {
	b.Helper()
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(req)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil { // stdout: the pipe, read and dropped
		b.Fatalf("agent: %v\n%s", err, out)
	}
	return time.Since(start)
}

// BenchmarkLocalAtScale: 2,000 generated scenarios on this machine, lab's
// whole run (orchestrator.Run: run.json, the agent, every result made
// durable, <target>.json, teardown) against the agent alone on the same
// input with its output thrown away, one after the other in each
// iteration; the ratio is the median of the iterations' (target <= 1.2).
func BenchmarkLocalAtScale(b *testing.B) {
	scs := generated(b, 2000)
	req, _ := json.Marshal(wire.Request{Scenarios: scenario.Wire(scs)})
	bin := filepath.Join(b.TempDir(), "lab-agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "../cmd/lab-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the agent: %v\n%s", err, out)
	}
	benchRun(b, []target.Spec{defaultTarget(b, "local")}, scs[:1]) // lab's agent build, outside the timing
	var alone, withLab, ratios []float64
	for b.Loop() {
		a := agentAlone(b, bin, req)
		l := benchRun(b, []target.Spec{defaultTarget(b, "local")}, scs)
		alone, withLab, ratios = append(alone, a.Seconds()), append(withLab, l.Seconds()), append(ratios, l.Seconds()/a.Seconds())
	}
	b.ReportMetric(median(alone), "s-agent-alone")
	b.ReportMetric(median(withLab), "s-lab")
	b.ReportMetric(median(ratios), "ratio")
}

// median of xs, which it sorts.
func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// BenchmarkMicroVMAtScale: the same 2,000 generated scenarios on a
// linux-6.1 microVM, kept running between iterations as lab run --keep
// keeps one (the first, one-scenario run boots it outside the timing):
// lab's whole run on the kept guest (connect, the agent its initramfs
// carries, run, every result made durable, teardown) against that agent
// alone inside the guest, started over SSH with its request in a file and
// its output sent to /dev/null there; median ratio (target 1.5).
func BenchmarkMicroVMAtScale(b *testing.B) {
	ctx := context.Background()
	cache := cacheDir(b)
	guest := defaultTarget(b, "linux-6.1")
	guest.Keep = true
	if k, err := target.LoadKept(cache, guest.Name); err == nil && k.Alive() {
		b.Skipf("a kept %s guest runs already (pid %d), which this benchmark would reuse and stop: lab down %s first", guest.Name, k.PID, guest.Name)
	}
	scs := generated(b, 2000)
	benchRun(b, []target.Spec{guest}, scs[:1]) // boots and keeps the guest
	k, err := target.LoadKept(cache, guest.Name)
	if err != nil {
		b.Fatal(err)
	}
	defer k.Down()
	signer, err := remote.LoadSigner(k.Key)
	if err != nil {
		b.Fatal(err)
	}
	pinned, _ := remote.PinnedHostKey([]byte(k.HostKey))
	c, err := remote.Dial(ctx, remote.Config{Addr: k.SSHAddr, User: k.User, Signer: signer, HostKey: pinned, Deadline: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if len(k.Preloaded) != 1 {
		b.Fatalf("the kept guest has preloaded agents %v, want one", k.Preloaded)
	}
	var agent string
	for _, there := range k.Preloaded {
		agent = there
	}
	req, _ := json.Marshal(wire.Request{Scenarios: scenario.Wire(scs)})
	if err := c.Upload(ctx, bytes.NewReader(req), "/tmp/bench-req.json", 0o644); err != nil {
		b.Fatal(err)
	}
	var alone, withLab, ratios []float64
	for b.Loop() {
		start := time.Now()
		if rerr, terr := c.Run(ctx, agent+" </tmp/bench-req.json >/dev/null", nil, nil, os.Stderr); rerr != nil || terr != nil {
			b.Fatal(rerr, terr)
		}
		a := time.Since(start).Seconds()
		l := benchRun(b, []target.Spec{guest}, scs).Seconds()
		alone, withLab, ratios = append(alone, a), append(withLab, l), append(ratios, l/a)
	}
	b.ReportMetric(median(alone), "s-agent-alone")
	b.ReportMetric(median(withLab), "s-lab")
	b.ReportMetric(median(ratios), "ratio")
}
