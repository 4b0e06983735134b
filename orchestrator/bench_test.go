//go:build linux

package orchestrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"lab/image"
	"lab/orchestrator"
	"lab/qemu"
	"lab/remote"
	"lab/scenario"
	"lab/target"
	"lab/wire"
)

// The speed targets, as ratios measured in the same run:
//
//	go test ./orchestrator -run XXX -bench . -benchtime 1x
//
// BenchmarkMicroVM: one microVM from start to results, against a 10 s budget
// (ratio <= 1). BenchmarkParallel: three targets at once against the slowest
// alone (<= 1.3). BenchmarkAgainstOpenSSH: lab's connect+upload+run on a
// booted guest against scp plus ssh from OpenSSH for the same agent and
// scenarios (<= 1.0). Images are built before timing starts.

func benchRun(b *testing.B, targets []target.Spec, scs []scenario.Scenario) time.Duration {
	b.Helper()
	opts := orchestrator.Options{
		Targets: targets, Scenarios: scs, ResultsDir: b.TempDir(), CacheDir: cacheDir(b),
		Parallel: len(targets), Log: quietLog(),
	}
	start := time.Now()
	sum, err := orchestrator.Run(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	for _, t := range sum.Targets {
		if t.Status != "complete" {
			b.Fatalf("%s: %s %s", t.Name, t.Status, t.Error)
		}
	}
	return took
}

func warm(b *testing.B, names ...string) []target.Spec {
	b.Helper()
	var ts []target.Spec
	for _, n := range names {
		t := defaultTarget(b, n)
		if _, _, err := target.BuildImage(context.Background(), t, target.Env{CacheDir: cacheDir(b), Log: quietLog()}); err != nil {
			b.Fatal(err)
		}
		ts = append(ts, t)
	}
	// One scenario on this machine builds the linux/amd64 agent the guests
	// run, so that no timing includes go build.
	benchRun(b, []target.Spec{defaultTarget(b, "local")}, scenarios(b, "bsd-table/row1/off"))
	return ts
}

func BenchmarkMicroVM(b *testing.B) {
	scs := scenarios(b, "")
	for _, name := range []string{"linux-5.10", "linux-6.1", "linux-6.12"} {
		b.Run(name, func(b *testing.B) {
			ts := warm(b, name)
			var total time.Duration
			for b.Loop() {
				total += benchRun(b, ts, scs)
			}
			per := total / time.Duration(b.N)
			b.ReportMetric(per.Seconds(), "s/run")
			b.ReportMetric(per.Seconds()/10, "ratio-to-10s")
		})
	}
}

func BenchmarkParallel(b *testing.B) {
	scs := scenarios(b, "")
	names := []string{"linux-5.10", "linux-6.1", "linux-6.12"}
	ts := warm(b, names...)
	for b.Loop() {
		var slowest time.Duration
		for _, t := range ts {
			slowest = max(slowest, benchRun(b, []target.Spec{t}, scs))
		}
		together := benchRun(b, ts, scs)
		b.ReportMetric(slowest.Seconds(), "s-slowest-alone")
		b.ReportMetric(together.Seconds(), "s-three-at-once")
		b.ReportMetric(together.Seconds()/slowest.Seconds(), "ratio")
	}
}

func BenchmarkAgainstOpenSSH(b *testing.B) {
	ctx := context.Background()
	spec, _ := image.DefaultSpec("linux-6.1")
	img, err := image.Build(ctx, spec, cacheDir(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	agentBin := filepath.Join(b.TempDir(), "lab-agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", agentBin, "../cmd/lab-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the agent as lab does: %v\n%s", err, out)
	}
	vm, err := qemu.Start(ctx, qemu.Config{Arch: "amd64", Kernel: img.Kernel, Initrd: img.Initrd, Append: image.KernelCmdline, MemoryMB: 256, ConsolePath: filepath.Join(b.TempDir(), "console")})
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Stop(ctx)
	hostKey, _ := img.HostPublicKey()
	signer, _ := img.ClientSigner()
	cfg := remote.Config{Addr: vm.SSHAddr(), User: "root", Signer: signer, HostKey: fixedKey(hostKey), Deadline: 60 * time.Second, Abort: vm.Exited(), MaxBannerWait: time.Second}
	c, err := remote.Dial(ctx, cfg) // wait for the boot outside the timing
	if err != nil {
		b.Fatal(err)
	}
	c.Close()
	req, _ := json.Marshal(wire.Request{Scenarios: scenario.Wire(scenarios(b, ""))})
	reqFile := filepath.Join(b.TempDir(), "req.json")
	os.WriteFile(reqFile, req, 0o644)
	known := filepath.Join(b.TempDir(), "known_hosts")
	hk, _ := os.ReadFile(img.HostKey)
	os.WriteFile(known, append([]byte("["+"127.0.0.1"+"]:"+port(vm.SSHAddr())+" "), hk...), 0o644)
	sshOpts := []string{"-i", img.ClientKey, "-o", "UserKnownHostsFile=" + known, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-P", port(vm.SSHAddr())}

	for b.Loop() {
		start := time.Now()
		c, err := remote.Dial(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		f, _ := os.Open(agentBin)
		if err := c.Upload(ctx, f, "/tmp/lab-agent-bench", 0o755); err != nil {
			b.Fatal(err)
		}
		f.Close()
		var out bytes.Buffer
		if rerr, terr := c.Run(ctx, "/tmp/lab-agent-bench", bytes.NewReader(req), &out, os.Stderr); rerr != nil || terr != nil {
			b.Fatal(rerr, terr)
		}
		c.Close()
		labTime := time.Since(start)

		start = time.Now()
		if o, err := exec.Command("scp", append(sshOpts, "-q", agentBin, "root@127.0.0.1:/tmp/lab-agent-scp")...).CombinedOutput(); err != nil {
			b.Fatalf("scp: %v %s", err, o)
		}
		sshArgs := append([]string{}, sshOpts...)
		sshArgs[len(sshArgs)-2] = "-p" // ssh spells the port option in lower case
		ssh := exec.Command("ssh", append(sshArgs, "root@127.0.0.1", "/tmp/lab-agent-scp")...)
		ssh.Stdin, _ = os.Open(reqFile)
		if o, err := ssh.Output(); err != nil || !bytes.Contains(o, []byte(`"done"`)) {
			b.Fatalf("ssh: %v", err)
		}
		opensshTime := time.Since(start)
		b.ReportMetric(labTime.Seconds(), "s-lab")
		b.ReportMetric(opensshTime.Seconds(), "s-openssh")
		b.ReportMetric(labTime.Seconds()/opensshTime.Seconds(), "ratio")
	}
}

func port(addr string) string {
	var p string
	fmt.Sscanf(addr[len("127.0.0.1:"):], "%s", &p)
	return p
}

// BenchmarkMainCommand runs the README's main command's targets (this
// machine and the three Linux microVMs, the whole catalog) with guests
// restored from snapshots and, in the same iteration, booted cold (lab run
// --cold), images cached; it prints both and their median ratio (target:
// restored at most 0.5x cold).
func BenchmarkMainCommand(b *testing.B) {
	targets := warm(b, "linux-5.10", "linux-6.1", "linux-6.12")
	targets = append([]target.Spec{defaultTarget(b, "local")}, targets...)
	scs := scenarios(b, "")
	run := func(cold bool) float64 {
		opts := orchestrator.Options{Targets: targets, Scenarios: scs, ResultsDir: b.TempDir(), CacheDir: cacheDir(b),
			Parallel: len(targets), Log: quietLog(), Cold: cold}
		start := time.Now()
		sum, err := orchestrator.Run(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range sum.Targets {
			if t.Status != "complete" {
				b.Fatalf("%s: %s %s", t.Name, t.Status, t.Error)
			}
		}
		return time.Since(start).Seconds()
	}
	run(false) // saves the snapshots, outside the timing
	var cold, restored, ratios []float64
	for b.Loop() {
		c, r := run(true), run(false)
		cold, restored, ratios = append(cold, c), append(restored, r), append(ratios, r/c)
	}
	b.ReportMetric(median(cold), "s-cold")
	b.ReportMetric(median(restored), "s-restored")
	b.ReportMetric(median(ratios), "ratio")
}
