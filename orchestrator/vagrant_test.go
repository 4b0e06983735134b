//go:build linux

package orchestrator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"lab/diskimage"
	"lab/orchestrator"
	"lab/rundir"
	"lab/target"
)

// vagrantNetnsEnv carries TestVagrantLibvirt's settings to the half of it
// that runs inside the network namespace.
const vagrantNetnsEnv = "LAB_TEST_VAGRANT_NETNS"

type vagrantNetnsConfig struct {
	CacheDir, ResultsDir string
	HostNetns            string // the test's own network namespace, /proc/PID/ns/net
}

// TestVagrantLibvirt boots lab's own box through real `vagrant up` with
// vagrant-libvirt under QEMU (TCG where KVM does not work), inside a
// network namespace it makes, runs scenarios on it through the vagrant
// provider, and removes everything it made, also when it fails.
//
// The namespace holds libvirtd, virtlogd, the NAT network vagrant-libvirt
// makes (bridge, dnsmasq, iptables rules) and everything that talks to the
// guest: vagrant and lab's SSH run in TestVagrantInNamespace, which this
// test starts as `ip netns exec NS <test binary> -test.run
// TestVagrantInNamespace`. Nothing reaches the guest's network from outside
// the namespace, and no traffic goes anywhere else. libvirtd's other state
// (/run/libvirt, /etc/libvirt) is the host's, so the test refuses to run
// next to a libvirtd that is already running.
func TestVagrantLibvirt(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a Vagrant machine under QEMU; skipped with -short")
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Fatal("needs root on Linux (network namespaces, libvirtd)")
	}
	var missing []string
	for _, p := range []string{"vagrant", "virsh", "libvirtd", "virtlogd", "ip", "nsenter", "dnsmasq", "iptables", "qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.vfat", "mcopy"} {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing %v: scripts/setup installs vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients dnsmasq-base iptables qemu-system-x86 qemu-utils mmdebstrap grub-pc-bin dosfstools mtools", missing)
	}
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "version").CombinedOutput(); err == nil {
		t.Fatalf("a libvirtd is already running on this host; this test runs its own inside a network namespace and cannot share /run/libvirt with it (scripts/test stops systemd's for the tests; by hand: systemctl stop libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket virtlogd.service virtlogd.socket virtlogd-admin.socket):\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	log := hclog.New(&hclog.LoggerOptions{Name: "vagrant-test", Level: hclog.Info, Output: testWriter{t}})

	cache := os.Getenv("LAB_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "lab-cache")
	}
	start := time.Now()
	box, err := diskimage.BuildBox(ctx, cache, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("box %s ready in %v", box.File, time.Since(start).Round(100*time.Millisecond))

	// QEMU runs as libvirt-qemu: everything it reads is under a 0755
	// directory, not the 0700 ones t.TempDir makes.
	base, err := os.MkdirTemp("/var/tmp", "lab-vagrant-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	vagrantHome := filepath.Join(base, "vagrant.d")
	poolDir := filepath.Join(base, "pool")
	for _, d := range []string{base, vagrantHome, poolDir, filepath.Join(base, "cache"), filepath.Join(base, "results")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o755)
	}
	t.Setenv("VAGRANT_HOME", vagrantHome)
	t.Setenv("VAGRANT_CHECKPOINT_DISABLE", "1")

	// What lab targets says before the box is added, and after.
	spec := oneTarget(t, "{name: vagrant-lab-debian-12, provider: vagrant, box: "+box.Name+", os: linux}")
	if err := target.Check(spec, target.Env{CacheDir: cacheDir(t)}); err == nil || !strings.Contains(err.Error(), "box lab/debian-12 (any version) for libvirt is not added") || !strings.Contains(err.Error(), "libvirtd does not answer") {
		t.Errorf("Check before vagrant box add and libvirtd: %v", err)
	}
	step := time.Now()
	mustRun(t, "vagrant", "box", "add", "--name", box.Name, box.File)
	t.Logf("vagrant box add: %v", time.Since(step).Round(100*time.Millisecond))

	ns := fmt.Sprintf("lab-vagrant-%d", os.Getpid())
	mustRun(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		// Whatever still runs in the namespace was started by this test
		// (a dnsmasq of a network nobody destroyed): end it by its PID.
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil {
				t.Logf("ending pid %d left in the namespace", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", ns, err, out)
		}
	})
	mustRun(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	startDaemon(t, ns, "virtlogd", "-p", filepath.Join(base, "virtlogd.pid"))
	startDaemon(t, ns, "libvirtd", "-p", filepath.Join(base, "libvirtd.pid"))
	for i := 0; ; i++ {
		if exec.Command("virsh", "-c", "qemu:///system", "version").Run() == nil {
			break
		}
		if i == 300 {
			t.Fatal("libvirtd did not answer within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := target.Check(spec, target.Env{CacheDir: cacheDir(t)}); err != nil {
		t.Errorf("Check with the box added and libvirtd up: %v", err)
	}
	pool := ns
	mustRun(t, "virsh", "pool-define-as", pool, "dir", "--target", poolDir)
	t.Cleanup(func() { sweepLibvirt(t, pool) }) // runs before the daemons stop
	mustRun(t, "virsh", "pool-start", pool)
	t.Setenv("LAB_LIBVIRT_POOL", pool)

	cfg, _ := json.Marshal(vagrantNetnsConfig{CacheDir: filepath.Join(base, "cache"), ResultsDir: filepath.Join(base, "results"), HostNetns: fmt.Sprintf("/proc/%d/ns/net", os.Getpid())})
	wd, _ := os.Getwd()
	inner := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestVagrantInNamespace$", "-test.v", "-test.count=1", "-test.timeout=35m")
	inner.Dir = wd
	inner.Env = append(os.Environ(), vagrantNetnsEnv+"="+string(cfg))
	inner.Cancel = func() error { return inner.Process.Signal(os.Interrupt) }
	inner.WaitDelay = 2 * time.Minute
	out, err := inner.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	inner.Stderr = inner.Stdout
	if err := inner.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		t.Log("  | " + sc.Text())
	}
	if err := inner.Wait(); err != nil {
		t.Errorf("the test inside the namespace failed: %v", err)
	}
	if doms := strings.Fields(virsh(t, "list", "--all", "--name")); len(doms) > 0 {
		t.Errorf("domains left after the runs: %v", doms)
	}
	if nets := virsh(t, "net-list", "--name"); strings.Contains(nets, "vagrant-libvirt") {
		t.Errorf("vagrant-libvirt's network is still active after vagrant destroy")
	}
}

// TestVagrantInNamespace is the half of TestVagrantLibvirt that runs in its
// network namespace: two lab runs on one machine, the first keeping it up
// (keep: true), the second reusing and destroying it.
func TestVagrantInNamespace(t *testing.T) {
	raw := os.Getenv(vagrantNetnsEnv)
	if raw == "" {
		t.Skip("the half of TestVagrantLibvirt that runs inside its network namespace; that test starts it")
	}
	var cfg vagrantNetnsConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "lab", Level: hclog.Debug, Output: testWriter{t}})
	run := func(keep bool, only string) rundir.Target {
		spec := oneTarget(t, fmt.Sprintf("{name: vagrant-lab-debian-12, provider: vagrant, box: lab/debian-12, os: linux, keep: %v}", keep))
		sum, err := orchestrator.Run(context.Background(), orchestrator.Options{
			Targets: []target.Spec{spec}, Scenarios: scenarios(t, only), ResultsDir: cfg.ResultsDir, CacheDir: cfg.CacheDir,
			Parallel: 1, Log: log,
		})
		if err != nil {
			t.Fatal(err)
		}
		tr := sum.Targets[0]
		var ph []string
		for _, p := range tr.Phases {
			ph = append(ph, fmt.Sprintf("%s %.1fs", p.Name, float64(p.Millis)/1000))
		}
		t.Logf("run (keep %v): status %s, phases: %s", keep, tr.Status, strings.Join(ph, ", "))
		if tr.Status != rundir.StatusComplete {
			t.Fatalf("status %s: %s", tr.Status, tr.Error)
		}
		if tr.Env == nil || tr.Env.OS != "linux" || !strings.HasPrefix(tr.Env.KernelRelease, "6.1.") {
			t.Errorf("env %+v; want Debian 12's Linux 6.1", tr.Env)
		}
		return tr
	}

	first := run(true, "bsd-table/row1/*,linux/reuseport-other-user/tcp")
	want := map[string]string{
		"bsd-table/row1/off": "EADDRINUSE",
		"bsd-table/row1/on":  "EADDRINUSE",
		// The provider made labother with useradd, so the agent (run with
		// sudo) could open B as another user.
		"linux/reuseport-other-user/tcp": "EADDRINUSE",
	}
	checkOutcomes(t, first, want)
	if first.Env != nil && first.Env.OtherUser != "labother" {
		t.Errorf("other user %q (%s); want labother, made by the provider", first.Env.OtherUser, first.Env.OtherUserNote)
	}
	if !hasPhase(first, "up") || !hasPhase(first, "boot") || !hasPhase(first, "connect") {
		t.Errorf("phases %v; want up, boot, connect", first.Phases)
	}
	// The guest's network exists in the namespace only: the test's own
	// namespace has no route to it.
	if routes, err := exec.Command("nsenter", "--net="+cfg.HostNetns, "ip", "route", "show").Output(); err != nil {
		t.Errorf("reading the host namespace's routes: %v", err)
	} else if strings.Contains(string(routes), "192.168.121.") {
		t.Errorf("the host's namespace has a route to the guest network:\n%s", routes)
	}
	// The box is lab's, so the host key was pinned: no known_hosts recorded.
	if _, err := os.Stat(filepath.Join(cfg.CacheDir, "vagrant", "vagrant-lab-debian-12", "known_hosts")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("known_hosts for a box whose key lab pins: %v", err)
	}

	// The second run takes the whole catalog: the box runs Debian 12's
	// kernel, so every outcome must be what the linux-6.1 microVM showed in
	// the reference run (results/reference), reached another way.
	second := run(false, "")
	ref, err := rundir.Read(filepath.Join("..", "results", "reference"))
	if err != nil {
		t.Fatal(err)
	}
	observed := map[string]string{}
	for _, tr := range ref.Targets {
		if tr.Name == "linux-6.1" {
			for _, r := range tr.Results {
				observed[r.ID] = r.Outcome
			}
		}
	}
	if len(observed) == 0 {
		t.Fatal("results/reference has no linux-6.1 results")
	}
	if n := len(scenarios(t, "")); len(second.Results) != n {
		t.Errorf("%d results for the %d scenarios of the catalog", len(second.Results), n)
	}
	for _, r := range second.Results {
		if want, ok := observed[r.ID]; ok && r.Outcome != want {
			t.Errorf("%s: %s (%s); the linux-6.1 microVM showed %s", r.ID, r.Outcome, r.Reason, want)
		}
	}
	if !hasPhase(second, "reuse") || hasPhase(second, "up") {
		t.Errorf("phases %v; want the kept machine reused, not brought up", second.Phases)
	}
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "list", "--all", "--name").Output(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("domains after the second run (keep: false): %q %v", out, err)
	}
}

func checkOutcomes(t *testing.T, tr rundir.Target, want map[string]string) {
	t.Helper()
	if len(tr.Results) != len(want) {
		t.Errorf("%d results, want %d", len(tr.Results), len(want))
	}
	for _, r := range tr.Results {
		if r.Outcome != want[r.ID] {
			t.Errorf("%s: %s (%s), want %s", r.ID, r.Outcome, r.Reason, want[r.ID])
		}
	}
}

func hasPhase(tr rundir.Target, name string) bool {
	for _, p := range tr.Phases {
		if p.Name == name {
			return true
		}
	}
	return false
}

// startDaemon runs a libvirt daemon in the foreground in namespace ns
// (`ip netns exec` execs it, so the child's PID is the daemon's) and stops
// it by that PID when the test ends.
func startDaemon(t *testing.T, ns, name string, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	logFile, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A test binary that dies takes the daemon with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Logf("%s started in %s, pid %d", name, ns, cmd.Process.Pid)
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("%s (pid %d) ignored SIGTERM; killing it", name, cmd.Process.Pid)
			cmd.Process.Kill()
			<-done
		}
		logFile.Close()
	})
}

