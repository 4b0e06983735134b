//go:build linux && faults

package orchestrator_test

// The fault suite: real linux-6.1 guests under QEMU, each with one fault
// injected (sshd killed, the connection cut, the agent stopped, a full disk,
// a changed host key, SIGINT/SIGTERM in every phase of a real lab process).
// For every fault the target's error names the target and the phase, the
// results measured before it are kept, and no QEMU outlives the run. The
// guest tests of the main suite that inject a fault (QEMU killed, no SSH, a
// wrong host key, SIGINT in the run) add their rows through recordFault when
// run with this tag. Run it from the package's directory, so the table is
// printed when it passes:
//
//	cd orchestrator && LAB_CACHE=/var/tmp/lab-cache go test -tags faults -count=1 -timeout 40m \
//		-run 'TestFault|TestQEMUKilledMidRun|TestGuestNeverOpensSSH|TestWrongHostKeyRefused|TestInterruptDuringRun'

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
	"lab/wire"
)

// faultRow is one line of the summary table.
type faultRow struct {
	fault    string
	injected bool
	survived bool // the target failed cleanly: right status, error naming target and phase, no QEMU left
	measured int  // results the orchestrator had seen before the fault took effect
	kept     int  // results in the run directory afterwards
}

var (
	faultMu   sync.Mutex
	faultRows []faultRow
)

func record(r faultRow) {
	faultMu.Lock()
	faultRows = append(faultRows, r)
	faultMu.Unlock()
}

// TestMain prints the summary table after the suite.
func TestMain(m *testing.M) {
	recordFault = func(fault string, injected, survived bool, measured, kept int) {
		record(faultRow{fault: fault, injected: injected, survived: survived, measured: measured, kept: kept})
	}
	code := m.Run()
	if len(faultRows) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "\n%-40s %-9s %-9s %-9s %-5s %s\n", "fault", "injected", "survived", "measured", "kept", "lost")
		lost := 0
		for _, r := range faultRows {
			l := max(r.measured-r.kept, 0)
			lost += l
			fmt.Fprintf(&b, "%-40s %-9v %-9v %-9d %-5d %d\n", r.fault, r.injected, r.survived, r.measured, r.kept, l)
		}
		fmt.Fprintf(&b, "faults %d, results lost %d\n", len(faultRows), lost)
		fmt.Print(b.String())
	}
	os.Exit(code)
}

