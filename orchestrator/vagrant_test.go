//go:build linux

package orchestrator

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"lab/rundir"
)

// The first tests here are fakes: they check the commands and files lab
// makes for operating systems that cannot boot on lab's build machines,
// without any of them. TestVagrantLibvirt at the end boots a real machine.

// TestFakeGuestOtherUserCommand: the second user is made with each OS's own
// tool, and only where it does not exist yet.
func TestFakeGuestOtherUserCommand(t *testing.T) {
	for _, tc := range []struct {
		goos, want, why string
	}{
		{"linux", "id labother >/dev/null 2>&1 || sudo -n useradd -M -s /usr/sbin/nologin labother", ""},
		{"freebsd", "id labother >/dev/null 2>&1 || sudo -n pw useradd -n labother -d /nonexistent -s /usr/sbin/nologin", ""},
		{"openbsd", "id labother >/dev/null 2>&1 || sudo -n useradd -s /sbin/nologin labother", ""},
		{"netbsd", "id labother >/dev/null 2>&1 || sudo -n useradd -s /sbin/nologin labother", ""},
		{"illumos", "id labother >/dev/null 2>&1 || sudo -n /usr/sbin/useradd -s /bin/false labother", ""},
		{"windows", "", "does not implement user=other"},
		{"plan9", "", "does not know how to add a user on plan9"},
	} {
		t.Run(tc.goos, func(t *testing.T) {
			cmd, why := otherUserCommand(tc.goos)
			if cmd != tc.want {
				t.Errorf("command %q, want %q", cmd, tc.want)
			}
			if (tc.why == "") != (why == "") || !strings.Contains(why, tc.why) {
				t.Errorf("reason %q, want one containing %q", why, tc.why)
			}
		})
	}
}