// sweepLibvirt removes what the test's libvirtd may still hold: domains,
// vagrant-libvirt's network, the pool's volumes (the base box volume
// outlives vagrant destroy) and the pool.
func sweepLibvirt(t *testing.T, pool string) {
	for _, d := range strings.Fields(virsh(t, "list", "--all", "--name")) {
		t.Logf("removing domain %s", d)
		virsh(t, "destroy", d)
		virsh(t, "undefine", d, "--nvram")
	}
	for _, n := range strings.Fields(virsh(t, "net-list", "--all", "--name")) {
		if n == "vagrant-libvirt" {
			virsh(t, "net-destroy", n)
			virsh(t, "net-undefine", n)
		}
	}
	for _, line := range strings.Split(virsh(t, "vol-list", "--pool", pool), "\n")[2:] {
		if f := strings.Fields(line); len(f) > 0 {
			virsh(t, "vol-delete", "--pool", pool, f[0])
		}
	}
	virsh(t, "pool-destroy", pool)
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "pool-undefine", pool).CombinedOutput(); err != nil {
		t.Errorf("pool-undefine %s: %v %s", pool, err, out)
	}
}

// virsh runs a virsh command against the test's libvirtd; its output, or
// "" when it fails (sweeping tolerates what is already gone).
func virsh(t *testing.T, args ...string) string {
	out, err := exec.Command("virsh", append([]string{"-c", "qemu:///system"}, args...)...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// testWriter sends a logger's lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
