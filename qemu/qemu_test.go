//go:build linux

// These tests look into /proc and rely on Linux process semantics (Pdeathsig, setsid).

package qemu

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"lab/internal/testenv"

	"lab/image"
	"lab/remote"
)

// bootTimeout bounds a guest's boot to its first console line of userland. Under TCG this
// takes about two seconds here; the margin is for a loaded CI machine.
const bootTimeout = 2 * time.Minute

// testCache holds the image package's downloads and builds for this run; LAB_IMAGE_CACHE keeps
// them across runs, as in the image package's own tests.
var testCache string

func TestMain(m *testing.M) { testenv.RunWithCache(m, "lab-qemu-test-", &testCache) }

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var (
	builtMu sync.Mutex
	built   = map[string]*image.Image{}
)

// testImage returns the image package's linux-6.1 guest, built once per run.
func testImage(t *testing.T) *image.Image {
	t.Helper()
	testenv.NeedTools(t, "qemu-system-x86_64", "apt-get", "dpkg-deb")
	builtMu.Lock()
	defer builtMu.Unlock()
	if img := built["linux-6.1"]; img != nil {
		return img
	}
	spec, ok := image.DefaultSpec("linux-6.1")
	if !ok {
		t.Fatal("image has no linux-6.1 spec")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := image.Build(ctx, spec, testCache, nil)
	if err != nil {
		t.Fatalf("building the linux-6.1 guest image: %v", err)
	}
	built["linux-6.1"] = img
	return img
}

// testKernel is a kernel to boot: LAB_TEST_KERNEL if set, else the image package's.
func testKernel(t *testing.T) string {
	if k := os.Getenv("LAB_TEST_KERNEL"); k != "" {
		return k
	}
	return testImage(t).Kernel
}

// cpioFile is one entry of a newc cpio archive.
type cpioFile struct {
	name string
	mode uint32 // with type bits
	data []byte
	rdev [2]uint32
}

// writeCPIO writes a newc cpio archive, the format the kernel unpacks as initramfs.
func writeCPIO(files []cpioFile) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	add := func(ino int, f cpioFile) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, f.mode, 0, 0, 1, 0, len(f.data), 0, 0, f.rdev[0], f.rdev[1], len(f.name)+1, 0)
		b.WriteString(f.name)
		b.WriteByte(0)
		pad()
		b.Write(f.data)
		pad()
	}
	for i, f := range files {
		add(i+1, f)
	}
	add(0, cpioFile{name: "TRAILER!!!"})
	return b.Bytes()
}

// busyboxInitrd writes an initramfs whose /init is the given busybox shell script: a guest
// that boots in seconds and never opens SSH.
func busyboxInitrd(t *testing.T, script string) string {
	t.Helper()
	testenv.NeedTools(t, "busybox")
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data[:min(len(data), 4096)], []byte("/lib64/ld-linux")) {
		t.Fatalf("%s is dynamically linked; the test needs busybox-static", bb)
	}
	const dir, reg, chr = 0o040000, 0o100000, 0o020000
	cpio := writeCPIO([]cpioFile{
		{name: "bin", mode: dir | 0o755},
		{name: "dev", mode: dir | 0o755},
		{name: "dev/console", mode: chr | 0o600, rdev: [2]uint32{5, 1}},
		{name: "proc", mode: dir | 0o755},
		{name: "bin/busybox", mode: reg | 0o755, data: data},
		{name: "init", mode: reg | 0o755, data: []byte("#!/bin/busybox sh\n" + script)},
	})
	path := filepath.Join(t.TempDir(), "initrd.cpio")
	if err := os.WriteFile(path, cpio, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sleeperScript prints a marker and then idles forever, never opening SSH.
const sleeperScript = `/bin/busybox mount -t proc proc /proc
echo LAB-TEST-INIT-UP
exec /bin/busybox sleep 1000000
`

// startVM starts a guest and makes sure, whatever happens in the test, that its QEMU is
// killed by PID and gone when the test ends.
func startVM(t *testing.T, cfg Config) *VM {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	pid := vm.PID()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := vm.Stop(ctx); err != nil {
			// Not reaped, so the PID is still QEMU's and safe to kill.
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("cleanup: Stop: %v", err)
		}
		select {
		case <-vm.Exited():
		default:
			t.Errorf("cleanup: Exited not closed after Stop")
		}
		if t.Failed() {
			t.Logf("console of pid %d:\n%s", pid, vm.ConsoleTail(40))
		}
	})
	return vm
}