// TestFakeGuestAgentCommand: how a vagrant machine runs the uploaded agent
// (sshMachine's command: sudo on Unix boxes, cmd.exe on Windows).
func TestFakeGuestAgentCommand(t *testing.T) {
	for _, tc := range []struct {
		name, goos, dst string
		sudo            bool
		want            string
	}{
		{"freebsd box", "freebsd", "/tmp/lab-agent-0a1b", true, "sudo -n '/tmp/lab-agent-0a1b'; s=$?; rm -f '/tmp/lab-agent-0a1b'; exit $s"},
		{"illumos box", "illumos", "/tmp/lab-agent-0a1b", true, "sudo -n '/tmp/lab-agent-0a1b'; s=$?; rm -f '/tmp/lab-agent-0a1b'; exit $s"},
		{"no sudo", "linux", "/tmp/it's", false, `'/tmp/it'\''s'; s=$?; rm -f '/tmp/it'\''s'; exit $s`},
		{"windows box", "windows", "/C:/Windows/Temp/lab-agent-0a1b.exe", false, `C:\Windows\Temp\lab-agent-0a1b.exe`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := agentCommand(tc.goos, tc.dst, tc.sudo); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestParseMachineReadable(t *testing.T) {
	target, typ, data, ok := parseMachineReadable(`1795601700,vtest,ui,info,==> vtest:  -- Image(vda):        /p/vagrant_vtest.img%!(VAGRANT_COMMA) virtio\n`)
	if !ok || target != "vtest" || typ != "ui" || len(data) != 2 || data[0] != "info" || data[1] != "==> vtest:  -- Image(vda):        /p/vagrant_vtest.img, virtio\n" {
		t.Errorf("got %q %q %q %v", target, typ, data, ok)
	}
	if _, _, _, ok := parseMachineReadable("Bringing machine up"); ok {
		t.Error("a line without a timestamp parsed")
	}
	out := "1795601700,,error-exit,Vagrant::Errors::BoxNotFound,The box 'x' could not be found.\n"
	if got := vagrantError(out); got != "The box 'x' could not be found." {
		t.Errorf("vagrantError = %q", got)
	}
}

// TestUpPhase uses the messages of a real vagrant-libvirt `up` (and
// VirtualBox's wording, which is a fake here).
func TestUpPhase(t *testing.T) {
	for msg, want := range map[string]string{
		"==> vtest: Uploading base box image as volume into Libvirt storage...":        "box-import",
		"==> vtest: Creating image (snapshot of base box volume).":                     "create",
		"==> vtest: Starting domain.":                                                  "boot",
		"==> default: Booting VM...":                                                   "boot",
		"==> vtest: Waiting for domain to get an IP address...":                        "dhcp",
		"==> vtest: Waiting for machine to boot. This may take a few minutes...":       "ssh-wait",
		"    vtest: Vagrant insecure key detected. Vagrant will automatically replace": "key",
		"==> vtest:  -- Cpus:              1":                                          "",
	} {
		if got := upPhase(msg); got != want {
			t.Errorf("upPhase(%q) = %q, want %q", msg, got, want)
		}
	}
}

func TestParseSSHConfig(t *testing.T) {
	out := `Host vtest
  HostName 192.168.121.96
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  IdentityFile "/var/tmp/with space/private_key"
  IdentityFile /root/.vagrant.d/insecure_private_key
  IdentitiesOnly yes
`
	c, err := parseSSHConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	want := sshConfig{HostName: "192.168.121.96", User: "vagrant", Port: 22, IdentityFiles: []string{"/var/tmp/with space/private_key", "/root/.vagrant.d/insecure_private_key"}}
	if c.HostName != want.HostName || c.User != want.User || c.Port != want.Port || !slices.Equal(c.IdentityFiles, want.IdentityFiles) {
		t.Errorf("got %+v, want %+v", c, want)
	}
	if _, err := parseSSHConfig("Host x\n  User vagrant\n"); err == nil {
		t.Error("ssh-config without HostName parsed")
	}
}

// TestLineup reads the real vagrant/Vagrantfile: every machine has a box
// for both providers, pinned by version, and an OS lab builds the agent
// for.
func TestLineup(t *testing.T) {
	data, err := os.ReadFile("../vagrant/Vagrantfile")
	if err != nil {
		t.Fatal(err)
	}
	rows := ParseLineup(data)
	providers := map[string][]string{}
	for _, r := range rows {
		providers[r.Machine] = append(providers[r.Machine], r.Provider)
		if r.Version == "" {
			t.Errorf("%s (%s): box %s is not pinned by version", r.Machine, r.Provider, r.Box)
		}
		switch r.OS {
		case "freebsd", "openbsd", "netbsd", "linux", "illumos", "windows":
		default:
			t.Errorf("%s: os %q", r.Machine, r.OS)
		}
	}
	for _, m := range []string{"vagrant-freebsd-14", "vagrant-openbsd-7", "vagrant-netbsd-9", "vagrant-linux-3.8", "vagrant-linux-5.4", "vagrant-omnios", "vagrant-windows-2022"} {
		got := providers[m]
		slices.Sort(got)
		if !slices.Equal(got, []string{"libvirt", "virtualbox"}) {
			t.Errorf("%s: providers %v, want libvirt and virtualbox", m, got)
		}
	}
	// lab.yaml's vagrant targets are machines of the lineup.
	ts, err := LoadTargets("../lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range ts {
		if tg.Provider != "vagrant" {
			continue
		}
		if _, err := resolveBox(tg, rows); err != nil {
			t.Errorf("lab.yaml target %s: %v", tg.Name, err)
		}
	}
}

// TestVagrantfileValidates has Vagrant read the lineup Vagrantfile, by
// hand and in lab mode for each kind of guest.
func TestVagrantfileValidates(t *testing.T) {
	if testing.Short() {
		t.Skip("runs vagrant; skipped with -short")
	}
	if _, err := exec.LookPath("vagrant"); err != nil {
		t.Fatal("scripts/setup installs vagrant")
	}
	home := t.TempDir()
	for _, env := range [][]string{
		nil,
		{"LAB_MACHINE=x", "LAB_BOX=a/b", "LAB_OS=windows", "LAB_CONSOLE_LOG=/tmp/c.log", "LAB_MEMORY_MB=4096", "LAB_CPUS=2", "LAB_BOOT_TIMEOUT=900"},
		{"LAB_MACHINE=x", "LAB_BOX=a/b", "LAB_BOX_VERSION=1.0", "LAB_OS=illumos", "LAB_LIBVIRT_DRIVER=qemu", "LAB_LIBVIRT_POOL=p"},
	} {
		cmd := exec.Command("vagrant", "validate")
		cmd.Dir = "../vagrant"
		cmd.Env = append(os.Environ(), append([]string{"VAGRANT_HOME=" + home, "VAGRANT_CHECKPOINT_DISABLE=1"}, env...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("vagrant validate with %v: %v\n%s", env, err, out)
		}
	}
}

func TestResolveBox(t *testing.T) {
	lineup := []LineupBox{
		{"vagrant-freebsd-14", "libvirt", "generic/freebsd14", "4.3.12", "freebsd"},
		{"vagrant-freebsd-14", "virtualbox", "generic/freebsd14", "4.3.11", "freebsd"},
	}
	for _, tc := range []struct {
		name    string
		t       Target
		want    vagrantBox
		wantErr string
	}{
		{"lineup default provider", Target{Name: "vagrant-freebsd-14"}, vagrantBox{"generic/freebsd14", "4.3.12", "libvirt", "freebsd"}, ""},
		{"lineup virtualbox", Target{Name: "vagrant-freebsd-14", VagrantProvider: "virtualbox"}, vagrantBox{"generic/freebsd14", "4.3.11", "virtualbox", "freebsd"}, ""},
		{"box overrides, version does not carry over", Target{Name: "vagrant-freebsd-14", Box: "bento/freebsd-14"}, vagrantBox{"bento/freebsd-14", "", "libvirt", "freebsd"}, ""},
		{"own box", Target{Name: "mine", Box: "lab/debian-12", OS: "linux"}, vagrantBox{"lab/debian-12", "", "libvirt", "linux"}, ""},
		{"unknown machine", Target{Name: "nope"}, vagrantBox{}, "no box"},
		{"own box without os", Target{Name: "mine", Box: "x/y"}, vagrantBox{}, "needs \"os\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveBox(&tc.t, lineup)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestVagrantTargetFields(t *testing.T) {
	_, err := ParseTargets("t.yaml", []byte(`targets:
  - name: a
    provider: vagrant
    vagrant_provider: hyperv
  - name: b
    provider: vagrant
    box: x/y
  - name: c
    provider: vagrant
    box_version: "1.0"
  - name: d
    provider: wine
    os: linux
`))
	for _, want := range []string{
		`t.yaml:2:5: target "a": vagrant_provider "hyperv"`,
		`t.yaml:5:5: target "b": a target with its own "box" needs "os"`,
		`t.yaml:8:5: target "c": "box_version" needs "box"`,
		`t.yaml:11:5: target "d": a wine target runs the windows agent`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("problems %v; want %q", err, want)
		}
	}
	ts, err := ParseTargets("t.yaml", []byte("targets:\n  - {name: v, provider: vagrant, box: lab/debian-12, box_version: \"0\", os: linux, keep: true, vagrant_provider: libvirt}\n"))
	if err != nil || !ts[0].Keep || ts[0].Box != "lab/debian-12" || ts[0].BoxVersion != "0" {
		t.Errorf("got %+v, %v", ts, err)
	}
}

// TestBoxDir finds boxes in Vagrant 2.3's layout and 2.4's, which adds an
// architecture directory.
func TestBoxDir(t *testing.T) {
	home := t.TempDir()
	for _, d := range []string{"boxes/lab-VAGRANTSLASH-debian-12/0/libvirt", "boxes/generic-VAGRANTSLASH-freebsd14/4.3.12/amd64/libvirt"} {
		os.MkdirAll(filepath.Join(home, d), 0o755)
	}
	for _, tc := range []struct {
		b    vagrantBox
		want string
	}{
		{vagrantBox{Name: "lab/debian-12", Provider: "libvirt"}, "boxes/lab-VAGRANTSLASH-debian-12/0/libvirt"},
		{vagrantBox{Name: "lab/debian-12", Version: "0", Provider: "libvirt"}, "boxes/lab-VAGRANTSLASH-debian-12/0/libvirt"},
		{vagrantBox{Name: "generic/freebsd14", Version: "4.3.12", Provider: "libvirt"}, "boxes/generic-VAGRANTSLASH-freebsd14/4.3.12/amd64/libvirt"},
		{vagrantBox{Name: "generic/freebsd14", Version: "4.3.11", Provider: "libvirt"}, ""},
		{vagrantBox{Name: "lab/debian-12", Provider: "virtualbox"}, ""},
	} {
		got, ok := boxDir(home, tc.b)
		if want := filepath.Join(home, tc.want); (tc.want == "" && ok) || (tc.want != "" && got != want) {
			t.Errorf("boxDir(%+v) = %q, %v; want %q", tc.b, got, ok, tc.want)
		}
	}
}

// TestRecordHostKey: trust on first use records the first key and refuses
// any other afterwards.
func TestRecordHostKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	cb := recordHostKey(file)
	k1, k2 := newHostKey(t), newHostKey(t)
	addr := &net.TCPAddr{IP: net.IPv4(192, 168, 121, 5), Port: 22}
	if err := cb("192.168.121.5:22", addr, k1); err != nil {
		t.Fatalf("first key refused: %v", err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("known_hosts: %v %v", fi, err)
	}
	if err := cb("192.168.121.5:22", addr, k1); err != nil {
		t.Errorf("recorded key refused: %v", err)
	}
	if err := cb("192.168.121.5:22", addr, k2); err == nil {
		t.Error("a second, different key was accepted")
	}
}

func newHostKey(t *testing.T) ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

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
	box, err := BuildBox(ctx, cache, log)
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
	target := &Target{Name: "vagrant-lab-debian-12", Provider: "vagrant", Box: box.Name, OS: "linux"}
	if err := (Vagrant{}).Check(target); err == nil || !strings.Contains(err.Error(), "box lab/debian-12 (any version) for libvirt is not added") || !strings.Contains(err.Error(), "libvirtd does not answer") {
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
	if err := (Vagrant{}).Check(target); err != nil {
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
		target := &Target{Name: "vagrant-lab-debian-12", Provider: "vagrant", Box: "lab/debian-12", OS: "linux", Keep: keep}
		sum, err := Run(context.Background(), Options{
			Targets: []*Target{target}, Scenarios: catalogScenarios(t, only), ResultsDir: cfg.ResultsDir, CacheDir: cfg.CacheDir,
			Parallel: 1, Log: log, Providers: Providers(),
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
	if n := len(catalogScenarios(t, "")); len(second.Results) != n {
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
