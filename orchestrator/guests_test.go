//go:build linux

package orchestrator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"lab/image"
	"lab/internal/testenv"
	"lab/orchestrator"
	"lab/qemu"
	"lab/remote"
	"lab/rundir"
	"lab/scenario"
	"lab/target"
)

// These tests boot real Linux guests under QEMU (TCG) from Debian's
// packages. They need qemu-system-x86_64, apt-get and Debian's mirror, which
// the README's test command installs; only -short skips them.

func needGuests(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU guests; skipped with -short")
	}
}

// qemuProcs lists QEMU processes whose command line contains s.
func qemuProcs(s string) []string {
	return testenv.Processes("cmdline", func(b []byte) bool {
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		return strings.Contains(cmd, "qemu-system") && strings.Contains(cmd, s)
	})
}

// noPrivateKeys fails the test if any file in a run directory holds a
// private key: run directories are published (CI artifacts, results/).
func noPrivateKeys(t *testing.T, runDir string) {
	t.Helper()
	filepath.WalkDir(runDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("reading %s: %v", path, err)
			return nil
		}
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a private key", path)
		}
		return nil
	})
}

// noQEMULeft fails the test if a QEMU of this run outlived it.
func noQEMULeft(t *testing.T, runDir string) {
	t.Helper()
	if left := qemuProcs(runDir); len(left) > 0 {
		t.Errorf("QEMU processes outlived the run: %v", left)
	}
}

func runOpts(t *testing.T, targets []target.Spec, scs []scenario.Scenario) orchestrator.Options {
	return orchestrator.Options{
		Targets:    targets,
		Scenarios:  scs,
		ResultsDir: t.TempDir(),
		CacheDir:   cacheDir(t),
		Parallel:   len(targets),
		Log:        quietLog(),
	}
}

// TestThreeKernels runs part of the catalog on the three Debian kernels and
// the local machine at once, as the README's main command does.
func TestThreeKernels(t *testing.T) {
	needGuests(t)
	targets := []target.Spec{defaultTarget(t, "local"), defaultTarget(t, "linux-5.10"), defaultTarget(t, "linux-6.1"), defaultTarget(t, "linux-6.12")}
	scs := scenarios(t, "bsd-table/*,timewait/*,linux/reuseport-other-user/*,distribution/udp-reuseport")
	sum, err := orchestrator.Run(context.Background(), runOpts(t, targets, scs))
	if err != nil {
		t.Fatal(err)
	}
	defer noQEMULeft(t, sum.Dir)
	defer noPrivateKeys(t, sum.Dir)
	d, err := rundir.Read(sum.Dir)
	if err != nil {
		t.Fatal(err)
	}
	wantRelease := map[string]string{"linux-5.10": "5.10.", "linux-6.1": "6.1.", "linux-6.12": "6.12."}
	for _, tr := range d.Targets {
		t.Run(tr.Name, func(t *testing.T) {
			if tr.Status != rundir.StatusComplete {
				t.Fatalf("status %s: %s", tr.Status, tr.Error)
			}
			if len(tr.Results) != len(scs) {
				t.Errorf("%d results for %d scenarios", len(tr.Results), len(scs))
			}
			if w := wantRelease[tr.Name]; w != "" && !strings.HasPrefix(tr.Env.KernelRelease, w) {
				t.Errorf("kernel %s, want %s*", tr.Env.KernelRelease, w)
			}
			for _, r := range tr.Results {
				// Observed on every Linux kernel measured: SO_REUSEPORT
				// across two users is refused, and the guests have the
				// second user, so these are measured, never skipped.
				if strings.HasPrefix(r.ID, "linux/reuseport-other-user/") && r.Outcome != "EADDRINUSE" {
					t.Errorf("%s: %s (%s), observed EADDRINUSE on every Linux", r.ID, r.Outcome, r.Reason)
				}
			}
			if tr.Provider == "qemu" {
				if _, err := os.Stat(filepath.Join(sum.Dir, tr.Name+".console.log")); err != nil {
					t.Errorf("console log: %v", err)
				}
				var names []string
				for _, p := range tr.Phases {
					names = append(names, p.Name)
				}
				if got := strings.Join(names, ","); got != "image,boot,connect,build,upload,run,teardown" {
					t.Errorf("phases %s", got)
				}
			}
		})
	}
}