// isQEMU reports whether pid is a live (not zombie) qemu process.
func isQEMU(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("qemu-system")) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses, which may itself contain spaces.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// qemuWithArg lists live qemu processes whose command line contains arg.
func qemuWithArg(arg string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.Contains(cmdline, []byte(arg)) && isQEMU(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitConsole waits until the console shows want, or fails the test.
func waitConsole(t *testing.T, vm *VM, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for !strings.Contains(vm.ConsoleTail(200), want) {
		select {
		case <-vm.Exited():
			t.Fatalf("QEMU exited (%v) before %q appeared", vm.ExitErr(), want)
		case <-deadline:
			t.Fatalf("%q did not appear on the console within %v", want, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestProbeAccel(t *testing.T) {
	testenv.NeedTools(t, "qemu-system-x86_64")
	// Machines of this project's kind have a /dev/kvm whose guests hang; a host where KVM
	// works can say so through LAB_EXPECT_ACCEL=kvm.
	want := os.Getenv("LAB_EXPECT_ACCEL")
	if want == "" {
		want = "tcg"
	}
	start := time.Now()
	got := probeAccel(context.Background(), "amd64", "", testLogger(t))
	took := time.Since(start)
	t.Logf("ProbeAccel(amd64) = %s in %v", got, took.Round(time.Millisecond))
	if got != want {
		t.Errorf("ProbeAccel(amd64) = %q, want %q", got, want)
	}
	if took > probeTimeout+5*time.Second {
		t.Errorf("probe took %v, want at most about %v", took, probeTimeout)
	}
	start = time.Now()
	if again := ProbeAccel(context.Background(), "x86_64"); again != got || time.Since(start) > 100*time.Millisecond {
		t.Errorf("second ProbeAccel = %q after %v, want the cached %q at once", again, time.Since(start), got)
	}
	if got := ProbeAccel(context.Background(), "arm64"); got != "tcg" {
		t.Errorf("ProbeAccel(arm64) on an amd64 host = %q, want tcg", got)
	}
	if leftover := qemuWithArg("lab-probe-"); len(leftover) > 0 {
		t.Errorf("probe QEMU still running: pids %v", leftover)
	}
}

// TestAccelCache probes once for real with a cache file, then as a new
// process would (the in-memory answer forgotten): the second answer comes
// from the file, and a file from another boot or QEMU, or too old, is
// probed again.
func TestAccelCache(t *testing.T) {
	testenv.NeedTools(t, "qemu-system-x86_64")
	file := filepath.Join(t.TempDir(), "cache", "accel.json")
	forget := func() {
		probeSem <- struct{}{}
		delete(probed, "amd64")
		<-probeSem
	}
	forget()
	t.Cleanup(forget)
	first := probeAccel(context.Background(), "amd64", file, testLogger(t))
	recs := readAccelCache(file)
	rec, ok := recs["amd64"]
	host := hostIdentity("qemu-system-x86_64")
	if !ok || rec.Accel != first || rec.Host != host || host == "" || rec.Why == "" {
		t.Fatalf("kept %+v (ok %v), want the answer %q for host %q", rec, ok, first, host)
	}
	// Mark the record, so that a reuse shows: a real probe would not say this.
	rec.Why = "marked by the test"
	writeAccelCache(file, "amd64", rec)
	forget()
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	if again := probeAccel(context.Background(), "amd64", file, log); again != first || !strings.Contains(logs.String(), "marked by the test") {
		t.Errorf("second answer %q, log %q: want %q from the file", again, logs.String(), first)
	}

	now := time.Now()
	for _, tc := range []struct {
		name string
		rec  accelRecord
		host string
		want bool
	}{
		{"same host, fresh", accelRecord{Host: host, Accel: "tcg", At: now.Add(-time.Minute)}, host, true},
		{"kvm kept", accelRecord{Host: host, Accel: "kvm", At: now.Add(-time.Minute)}, host, true},
		{"another boot or QEMU", accelRecord{Host: "boot other", Accel: "tcg", At: now}, host, false},
		{"host unknown", accelRecord{Host: "", Accel: "tcg", At: now}, "", false},
		{"an hour old", accelRecord{Host: host, Accel: "tcg", At: now.Add(-accelCacheTTL)}, host, false},
		{"from the future", accelRecord{Host: host, Accel: "tcg", At: now.Add(time.Hour)}, host, false},
		{"not an accelerator", accelRecord{Host: host, Accel: "hvf", At: now}, host, false},
	} {
		if got := tc.rec.validFor(tc.host, now); got != tc.want {
			t.Errorf("%s: validFor = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A damaged file is no answer, and the next answer replaces it whole.
	os.WriteFile(file, []byte("{not json"), 0o644)
	if len(readAccelCache(file)) != 0 {
		t.Error("a damaged cache file gave answers")
	}
	if err := writeAccelCache(file, "amd64", rec); err != nil {
		t.Fatal(err)
	}
	if got := readAccelCache(file)["amd64"]; got != rec {
		t.Errorf("after a damaged file, kept %+v, want %+v", got, rec)
	}
}

// TestProbeKVMSlow runs the probe payload under KVM with QEMU's default CPU model, which
// starts on this machine's KVM (unlike -cpu host) and then crawls: the probe must give up
// after probeTimeout and answer tcg.
func TestProbeKVMSlow(t *testing.T) {
	testenv.NeedTools(t, "qemu-system-x86_64")
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("skipping: no /dev/kvm")
	}
	if os.Getenv("LAB_EXPECT_ACCEL") == "kvm" {
		t.Skip("skipping: KVM works on this host")
	}
	_, info, _ := lookupArch("amd64")
	start := time.Now()
	accel, why, final := probeKVM(context.Background(), "amd64", info, "")
	took := time.Since(start)
	t.Logf("probe with the default CPU: %s (%s) after %v", accel, why, took.Round(time.Millisecond))
	if accel != "tcg" || !final {
		t.Errorf("probeKVM = %q, final %v, want a final tcg", accel, final)
	}
	if took < probeTimeout/2 || took > probeTimeout+5*time.Second {
		t.Logf("probe took %v; expected it to run into the %v timeout (did QEMU fail instead?)", took, probeTimeout)
	}
	if leftover := qemuWithArg("lab-probe-"); len(leftover) > 0 {
		t.Errorf("probe QEMU still running: pids %v", leftover)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if accel, _, final := probeKVM(ctx, "amd64", info, ""); accel != "tcg" || final {
		t.Errorf("probe cut short by ctx = %q, final %v; want tcg, not final", accel, final)
	}
}

// TestStartStop boots a guest that never opens SSH and stops it.
func TestStartStop(t *testing.T) {
	consolePath := filepath.Join(t.TempDir(), "console.log")
	vm := startVM(t, Config{
		Arch:        "amd64",
		Kernel:      testKernel(t),
		Initrd:      busyboxInitrd(t, sleeperScript),
		Append:      "console=ttyS0 panic=-1 quiet",
		MemoryMB:    256,
		Accel:       "auto",
		ConsolePath: consolePath,
	})
	start := time.Now()
	if vm.Accel() != "tcg" && os.Getenv("LAB_EXPECT_ACCEL") == "" {
		t.Errorf("Accel = %q, want tcg on this machine", vm.Accel())
	}
	host, port, err := net.SplitHostPort(vm.SSHAddr())
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("SSHAddr = %q, want 127.0.0.1:PORT", vm.SSHAddr())
	}
	if p, _ := strconv.Atoi(port); !listeningOn(vm.PID(), p) {
		t.Errorf("QEMU (pid %d) does not listen on %s", vm.PID(), vm.SSHAddr())
	}

	waitConsole(t, vm, "LAB-TEST-INIT-UP", bootTimeout)
	t.Logf("userland up %v after Start returned", time.Since(start).Round(time.Millisecond))
	select {
	case <-vm.Exited():
		t.Fatal("Exited closed while the guest runs")
	default:
	}
	if err := vm.ExitErr(); err != nil {
		t.Errorf("ExitErr while running = %v", err)
	}

	pid := vm.PID()
	stopStart := time.Now()
	if err := vm.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %v", time.Since(stopStart).Round(time.Millisecond))
	select {
	case <-vm.Exited():
	default:
		t.Fatal("Exited not closed after Stop returned")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("/proc/%d still exists after Stop", pid)
	}
	if left := qemuWithArg(consolePath); len(left) > 0 {
		t.Errorf("qemu processes still running after Stop: %v", left)
	}
	if err := vm.Stop(context.Background()); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
	logged, err := os.ReadFile(consolePath)
	if err != nil || !bytes.Contains(logged, []byte("LAB-TEST-INIT-UP")) {
		t.Errorf("console file lacks the marker (err %v):\n%s", err, logged)
	}
}

// TestGuestExits checks that a guest whose kernel panics ends QEMU (panic=-1 and -no-reboot)
// and that the panic is on the console.
func TestGuestExits(t *testing.T) {
	vm := startVM(t, Config{
		Arch:   "amd64",
		Kernel: testKernel(t),
		Initrd: busyboxInitrd(t, "echo LAB-TEST-DYING\nexit 1\n"),
		Append: "console=ttyS0 panic=-1 quiet",
		Accel:  "tcg",
	})
	select {
	case <-vm.Exited():
	case <-time.After(bootTimeout):
		t.Fatal("QEMU still running after the guest panicked")
	}
	if err := vm.ExitErr(); err != nil {
		t.Errorf("ExitErr = %v, want nil for a guest that reset", err)
	}
	tail := vm.ConsoleTail(100)
	if !strings.Contains(tail, "LAB-TEST-DYING") || !strings.Contains(tail, "Kernel panic") {
		t.Errorf("console tail lacks the marker or the panic:\n%s", tail)
	}
	if got := vm.ConsoleTail(3); strings.Count(got, "\n") != 2 {
		t.Errorf("ConsoleTail(3) has %d lines:\n%s", strings.Count(got, "\n")+1, got)
	}
}

// TestKilledFromOutside checks that Exited closes at once when someone else kills QEMU.
func TestKilledFromOutside(t *testing.T) {
	vm := startVM(t, Config{
		Arch:   "amd64",
		Kernel: testKernel(t),
		Initrd: busyboxInitrd(t, sleeperScript),
		Append: "console=ttyS0 panic=-1 quiet",
		Accel:  "tcg",
	})
	killed := time.Now()
	if err := syscall.Kill(vm.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-vm.Exited():
		t.Logf("Exited closed %v after SIGKILL", time.Since(killed).Round(time.Microsecond))
	case <-time.After(2 * time.Second):
		t.Fatal("Exited not closed 2s after QEMU was killed")
	}
	var exitErr *exec.ExitError
	if err := vm.ExitErr(); !errors.As(err, &exitErr) {
		t.Errorf("ExitErr = %v, want an *exec.ExitError", err)
	}
	if err := vm.Stop(context.Background()); err != nil {
		t.Errorf("Stop after exit = %v", err)
	}
}

// TestPortTaken makes Start lose the race for its port and checks that it retries.
func TestPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPort = func() (int, error) {
		calls++
		if calls == 1 {
			return takenPort, nil
		}
		return freePort()
	}
	defer func() { pickPort = freePort }()

	vm := startVM(t, Config{
		Arch:   "amd64",
		Kernel: testKernel(t),
		Initrd: busyboxInitrd(t, sleeperScript),
		Accel:  "tcg",
	})
	if calls != 2 {
		t.Errorf("picked a port %d times, want 2", calls)
	}
	if vm.SSHAddr() == taken.Addr().String() {
		t.Errorf("SSHAddr = %s, the port that was taken", vm.SSHAddr())
	}
}

// TestDiskOverlay boots a (blank) disk image with a seed and checks that the image is not
// modified.
func TestDiskOverlay(t *testing.T) {
	testenv.NeedTools(t, "qemu-system-x86_64", "qemu-img")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	seed := filepath.Join(dir, "seed.img")
	if err := MakeNoCloudSeed(seed, "#cloud-config\n", "instance-id: test\n", ""); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, disk)
	vm := startVM(t, Config{Arch: "amd64", Disk: disk, Seed: seed, Accel: "tcg", MemoryMB: 128})
	// SeaBIOS finds nothing to boot on the blank disk and says so; by then QEMU has opened
	// both drives.
	time.Sleep(time.Second)
	if err := vm.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := fileHash(t, disk); after != before {
		t.Errorf("disk image changed: sha256 %x -> %x", before, after)
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"kernel", Config{Arch: "amd64", Kernel: file, Initrd: file, Append: "quiet"}, nil},
		{"disk with seed", Config{Arch: "x86_64", Disk: file, Seed: file, Accel: "tcg"}, nil},
		{"arm64", Config{Arch: "aarch64", Kernel: file, Accel: "kvm"}, nil},
		{"nothing to boot", Config{Arch: "amd64"}, []string{"neither Kernel nor Disk"}},
		{"both", Config{Arch: "amd64", Kernel: file, Disk: file}, []string{"both Kernel and Disk"}},
		{"initrd without kernel", Config{Arch: "amd64", Disk: file, Initrd: file}, []string{"need Kernel"}},
		{"every problem at once", Config{Arch: "vax", Kernel: filepath.Join(dir, "missing"), Accel: "hvf", CPUs: -1},
			[]string{`unsupported arch "vax"`, "Kernel:", `unknown Accel "hvf"`, "negative"}},
		{"directory as disk", Config{Arch: "amd64", Disk: dir}, []string{"not a regular file"}},
		{"microvm disk", Config{Arch: "amd64", Disk: file, Machine: "microvm"}, []string{"microvm"}},
		{"snapshot", Config{Arch: "amd64", Kernel: file, Snapshot: dir, ReadyMarker: "ready"}, nil},
		{"snapshot of a disk", Config{Arch: "amd64", Disk: file, Snapshot: dir, ReadyMarker: "ready"}, []string{"Kernel guests only"}},
		{"snapshot without vmgenid", Config{Arch: "arm64", Kernel: file, Snapshot: dir, ReadyMarker: "ready"}, []string{"vmgenid"}},
		{"snapshot on microvm", Config{Arch: "amd64", Kernel: file, Machine: "microvm", Snapshot: dir, ReadyMarker: "ready"}, []string{"vmgenid"}},
		{"snapshot without a marker", Config{Arch: "amd64", Kernel: file, Snapshot: dir}, []string{"ReadyMarker"}},
		{"detached snapshot without a console", Config{Arch: "amd64", Kernel: file, Snapshot: dir, ReadyMarker: "ready", Detach: true}, []string{"ConsolePath"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tc.cfg.check()
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("check = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("check = nil, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("check = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		accel string
		want  []string // consecutive argument pairs or single arguments that must appear
		not   []string
	}{
		{
			name:  "q35 kernel tcg",
			cfg:   Config{Arch: "amd64", Kernel: "/k", Initrd: "/i", Append: "console=ttyS0"},
			accel: "tcg",
			want: []string{"-M q35", "-accel tcg", "-m 512", "-smp 1", "-no-reboot", "-serial stdio",
				"-netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22", "-device virtio-net-pci,netdev=net0,romfile=",
				"-kernel /k", "-initrd /i", "-append console=ttyS0", "-cpu qemu64,+rdrand"},
		},
		{
			name:  "kvm uses the host cpu",
			cfg:   Config{Arch: "amd64", Kernel: "/k", MemoryMB: 256, CPUs: 2},
			accel: "kvm",
			want:  []string{"-accel kvm", "-cpu host", "-m 256", "-smp 2"},
		},
		{
			name:  "microvm",
			cfg:   Config{Arch: "amd64", Kernel: "/k", Machine: "microvm"},
			accel: "tcg",
			want:  []string{"-M microvm", "-device virtio-net-device,netdev=net0"},
			not:   []string{"romfile="},
		},
		{
			name:  "arm64 tcg",
			cfg:   Config{Arch: "arm64", Kernel: "/k"},
			accel: "tcg",
			want:  []string{"-M virt", "-cpu max"},
		},
		{
			name:  "disk overlay and seed",
			cfg:   Config{Arch: "amd64", Disk: "/images/a,b.qcow2", Seed: "/s.img"},
			accel: "tcg",
			want: []string{"-drive if=none,id=disk0,snapshot=on,format=qcow2,file=/images/a,,b.qcow2",
				"-device virtio-blk-pci,drive=disk0,bootindex=0",
				"-drive if=none,id=seed0,readonly=on,format=raw,file=/s.img"},
			not: []string{"-kernel"},
		},
		{
			name:  "seed as a CD-ROM",
			cfg:   Config{Arch: "amd64", Disk: "/d.qcow2", Seed: "/s.iso", SeedCDROM: true},
			accel: "tcg",
			want: []string{"-drive if=none,id=seed0,media=cdrom,readonly=on,format=raw,file=/s.iso",
				"-device virtio-scsi-pci,id=scsi0", "-device scsi-cd,bus=scsi0.0,drive=seed0"},
			not: []string{"drive=seed0 -device virtio-blk"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, info, err := lookupArch(tc.cfg.Arch)
			if err != nil {
				t.Fatal(err)
			}
			line := " " + strings.Join(tc.cfg.args(info, tc.accel, 2222), " ") + " "
			for _, w := range tc.want {
				if !strings.Contains(line, " "+w+" ") {
					t.Errorf("args lack %q:%s", w, line)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(line, n) {
					t.Errorf("args contain %q:%s", n, line)
				}
			}
		})
	}
}

func TestConsoleTail(t *testing.T) {
	c := &console{}
	fmt.Fprintf(c, "\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\n")
	for i := 1; i <= 5; i++ {
		fmt.Fprintf(c, "line %d\r\n", i)
	}
	if got, want := c.tail(2), "line 4\nline 5"; got != want {
		t.Errorf("tail(2) = %q, want %q", got, want)
	}
	if got, want := c.tail(100), "SeaBIOS\nline 1\nline 2\nline 3\nline 4\nline 5"; got != want {
		t.Errorf("tail(100) = %q, want %q", got, want)
	}
	c.Write(bytes.Repeat([]byte("x\n"), consoleKeep))
	if len(c.buf) > consoleKeep {
		t.Errorf("console keeps %d bytes, want at most %d", len(c.buf), consoleKeep)
	}
}

func TestListeningInodes(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:08AE 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 100 0 0 10 0
`
	path := filepath.Join(t.TempDir(), "tcp")
	if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	got := listeningInodes(path, 2222)
	if len(got) != 1 || !got["1111"] {
		t.Errorf("listeningInodes(2222) = %v, want only the listening socket 1111", got)
	}
	if got := listeningInodes(path, 22); !got["3333"] {
		t.Errorf("listeningInodes(22) = %v, want 3333", got)
	}
}

// TestMakeNoCloudSeed: qemu's seed writer is cloudinit's, so with xorriso installed
// (scripts/setup) the seed is an ISO 9660 volume labelled cidata; cloudinit's tests read
// it back in detail.
func TestMakeNoCloudSeed(t *testing.T) {
	testenv.NeedTools(t, "xorriso")
	path := filepath.Join(t.TempDir(), "seed.img")
	if err := MakeNoCloudSeed(path, "#cloud-config\nusers: []\n", "instance-id: lab-test\n", "version: 2\n"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 0x8000+72 || string(b[0x8001:0x8006]) != "CD001" {
		t.Fatalf("not an ISO 9660 image (%d bytes)", len(b))
	}
	if got := strings.TrimSpace(string(b[0x8000+40 : 0x8000+72])); got != "cidata" {
		t.Errorf("label = %q, want cidata", got)
	}
	for _, want := range []string{"#cloud-config\nusers: []\n", "instance-id: lab-test\n", "version: 2\n"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("the image does not hold %q", want)
		}
	}
}

// TestGuestSSH boots the image package's guest and reaches it with package remote, as the
// orchestrator does: Dial waits for sshd with the VM's Exited as Abort.
func TestGuestSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots a guest with sshd")
	}
	img := testImage(t)
	hostKey, err := img.HostPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := img.ClientSigner()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	vm := startVM(t, Config{
		Arch: "amd64", Kernel: img.Kernel, Initrd: img.Initrd,
		Append: "console=ttyS0 panic=-1 quiet", MemoryMB: 256, Accel: "auto",
	})
	started := time.Since(start)
	markerAt := make(chan time.Duration, 1)
	go func() {
		for !strings.Contains(vm.ConsoleTail(100), image.ReadyMarker) {
			select {
			case <-vm.Exited():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		markerAt <- time.Since(start)
	}()

	ctx := context.Background()
	client, err := remote.Dial(ctx, remote.Config{
		Addr: vm.SSHAddr(), User: img.User, Signer: signer, HostKey: ssh.FixedHostKey(hostKey),
		Deadline: bootTimeout, Abort: vm.Exited(), KeepaliveInterval: 300 * time.Millisecond, Log: testLogger(t),
	})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer client.Close()
	var out bytes.Buffer
	if remoteErr, transportErr := client.Run(ctx, "uname -r", nil, &out, nil); remoteErr != nil || transportErr != nil {
		t.Fatalf("uname -r: %v, %v", remoteErr, transportErr)
	}
	sshAt := time.Since(start)
	if got := strings.TrimSpace(out.String()); got != img.KernelRelease {
		t.Errorf("uname -r = %q, want %q", got, img.KernelRelease)
	}
	// Under TCG the guest's CPU offers RDRAND, so its random pool is seeded at once and sshd
	// does not wait for jitter entropy.
	if vm.Accel() == "tcg" {
		out.Reset()
		if remoteErr, transportErr := client.Run(ctx, "grep -cw rdrand /proc/cpuinfo", nil, &out, nil); remoteErr != nil || transportErr != nil || strings.TrimSpace(out.String()) != "1" {
			t.Errorf("guest CPU without RDRAND under TCG: grep says %q, %v, %v", out.String(), remoteErr, transportErr)
		}
	}
	var marker time.Duration
	select {
	case marker = <-markerAt:
	default:
	}
	t.Logf("accel %s; QEMU listening after %v, %q on the console after %v, first command over SSH done after %v",
		vm.Accel(), started.Round(time.Millisecond), image.ReadyMarker, marker.Round(time.Millisecond), sshAt.Round(time.Millisecond))

	if err := client.Upload(ctx, strings.NewReader("payload\n"), "/tmp/lab-upload", 0o700); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	out.Reset()
	if remoteErr, transportErr := client.Run(ctx, "stat -c %a /tmp/lab-upload && cat /tmp/lab-upload", nil, &out, nil); remoteErr != nil || transportErr != nil || out.String() != "700\npayload\n" {
		t.Errorf("checking the upload: %q, %v, %v", out.String(), remoteErr, transportErr)
	}

	// A guest that hangs (QEMU stopped) is noticed by keepalives; one whose QEMU dies, at once.
	for _, tc := range []struct {
		name   string
		signal syscall.Signal
		within time.Duration
	}{
		{"frozen", syscall.SIGSTOP, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct{ remoteErr, transportErr error }
			done := make(chan result, 1)
			go func() {
				r, tr := client.Run(ctx, "sleep 60", nil, nil, nil)
				done <- result{r, tr}
			}()
			time.Sleep(500 * time.Millisecond)
			syscall.Kill(vm.PID(), tc.signal)
			defer syscall.Kill(vm.PID(), syscall.SIGCONT)
			signalled := time.Now()
			select {
			case r := <-done:
				var te *remote.TransportError
				if r.remoteErr != nil || !errors.As(r.transportErr, &te) {
					t.Errorf("Run = %v, %v; want a *remote.TransportError", r.remoteErr, r.transportErr)
				}
				t.Logf("Run returned %v after SIG%v: %v", time.Since(signalled).Round(time.Millisecond), tc.signal, r.transportErr)
				if took := time.Since(signalled); took > tc.within {
					t.Errorf("noticed after %v, want within %v", took, tc.within)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not notice")
			}
		})
	}
}

// TestDialAbortsWhenGuestDies: waiting for SSH on a guest without sshd ends as soon as its
// QEMU exits, not at the deadline.
func TestDialAbortsWhenGuestDies(t *testing.T) {
	vm := startVM(t, Config{
		Arch: "amd64", Kernel: testKernel(t), Initrd: busyboxInitrd(t, sleeperScript),
		Append: "console=ttyS0 panic=-1 quiet", Accel: "tcg",
	})
	signer, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := remote.Dial(context.Background(), remote.Config{
			Addr: vm.SSHAddr(), User: "root", Signer: signer, HostKey: ssh.InsecureIgnoreHostKey(),
			Deadline: 5 * time.Minute, Abort: vm.Exited(),
		})
		done <- err
	}()
	time.Sleep(2 * time.Second)
	syscall.Kill(vm.PID(), syscall.SIGKILL)
	killed := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, remote.ErrAborted) {
			t.Errorf("Dial = %v, want ErrAborted", err)
		}
		t.Logf("Dial returned %v after QEMU was killed: %v", time.Since(killed).Round(time.Millisecond), err)
		if time.Since(killed) > time.Second {
			t.Errorf("Dial took %v to notice", time.Since(killed))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Dial still waiting 30s after QEMU died")
	}
}

// TestWaitConsole: a line is found whether it was written before the wait
// began, arrives in pieces, or follows more output than the console keeps;
// the wait ends with the context or with QEMU.
func TestWaitConsole(t *testing.T) {
	re := regexp.MustCompile(`READY (\w+)`)
	newVM := func() *VM { return &VM{console: &console{}, exited: make(chan struct{})} }

	t.Run("written before", func(t *testing.T) {
		vm := newVM()
		fmt.Fprintf(vm.console, "boot\r\n\x1b[0mREADY early\r\n")
		m, err := vm.WaitConsole(context.Background(), re)
		if err != nil || m[1] != "early" {
			t.Fatalf("WaitConsole = %q, %v; want early", m, err)
		}
	})
	t.Run("in pieces after much output", func(t *testing.T) {
		vm := newVM()
		go func() {
			vm.console.Write(bytes.Repeat([]byte("noise line\n"), 2*consoleKeep/11))
			for _, p := range []string{"REA", "DY la", "te\r", "\n"} {
				time.Sleep(5 * time.Millisecond)
				vm.console.Write([]byte(p))
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := vm.WaitConsole(ctx, re)
		if err != nil || m[1] != "late" {
			t.Fatalf("WaitConsole = %q, %v; want late", m, err)
		}
	})
	t.Run("a line without its newline does not count", func(t *testing.T) {
		vm := newVM()
		vm.console.Write([]byte("READY half"))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if m, err := vm.WaitConsole(ctx, re); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errConsoleNotSeen) {
			t.Fatalf("WaitConsole = %q, %v; want the deadline", m, err)
		}
	})
	t.Run("QEMU exits", func(t *testing.T) {
		vm := newVM()
		go func() {
			vm.console.Write([]byte("no luck\n"))
			close(vm.exited)
		}()
		if _, err := vm.WaitConsole(context.Background(), re); err == nil || !strings.Contains(err.Error(), "QEMU exited") {
			t.Fatalf("WaitConsole = %v, want QEMU exited", err)
		}
	})
	t.Run("detached console file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "console.log")
		if err := os.WriteFile(path, []byte("boot\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		vm := newVM()
		vm.detachedConsole = path
		go func() {
			time.Sleep(3 * consolePoll)
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString("READY file\n")
			f.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := vm.WaitConsole(ctx, re)
		if err != nil || m[1] != "file" {
			t.Fatalf("WaitConsole = %q, %v; want file", m, err)
		}
	})
}