// guestImage is the linux-6.1 microVM, built or taken from the cache.
func guestImage(t *testing.T) *image.Image {
	t.Helper()
	spec, _ := image.DefaultSpec("linux-6.1")
	img, err := image.Build(context.Background(), spec, cacheDir(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var hostfwd = regexp.MustCompile(`hostfwd=tcp:(127\.0\.0\.1:\d+)-:22`)

// guestAddr is the forwarded SSH address of the one QEMU whose command line
// mentions s.
func guestAddr(t *testing.T, s string) string {
	procs := qemuProcs(s)
	if len(procs) != 1 {
		t.Errorf("want one QEMU for %s, found %v", s, procs)
		return ""
	}
	m := hostfwd.FindStringSubmatch(procs[0])
	if m == nil {
		t.Errorf("no SSH forward in %s", procs[0])
		return ""
	}
	return m[1]
}

// guestShell is a root SSH connection to the run's guest beside lab's own.
// faultRun dials it as soon as the guest answers SSH, so that injecting a
// fault later costs one session rather than a key exchange under TCG: the
// catalog runs in about 2 s in the guest, and a fault that lands after the
// agent finished tests nothing.
type guestShell struct{ c *remote.Client }

func dialGuest(img *image.Image, addr string) (*guestShell, error) {
	signer, err := img.ClientSigner()
	if err != nil {
		return nil, err
	}
	key, err := img.HostPublicKey()
	if err != nil {
		return nil, err
	}
	c, err := remote.Dial(context.Background(), remote.Config{Addr: addr, User: img.User, Signer: signer, HostKey: ssh.FixedHostKey(key), Deadline: 30 * time.Second, MaxBannerWait: time.Second})
	if err != nil {
		return nil, fmt.Errorf("dialling the guest at %s: %w", addr, err)
	}
	return &guestShell{c: c}, nil
}

// exec runs cmd in the guest as root and returns its output.
func (g *guestShell) exec(cmd string) (string, error) {
	if g == nil {
		return "", errors.New("no shell on the guest")
	}
	var out strings.Builder
	remoteErr, transportErr := g.c.Run(context.Background(), cmd, nil, &out, &out)
	return out.String(), errors.Join(remoteErr, transportErr)
}

// noChildren fails the test if a process this test started is still alive
// (QEMU, ssh, the agent on the local target): every child of the test
// process must be gone.
func noChildren(t *testing.T) {
	t.Helper()
	if kids := testenv.Children(os.Getpid()); len(kids) > 0 {
		t.Errorf("processes outlived the run: %v", kids)
	}
}

// faultRun runs scs on linux-6.1 and calls inject (once, from the progress
// callback, so the run waits for it) when ready(state) first holds, with a
// shell on the guest dialled as soon as the guest answered lab's SSH. It
// returns the summary, the run directory read back, and the most results the
// orchestrator ever reported measured.
func faultRun(t *testing.T, scs []scenario.Scenario, ready func(orchestrator.TargetState) bool, inject func(sh *guestShell) error) (*orchestrator.Summary, *rundir.Dir, int, bool) {
	t.Helper()
	img := guestImage(t)
	opts := runOpts(t, []target.Spec{defaultTarget(t, "linux-6.1")}, scs)
	if ready(orchestrator.TargetState{Phase: "upload"}) {
		// A fault of the upload needs an agent that is uploaded.
		opts.Providers = uploadingQEMU()
	}
	var once sync.Once
	injected, measured := false, 0
	var sh *guestShell
	dialled := false
	opts.Progress = progressFunc(func(s orchestrator.TargetState) {
		measured = max(measured, s.Done) // every result the orchestrator reported
		if !dialled && (s.Phase == "build" || s.Phase == "upload" || s.Phase == "run") {
			dialled = true
			var err error
			if sh, err = dialGuest(img, guestAddr(t, opts.ResultsDir)); err != nil {
				t.Errorf("opening a shell on the guest: %v", err)
			} else {
				t.Cleanup(func() { sh.c.Close() })
			}
		}
		if !ready(s) {
			return
		}
		once.Do(func() {
			start := time.Now()
			if err := inject(sh); err != nil {
				t.Errorf("injecting the fault: %v", err)
				return
			}
			injected = true
			t.Logf("fault injected in %v, %d results measured before it", time.Since(start).Round(time.Millisecond), s.Done)
		})
	})
	sum, d := runToEnd(t, opts)
	return sum, d, measured, injected
}

// runToEnd runs opts, checks that nothing it started is left running, and
// reads the run directory back.
func runToEnd(t *testing.T, opts orchestrator.Options) (*orchestrator.Summary, *rundir.Dir) {
	t.Helper()
	sum, err := orchestrator.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // QEMU's exit reaches /proc
	noQEMULeft(t, sum.Dir)
	noChildren(t)
	d, err := rundir.Read(sum.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return sum, d
}

// checkFailed says whether the target failed with an error that names it
// and each of want, and records the row.
func checkFailed(t *testing.T, fault string, sum *orchestrator.Summary, d *rundir.Dir, measured int, injected bool, want ...string) {
	t.Helper()
	tr := d.Targets[0]
	ok := injected && tr.Status == rundir.StatusFailed && !t.Failed()
	if tr.Status != rundir.StatusFailed {
		t.Errorf("status %s, want failed", tr.Status)
	}
	t.Logf("error: %s", tr.Error)
	for _, w := range append([]string{"linux-6.1"}, want...) {
		if !strings.Contains(tr.Error, w) {
			t.Errorf("error %q does not say %q", tr.Error, w)
			ok = false
		}
	}
	if len(tr.Results) < measured {
		t.Errorf("%d results kept, %d were measured", len(tr.Results), measured)
	}
	if sum.Canceled {
		t.Error("run marked canceled")
	}
	if d.Run.Status != rundir.StatusFailed {
		t.Errorf("run status %s, want failed (lab exits 3)", d.Run.Status)
	}
	record(faultRow{fault: fault, injected: injected, survived: ok, measured: measured, kept: len(tr.Results)})
}

func inRun(n int) func(orchestrator.TargetState) bool {
	return func(s orchestrator.TargetState) bool { return s.Phase == "run" && s.Done >= n }
}

// signalByName is a guest shell command (busybox has no pkill) that sends
// sig to every process whose name starts with prefix and prints the names.
// It reads each name with the shell's own read, not a cat per process, so
// that it takes milliseconds under TCG rather than most of a second.
func signalByName(sig, prefix string) string {
	return fmt.Sprintf(`for p in /proc/[0-9]*; do { read -r c <$p/comm; } 2>/dev/null || continue; case "$c" in %s*) kill -%s ${p#/proc/} && echo "$c";; esac; done`, prefix, sig)
}

// catalogTwice is the catalog followed by a copy of itself (ids suffixed
// "/again"), so that the agent is still busy for seconds after a fault's
// trigger fires in the run.
func catalogTwice(t *testing.T) []scenario.Scenario {
	scs := scenarios(t, "")
	for _, sc := range scenarios(t, "") {
		sc.ID += "/again"
		scs = append(scs, sc)
	}
	return scs
}

// TestFaultSSHDKilled kills every sshd in the guest, the listening one and
// the one serving the agent's session, while the agent runs. The guest's
// init powers off when sshd dies.
func TestFaultSSHDKilled(t *testing.T) {
	needGuests(t)
	sum, d, measured, injected := faultRun(t, catalogTwice(t), inRun(5), func(sh *guestShell) error {
		// The shell ignores the hangup and the broken pipe that killing
		// its own sshd brings, so that it lives to kill the listener too,
		// whatever order /proc lists them in.
		_, err := sh.exec("trap '' HUP PIPE; " + signalByName("TERM", "sshd"))
		var tErr *remote.TransportError
		if errors.As(err, &tErr) {
			err = nil // killing sshd ends this session too
		}
		var eErr *remote.ExitError
		if errors.As(err, &eErr) && eErr.Signal != "" {
			err = nil
		}
		return err
	})
	checkFailed(t, "sshd killed in the guest (run)", sum, d, measured, injected, "run")
	// The guest powers off when its sshd dies: once QEMU is gone there is
	// nothing to reconnect to.
	if e := d.Targets[0].Error; reconnectedToDeadGuest(e) {
		t.Errorf("error %q: lab reconnected to a guest it knew had died", e)
	}
}

// TestFaultAgentStopped stops the agent with SIGSTOP: sshd still answers the
// keepalives, so only the orchestrator's silence deadline can fail the
// target.
func TestFaultAgentStopped(t *testing.T) {
	needGuests(t)
	start := time.Now()
	var stopped time.Time
	sum, d, measured, injected := faultRun(t, catalogTwice(t), inRun(5), func(sh *guestShell) error {
		// The agent is /usr/lib/lab/lab-agent, from the guest's initramfs.
		out, err := sh.exec(signalByName("STOP", "lab-agent") + " | grep -q lab-agent && echo stopped")
		if err == nil && !strings.Contains(out, "stopped") {
			err = fmt.Errorf("no agent to stop: %s", out)
		}
		stopped = time.Now()
		return err
	})
	checkFailed(t, "agent SIGSTOPped (run)", sum, d, measured, injected, "run", "printed nothing")
	t.Logf("run took %v, %v after the stop", time.Since(start).Round(time.Second), time.Since(stopped).Round(time.Second))
}

// TestFaultDiskFull fills the guest's /tmp just before the agent is
// uploaded there.
func TestFaultDiskFull(t *testing.T) {
	needGuests(t)
	sum, d, _, injected := faultRun(t, scenarios(t, "bsd-table/*"), func(s orchestrator.TargetState) bool { return s.Phase == "upload" }, func(sh *guestShell) error {
		// A small tmpfs over /tmp fills in an instant and leaves the
		// guest's memory (its root file system) alone.
		out, err := sh.exec("mount -t tmpfs -o size=512k tmpfs /tmp && dd if=/dev/zero of=/tmp/fill bs=4k 2>&1; df /tmp")
		t.Logf("filling /tmp: %v\n%s", err, out)
		if !strings.Contains(out, "100%") {
			return fmt.Errorf("/tmp is not full: %s", out)
		}
		return nil
	})
	checkFailed(t, "guest disk full (upload)", sum, d, 0, injected, "upload")
	if e := d.Targets[0].Error; !strings.Contains(e, "disk may be full") || !strings.Contains(e, "/tmp/lab-agent-") {
		t.Errorf("error %q does not say that the disk may be full and what was uploaded", e)
	}
}

// cutProxy forwards TCP connections to a target; it can refuse the first
// few (a transient failure) and cut every live connection at once.
type cutProxy struct {
	ln      net.Listener
	to      string
	refuse  int
	mu      sync.Mutex
	accepts []time.Time
	conns   []net.Conn
}

func newCutProxy(t *testing.T, to string, refuse int) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, to: to, refuse: refuse}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepts = append(p.accepts, time.Now())
		refuse := len(p.accepts) <= p.refuse
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

// cut closes every connection through the proxy, as a network that drops
// them would (RST to lab).
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
	p.conns = nil
}

// proxiedQEMU is the qemu provider with a cutProxy between lab and the
// guest's SSH.
type proxiedQEMU struct {
	target.Provider
	t      *testing.T
	refuse int
	proxy  chan *cutProxy
}

func (p proxiedQEMU) Start(ctx context.Context, s target.Spec, env target.Env) (*target.Instance, error) {
	in, err := p.Provider.Start(ctx, s, env)
	if err != nil {
		return nil, err
	}
	px := newCutProxy(p.t, in.SSH.Addr, p.refuse)
	p.proxy <- px
	in.SSH.Addr = px.ln.Addr().String()
	return in, nil
}

// TestFaultConnectionCut puts a TCP proxy between lab and the guest that
// refuses the first connections (connect retries with backoff) and then
// cuts lab's connection during the upload or mid-run: lab reconnects,
// uploads again and runs the scenarios not yet measured, so the target
// completes with every result and none twice.
func TestFaultConnectionCut(t *testing.T) {
	needGuests(t)
	real, _ := target.Lookup("qemu")
	for _, tc := range []struct {
		phase string
		when  func(orchestrator.TargetState) bool
	}{
		{"upload", func(s orchestrator.TargetState) bool { return s.Phase == "upload" }},
		{"run", inRun(5)},
	} {
		t.Run(tc.phase, func(t *testing.T) {
			prov := proxiedQEMU{Provider: real, t: t, refuse: 3, proxy: make(chan *cutProxy, 1)}
			if tc.phase == "upload" {
				prov.Provider = uploading{real} // the agent must be uploaded for the cut to land there
			}
			scs := scenarios(t, "")
			opts := runOpts(t, []target.Spec{defaultTarget(t, "linux-6.1")}, scs)
			opts.Providers = map[string]target.Provider{"qemu": prov}
			var once sync.Once
			var px *cutProxy
			measured, injected := 0, false
			opts.Progress = progressFunc(func(s orchestrator.TargetState) {
				if !injected {
					measured = max(measured, s.Done)
				}
				if tc.when(s) {
					once.Do(func() {
						px = <-prov.proxy
						px.cut()
						injected = true
					})
				}
			})
			_, d := runToEnd(t, opts)
			tr := d.Targets[0]
			var phases []string
			for _, p := range tr.Phases {
				phases = append(phases, p.Name)
			}
			t.Logf("status %s, phases %v, error %q", tr.Status, phases, tr.Error)
			ok := injected && tr.Status == rundir.StatusComplete
			if tr.Status != rundir.StatusComplete {
				t.Errorf("status %s (%s), want complete after a reconnect", tr.Status, tr.Error)
			}
			if !injected {
				t.Error("the connection was never cut")
			}
			// The cut shows as a second connect phase.
			if n := strings.Count(strings.Join(phases, ","), "connect"); n != 2 {
				t.Errorf("phases %v: want connect twice (the reconnect)", phases)
				ok = false
			}
			seen := map[string]int{}
			for _, r := range tr.Results {
				seen[r.ID]++
			}
			for _, s := range scs {
				if seen[s.ID] != 1 {
					t.Errorf("%s: %d results, want 1", s.ID, seen[s.ID])
					ok = false
				}
			}
			record(faultRow{fault: "SSH connection cut by a proxy (" + tc.phase + ")", injected: injected, survived: ok && !t.Failed(), measured: max(measured, len(tr.Results)), kept: len(tr.Results)})
			if px == nil {
				return
			}
			px.mu.Lock()
			acc := px.accepts
			px.mu.Unlock()
			// The refused attempts were retried, each a little later than the last.
			if len(acc) < 5 {
				t.Fatalf("%d connections through the proxy; want the 3 refused ones retried, and the reconnect", len(acc))
			}
			var gaps []time.Duration
			for i := 1; i < 4; i++ {
				gaps = append(gaps, acc[i].Sub(acc[i-1]).Round(time.Millisecond))
			}
			t.Logf("connect attempts %d, gaps after the refused ones %v", len(acc), gaps)
			if gaps[0] < 50*time.Millisecond || gaps[2] < gaps[0] {
				t.Errorf("retries without backoff: gaps %v", gaps)
			}
			if tc.phase == "run" {
				firstConnect := slices.IndexFunc(tr.Phases, func(p rundir.Phase) bool { return p.Name == "connect" })
				record(faultRow{fault: "connect refused 3 times (connect)", injected: true, survived: len(acc) >= 4 && firstConnect >= 0 && tr.Phases[firstConnect].Error == ""})
			}
		})
	}
}

// TestFaultHostKeyChanged reaches a guest as an ssh target through a
// known_hosts file: the first run works; before the second, the recorded
// key changes (as when a host is replaced or impersonated), and the second
// run refuses to connect at once, naming the target and phase.
// sshGuest boots linux-6.1's image for the rest of the test and returns a
// targets file naming it "linux-6.1", an ssh host verified against
// known_hosts: a machine lab did not boot, whose agent it uploads.
func sshGuest(t *testing.T) string {
	t.Helper()
	img := guestImage(t)
	vm, keyFile := bootForSSH(t, img)
	known := filepath.Join(t.TempDir(), "known_hosts")
	hk, err := os.ReadFile(img.HostKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(known, []byte(knownHostsAddr(vm.SSHAddr())+" "+string(hk)), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "targets.yaml")
	yaml := fmt.Sprintf("targets:\n  - {name: linux-6.1, provider: ssh, host: %q, user: %s, key: %s, known_hosts: %s, os: linux, arch: amd64, boot_timeout: 60s}\n", vm.SSHAddr(), img.User, keyFile, known)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// bootForSSH boots img for the rest of the test and returns it with a copy
// of its client key (mode 0600, as the ssh provider wants).
func bootForSSH(t *testing.T, img *image.Image) (*qemu.VM, string) {
	t.Helper()
	vm, err := qemu.Start(context.Background(), qemu.Config{Arch: "amd64", Kernel: img.Kernel, Initrd: img.Initrd, Append: image.KernelCmdline, MemoryMB: 256, ConsolePath: filepath.Join(t.TempDir(), "console.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop(context.Background()) })
	keyFile := filepath.Join(t.TempDir(), "id")
	b, err := os.ReadFile(img.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return vm, keyFile
}

func TestFaultHostKeyChanged(t *testing.T) {
	needGuests(t)
	img := guestImage(t)
	vm, keyFile := bootForSSH(t, img)
	dir := t.TempDir()
	real, err := img.HostPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(pub)
	known := filepath.Join(dir, "known_hosts")
	writeKnown := func(k ssh.PublicKey) {
		line := fmt.Sprintf("%s %s", knownHostsAddr(vm.SSHAddr()), ssh.MarshalAuthorizedKey(k))
		if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tg := oneTarget(t, fmt.Sprintf("{name: linux-6.1, provider: ssh, host: %q, user: %s, key: %s, known_hosts: %s, os: linux, arch: amd64, boot_timeout: 60s}", vm.SSHAddr(), img.User, keyFile, known))
	scs := scenarios(t, "bsd-table/row1/*")

	writeKnown(real)
	sum, err := orchestrator.Run(context.Background(), runOpts(t, []target.Spec{tg}, scs))
	if err != nil {
		t.Fatal(err)
	}
	if tr := sum.Targets[0]; tr.Status != rundir.StatusComplete {
		t.Fatalf("first run: %s: %s", tr.Status, tr.Error)
	}

	writeKnown(other)
	start := time.Now()
	sum, err = orchestrator.Run(context.Background(), runOpts(t, []target.Spec{tg}, scs))
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	d, err := rundir.Read(sum.Dir)
	if err != nil {
		t.Fatal(err)
	}
	checkFailed(t, "host key changed between runs (connect)", sum, d, 0, true, "connect", "host key")
	if took > 10*time.Second {
		t.Errorf("refusal took %v: a changed host key must not be retried", took)
	}
}

// knownHostsAddr is addr as known_hosts writes it: [host]:port.
func knownHostsAddr(addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return "[" + h + "]:" + p
}

// TestFaultSignalEachPhase sends SIGINT or SIGTERM to a real lab process in
// each phase of a guest's life: lab exits 4, the run directory says
// interrupted, what was measured is kept, and no QEMU survives. SIGINT in
// the run phase is TestInterruptDuringRun.
func TestFaultSignalEachPhase(t *testing.T) {
	needGuests(t)
	guestImage(t) // build it now, so the image phase is a cache hit
	bin := filepath.Join(t.TempDir(), "lab")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/lab").CombinedOutput(); err != nil {
		t.Fatalf("building lab: %v\n%s", err, out)
	}
	for _, phase := range []string{"image", "boot", "connect", "upload", "run", "teardown"} {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			if phase == "run" && sig == syscall.SIGINT {
				continue
			}
			t.Run(phase+"/"+sig.String(), func(t *testing.T) { signalInPhase(t, bin, phase, sig) })
		}
	}
}

var phaseLine = regexp.MustCompile(`phase: name=(\w+)`)

func signalInPhase(t *testing.T, bin, phase string, sig syscall.Signal) {
	out := t.TempDir()
	only := []string{"--only", "bsd-table/*"}
	switch phase {
	case "teardown":
		only = []string{"--only", "bsd-table/row1/*"} // short, so the teardown comes soon
	case "run":
		// The whole catalog (without the slow scenarios): the agent sends
		// its lines over SSH in batches, and bsd-table's 16 scenarios can
		// all arrive, and the run end, before the signal lands.
		only = nil
	}
	cache := cacheDir(t)
	if phase == "image" {
		cache = coldImageCache(t)
	}
	args := append([]string{"run", "-v", "--targets", "linux-6.1", "--scenarios", "scenarios.yaml", "--out", out, "--cache", cache}, only...)
	if phase == "upload" {
		// lab's microVMs carry the agent in their initramfs: the upload
		// is that of a guest reached as an ssh host.
		args = append(args, "-file", sshGuest(t))
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = ".."
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	var log strings.Builder
	signaled := make(chan struct{})
	results := 0 // the most results seen in the target's file before the signal
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			m := phaseLine.FindStringSubmatch(sc.Text())
			if sent || m == nil || m[1] != phase {
				continue
			}
			if phase == "run" {
				results = waitForResult(out, 60*time.Second)
			}
			cmd.Process.Signal(sig)
			sent = true
			close(signaled)
		}
	}()
	werr := cmd.Wait()
	select {
	case <-signaled:
	default:
		t.Fatalf("phase %s never came; lab ended with %v:\n%s", phase, werr, log.String())
	}
	ok := true
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != 4 {
		t.Errorf("lab exited with %v, want exit status 4\n%s", werr, log.String())
		ok = false
	}
	if left := qemuProcs(out); len(left) > 0 {
		t.Errorf("QEMU outlived lab: %v", left)
		ok = false
	}
	dirs, _ := filepath.Glob(filepath.Join(out, "*", "run.json"))
	if len(dirs) != 1 {
		t.Fatalf("run directories: %v", dirs)
	}
	d, err := rundir.Read(filepath.Dir(dirs[0]))
	if err != nil {
		t.Fatal(err)
	}
	tr := d.Targets[0]
	if d.Run.Status != rundir.StatusInterrupted {
		t.Errorf("run status %s, want interrupted", d.Run.Status)
		ok = false
	}
	// A signal in the teardown comes after the agent finished: the target
	// completed and only the run as a whole was cut short.
	if phase != "teardown" && tr.Status != rundir.StatusInterrupted {
		t.Errorf("target status %s, want interrupted", tr.Status)
		ok = false
	}
	if phase != "teardown" && !strings.Contains(tr.Error, "interrupted during "+phase+": target linux-6.1, "+phase) {
		t.Errorf("target error %q does not say it was interrupted in %s", tr.Error, phase)
		ok = false
	}
	if len(tr.Results) < results {
		t.Errorf("%d results kept, %d were in the file before the signal", len(tr.Results), results)
	}
	t.Logf("%s in %s: exit %v, target %s: %s (%d results)", sig, phase, werr, tr.Status, tr.Error, len(tr.Results))
	record(faultRow{fault: fmt.Sprintf("%s in %s (lab exit %d)", sigName(sig), phase, exitCode(werr)), injected: true, survived: ok && !t.Failed(), measured: results, kept: len(tr.Results)})
}

func sigName(s syscall.Signal) string {
	if s == syscall.SIGINT {
		return "SIGINT"
	}
	return "SIGTERM"
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

// TestFaultScenarioHangs gives scenarios whose steps take far longer than
// their deadline (TIME_WAIT set-ups and 300-connection spreads, allowed 1 ms)
// to the local agent: each is reported as a timeout and the agent carries on
// with the rest, so the target completes with every result.
func TestFaultScenarioHangs(t *testing.T) {
	var scs []scenario.Scenario
	hung := map[string]bool{}
	for _, s := range scenarios(t, "timewait/*,distribution/*") {
		s.Timeout = wire.Millis(1)
		hung[s.ID] = true
		scs = append(scs, s)
	}
	scs = append(scs, scenarios(t, "bsd-table/*")...)
	sum, err := orchestrator.Run(context.Background(), runOpts(t, []target.Spec{defaultTarget(t, "local")}, scs))
	if err != nil {
		t.Fatal(err)
	}
	noChildren(t)
	d, err := rundir.Read(sum.Dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := d.Targets[0]
	ok := tr.Status == rundir.StatusComplete && len(tr.Results) == len(scs)
	if !ok {
		t.Errorf("status %s with %d of %d results: %s", tr.Status, len(tr.Results), len(scs), tr.Error)
	}
	timeouts := 0
	for _, r := range tr.Results {
		switch {
		case hung[r.ID] && r.Outcome == wire.Timeout:
			timeouts++
		case hung[r.ID]:
			t.Logf("%s finished within 1 ms: %s", r.ID, r.Outcome)
		case r.Outcome == wire.Timeout:
			t.Errorf("%s timed out after the hung ones", r.ID)
			ok = false
		}
	}
	t.Logf("%d of %d hung scenarios reported timeout; %d others measured", timeouts, len(hung), len(scs)-len(hung))
	if timeouts == 0 {
		t.Error("no scenario timed out")
		ok = false
	}
	record(faultRow{fault: fmt.Sprintf("%d scenarios past deadline (run)", len(hung)), injected: true, survived: ok, measured: len(scs), kept: len(tr.Results)})
}