// TestQEMUKilledMidRun kills a guest's QEMU during the upload and while the
// agent runs: the target fails at once with a clear error naming the phase
// (no reconnect to a dead guest), what was measured is kept, and nothing is
// left running.
func TestQEMUKilledMidRun(t *testing.T) {
	needGuests(t)
	scs := scenarios(t, "")
	for _, tc := range []struct {
		phase string
		at    int // results measured before the kill
	}{
		{"upload", 0},
		{"run", 5},
	} {
		t.Run(tc.phase, func(t *testing.T) {
			opts := runOpts(t, []target.Spec{defaultTarget(t, "linux-6.1")}, scs)
			if tc.phase == "upload" {
				opts.Providers = uploadingQEMU()
			}
			var once sync.Once
			killed := make(chan int, 1)
			measured, kept := 0, 0
			defer func() {
				recordFault("QEMU killed ("+tc.phase+")", len(killed) == 1, !t.Failed(), measured, kept)
			}()
			opts.Progress = progressFunc(func(s orchestrator.TargetState) {
				measured = max(measured, s.Done)
				if s.Phase != tc.phase || s.Done < tc.at {
					return
				}
				once.Do(func() {
					procs := qemuProcs(opts.ResultsDir)
					if len(procs) != 1 {
						t.Errorf("want one QEMU of this run, found %v", procs)
						return
					}
					var pid int
					if _, err := fmtSscan(procs[0], &pid); err == nil {
						syscall.Kill(pid, syscall.SIGKILL)
						killed <- pid
					}
				})
			})
			sum, err := orchestrator.Run(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer noQEMULeft(t, sum.Dir)
			if len(killed) == 0 {
				t.Fatalf("QEMU was never killed: the run left the %s phase first", tc.phase)
			}
			tr := sum.Targets[0]
			if tr.Status != rundir.StatusFailed {
				t.Fatalf("status %s, want failed", tr.Status)
			}
			t.Logf("error: %s", tr.Error)
			for _, want := range []string{"linux-6.1, " + tc.phase, "QEMU process exited"} {
				if !strings.Contains(tr.Error, want) {
					t.Errorf("error %q does not say %q", tr.Error, want)
				}
			}
			if reconnectedToDeadGuest(tr.Error) {
				t.Errorf("error %q: lab reconnected to a guest it knew had died", tr.Error)
			}
			d, err := rundir.Read(sum.Dir)
			if err != nil {
				t.Fatal(err)
			}
			kept = len(d.Targets[0].Results)
			if kept < max(tc.at, measured) || kept >= len(scs) {
				t.Errorf("%d results kept; want the %d measured before the kill", kept, max(tc.at, measured))
			}
		})
	}
}

// TestGuestNeverOpensSSH boots a guest whose init is a shell instead of
// lab's init, so sshd never starts: the connect deadline ends the wait, the
// error says so and carries the console's last lines, and QEMU is stopped.
func TestGuestNeverOpensSSH(t *testing.T) {
	needGuests(t)
	tg := oneTarget(t, "{name: linux-6.1, provider: qemu, suite: bookworm, kernel: linux-image-cloud-amd64, kernel_args: rdinit=/bin/sh, boot_timeout: 10s}")
	injected := false
	defer func() { recordFault("guest never opens SSH (connect)", injected, !t.Failed(), 0, 0) }()
	injected = true // the fault is the guest's command line
	sum, err := orchestrator.Run(context.Background(), runOpts(t, []target.Spec{tg}, scenarios(t, "bsd-table/row1/*")))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	noQEMULeft(t, sum.Dir)
	tr := sum.Targets[0]
	if tr.Status != rundir.StatusFailed {
		t.Fatalf("status %s, want failed", tr.Status)
	}
	t.Logf("error: %s", tr.Error)
	for _, want := range []string{"connect", "SSH did not come up", "last console lines"} {
		if !strings.Contains(tr.Error, want) {
			t.Errorf("error does not say %q:\n%s", want, tr.Error)
		}
	}
	// The shell that replaced init complains on the console that it has no
	// controlling terminal: proof the tail is the guest's console.
	if _, tail, _ := strings.Cut(tr.Error, "last console lines"); !strings.Contains(tail, "job control") {
		t.Errorf("error carries no console output:\n%s", tr.Error)
	}
}

// TestWrongHostKeyRefused boots a real guest and dials it pinning a key that
// is not its own: the connection is refused at once, not retried.
func TestWrongHostKeyRefused(t *testing.T) {
	needGuests(t)
	injected := false
	defer func() { recordFault("wrong host key pinned (connect)", injected, !t.Failed(), 0, 0) }()
	ctx := context.Background()
	spec, _ := image.DefaultSpec("linux-6.1")
	img, err := image.Build(ctx, spec, cacheDir(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := qemu.Start(ctx, qemu.Config{Arch: "amd64", Kernel: img.Kernel, Initrd: img.Initrd, Append: image.KernelCmdline, MemoryMB: 256, ConsolePath: filepath.Join(t.TempDir(), "console.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop(context.Background()) })
	signer, err := img.ClientSigner()
	if err != nil {
		t.Fatal(err)
	}
	// First prove the guest is reachable with its real key ...
	real, err := img.HostPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := remote.Dial(ctx, remote.Config{Addr: vm.SSHAddr(), User: "root", Signer: signer, HostKey: fixedKey(real), Deadline: 60 * time.Second, Abort: vm.Exited(), MaxBannerWait: time.Second})
	if err != nil {
		t.Fatalf("dial with the pinned key: %v", err)
	}
	c.Close()
	// ... then pin another.
	injected = true
	start := time.Now()
	_, err = remote.Dial(ctx, remote.Config{Addr: vm.SSHAddr(), User: "root", Signer: signer, HostKey: fixedKey(signer.PublicKey()), Deadline: 30 * time.Second, Abort: vm.Exited()})
	if !errors.Is(err, remote.ErrHostKey) {
		t.Fatalf("dial pinning the wrong key: %v, want ErrHostKey", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusal took %s: a host key mismatch must not be retried", d)
	}
}

// TestInterruptDuringRun sends SIGINT to a real lab process while a guest
// runs the catalog: lab exits 4, keeps the results, marks the run
// interrupted and leaves no QEMU behind.
func TestInterruptDuringRun(t *testing.T) {
	needGuests(t)
	measured, kept := 0, 0
	defer func() { recordFault("SIGINT in run (lab exit 4)", measured > 0, !t.Failed(), measured, kept) }()
	bin := filepath.Join(t.TempDir(), "lab")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/lab").CombinedOutput(); err != nil {
		t.Fatalf("building lab: %v\n%s", err, out)
	}
	out := t.TempDir()
	cmd := exec.Command(bin, "run", "--targets", "linux-6.1", "--scenarios", "scenarios.yaml", "--out", out, "--cache", cacheDir(t))
	cmd.Dir = ".."
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	// Interrupt once the agent has reported a result.
	if measured = waitForResult(out, 90*time.Second); measured == 0 {
		t.Fatalf("no result within 90 s:\n%s", stderr.String())
	}
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Errorf("lab exited with %v, want exit status 4\n%s", err, stderr.String())
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
	if d.Run.Status != rundir.StatusInterrupted {
		t.Errorf("run status %s, want interrupted", d.Run.Status)
	}
	tr := d.Targets[0]
	if kept = len(tr.Results); tr.Status != rundir.StatusInterrupted || kept < measured {
		t.Errorf("target status %s with %d results; want interrupted with the %d measured before the signal", tr.Status, kept, measured)
	}
}

func fmtSscan(s string, pid *int) (int, error) { return fmt.Sscan(strings.SplitN(s, ":", 2)[0], pid) }

// recordFault adds a row to the fault suite's summary table when that suite
// is built in (-tags faults) and does nothing otherwise. The guest tests in
// this file that inject a fault (QEMU killed, no SSH, a wrong host key,
// SIGINT) call it, so the fault suite runs them too instead of copying them.
var recordFault = func(fault string, injected, survived bool, measured, kept int) {}

func fixedKey(k ssh.PublicKey) ssh.HostKeyCallback { return ssh.FixedHostKey(k) }

// reconnectedToDeadGuest says whether a target's error shows lab trying to
// reconnect ("...; then, connect: ...") after it had already seen the
// guest's QEMU exit. A reconnect after a plain dropped connection is right,
// even if the guest turns out to have died meanwhile.
func reconnectedToDeadGuest(e string) bool {
	before, _, found := strings.Cut(e, "; then, ")
	return found && strings.Contains(before, "QEMU process exited")
}

// waitForResult waits up to timeout for linux-6.1's results under out (its
// journal while it runs) to hold a result and returns how many they hold.
func waitForResult(out string, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		runs, _ := filepath.Glob(filepath.Join(out, "*", "run.json"))
		if len(runs) == 1 {
			if d, err := rundir.Read(filepath.Dir(runs[0])); err == nil {
				for _, tr := range d.Targets {
					if tr.Name == "linux-6.1" && len(tr.Results) > 0 {
						return len(tr.Results)
					}
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0
}

// uploadingQEMU replaces the qemu provider with one that leaves the agent
// out of the guest's initramfs (and so boots without a snapshot), so that
// the agent is uploaded as to every machine lab did not build: the upload
// phase's faults need it.
func uploadingQEMU() map[string]target.Provider {
	real, _ := target.Lookup("qemu")
	return map[string]target.Provider{"qemu": uploading{real}}
}

type uploading struct{ target.Provider }

func (p uploading) Start(ctx context.Context, s target.Spec, env target.Env) (*target.Instance, error) {
	env.Agent = nil
	return p.Provider.Start(ctx, s, env)
}
