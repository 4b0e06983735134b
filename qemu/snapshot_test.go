//go:build linux

package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"lab/image"
	"lab/internal/testenv"
	"lab/remote"
)

// guestCmdline is the kernel command line lab's qemu provider boots microVMs with.
const guestCmdline = "console=ttyS0 panic=-1 quiet mitigations=off"

// imageNamed returns the image package's guest of that name (image.Defaults), built once per
// run.
func imageNamed(t testing.TB, name string) *image.Image {
	t.Helper()
	testenv.NeedTools(t, "qemu-system-x86_64", "apt-get", "dpkg-deb")
	builtMu.Lock()
	defer builtMu.Unlock()
	if img := built[name]; img != nil {
		return img
	}
	spec, ok := image.DefaultSpec(name)
	if !ok {
		t.Fatalf("image has no %s spec", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := image.Build(ctx, spec, testCache, nil)
	if err != nil {
		t.Fatalf("building the %s guest image: %v", name, err)
	}
	built[name] = img
	return img
}

// snapshotConfig is how lab's qemu provider boots img with snapshots in dir.
func snapshotConfig(img *image.Image, dir string) Config {
	return Config{
		Arch: "amd64", Kernel: img.Kernel, Initrd: img.Initrd, Append: guestCmdline,
		MemoryMB: 256, Accel: "tcg",
		Snapshot: dir, SnapshotKey: img.Hash, ReadyMarker: image.ReadyMarker,
	}
}

// dialGuest connects to vm as root.
func dialGuest(t testing.TB, img *image.Image, vm *VM) *remote.Client {
	t.Helper()
	hostKey, err := img.HostPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := img.ClientSigner()
	if err != nil {
		t.Fatal(err)
	}
	client, err := remote.Dial(context.Background(), remote.Config{
		Addr: vm.SSHAddr(), User: img.User, Signer: signer, HostKey: ssh.FixedHostKey(hostKey),
		Deadline: bootTimeout, Abort: vm.Exited(), MaxBannerWait: time.Second,
	})
	if err != nil {
		t.Fatalf("dialing %s: %v\nconsole:\n%s", vm.SSHAddr(), err, vm.ConsoleTail(30))
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// guestRun runs cmd on the guest and returns its output, failing the test on any error.
func guestRun(t testing.TB, c *remote.Client, cmd string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if remoteErr, transportErr := c.Run(context.Background(), cmd, nil, &out, &errOut); remoteErr != nil || transportErr != nil {
		t.Fatalf("%s: %v, %v: %s", cmd, remoteErr, transportErr, errOut.String())
	}
	return strings.TrimSpace(out.String())
}

// logBuffer is a logger whose output a test reads, also passed on to t.Log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogBuffer(t testing.TB) (*logBuffer, hclog.Logger) {
	lb := &logBuffer{t: t}
	return lb, hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: lb})
}

// readMeta reads the snapshot.json of the snapshot in dir.
func readMeta(t testing.TB, dir string) snapshotMeta {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, snapshotMetaFile))
	if err != nil {
		t.Fatal(err)
	}
	var m snapshotMeta
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// vmgenidReseeds says which kernels reseed their random number generator from vmgenid, as
// their configs say (CONFIG_VMGENID: Debian's 6.12 cloud kernel builds the driver in; the
// 5.10 and 6.1 cloud kernels set no CONFIG_VIRT_DRIVERS, so have no driver) and the tests
// observe (the kernel logs "crng reseeded due to virtual machine fork").
var vmgenidReseeds = map[string]bool{"linux-5.10": false, "linux-6.1": false, "linux-6.12": true}

const reseedMessage = "crng reseeded due to virtual machine fork"

// TestSnapshotRestore boots each Debian kernel cold, which saves a snapshot, restores it, and
// checks that the restored guest is the same machine (kernel, sshd, pinned host key), runs
// its devices (a command's output travels through virtio-net), reseeds from vmgenid where the
// kernel can, and gets its clock set by image.ResumeCommand.
func TestSnapshotRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots guests")
	}
	for _, name := range []string{"linux-5.10", "linux-6.1", "linux-6.12"} {
		t.Run(name, func(t *testing.T) {
			img := imageNamed(t, name)
			dir := t.TempDir()
			cfg := snapshotConfig(img, dir)

			cold := startVM(t, cfg)
			if cold.Restored() || cold.Snapshot() == "" {
				t.Fatalf("first start: Restored %v, Snapshot %q; want a cold boot that saved a snapshot", cold.Restored(), cold.Snapshot())
			}
			// The layout image.Prune's tests lay out: <id>/{snapshot.json,ram,state} and <id>.lock,
			// and the QEMU version cache beside the image's snapshot dir.
			id := filepath.Base(cold.Snapshot())
			if got, want := paths(t, dir), []string{id, id + ".lock", id + "/ram", id + "/snapshot.json", id + "/state"}; !slices.Equal(got, want) {
				t.Errorf("snapshot dir holds %v, want %v", got, want)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), versionCacheFile)); err != nil && name == "linux-5.10" {
				t.Errorf("no QEMU version cache: %v", err)
			}
			meta := readMeta(t, cold.Snapshot())
			t.Logf("snapshot: boot %v, guest paused %v to save %d MB of RAM and %d KB of state",
				time.Duration(meta.Boot), time.Duration(meta.Pause), meta.RAM.Data>>20, meta.State.Size>>10)
			c := dialGuest(t, img, cold)
			if got := guestRun(t, c, "uname -r"); got != img.KernelRelease {
				t.Errorf("cold guest: uname -r = %q, want %q", got, img.KernelRelease)
			}
			if err := cold.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}

			start := time.Now()
			vm := startVM(t, cfg)
			if !vm.Restored() || vm.Snapshot() != cold.Snapshot() {
				t.Fatalf("second start: Restored %v, Snapshot %q; want restored from %s", vm.Restored(), vm.Snapshot(), cold.Snapshot())
			}
			c = dialGuest(t, img, vm)
			t.Logf("restored guest answered SSH %v after Start was called", time.Since(start).Round(time.Millisecond))
			if got := guestRun(t, c, "uname -r"); got != img.KernelRelease {
				t.Errorf("restored guest: uname -r = %q, want %q", got, img.KernelRelease)
			}
			if got := guestRun(t, c, "head -c 1000000 /dev/zero | wc -c"); got != "1000000" {
				t.Errorf("restored guest: a 1 MB pipe gave %q", got)
			}

			dmesg := guestRun(t, c, "dmesg")
			if got, want := strings.Contains(dmesg, reseedMessage), vmgenidReseeds[name]; got != want {
				t.Errorf("restored %s: dmesg has %q: %v, want %v", name, reseedMessage, got, want)
			} else {
				t.Logf("%s reseeds from vmgenid on restore: %v", name, got)
			}

			// The clock stands at the snapshot's time until ResumeCommand sets it.
			before := guestTime(t, c)
			t.Logf("guest clock before ResumeCommand: %v behind", time.Since(before).Round(time.Millisecond))
			guestRun(t, c, image.ResumeCommand(time.Now()))
			if off := time.Since(guestTime(t, c)); off < -100*time.Millisecond || off > 1100*time.Millisecond {
				t.Errorf("right after ResumeCommand the guest clock is %v behind, want 0 to 1 s", off)
			}
			time.Sleep(1100 * time.Millisecond)
			off := time.Since(guestTime(t, c))
			t.Logf("guest clock 1.1 s after ResumeCommand: %v behind", off.Round(time.Millisecond))
			if off < -50*time.Millisecond || off > 250*time.Millisecond {
				t.Errorf("1.1 s after ResumeCommand the guest clock is %v behind, want within 0.25 s", off)
			}
		})
	}
}

// guestTime reads the guest's clock and returns it corrected for half the command's round
// trip.
func guestTime(t testing.TB, c *remote.Client) time.Time {
	t.Helper()
	sent := time.Now()
	// busybox date has no %N; adjtimex shows the time in microseconds.
	out := guestRun(t, c, `adjtimex | awk '/tv_sec/ {s = $2} /tv_usec/ {u = $2} END {print s, u}'`)
	rtt := time.Since(sent)
	f := strings.Fields(out)
	if len(f) != 2 {
		t.Fatalf("guest time: adjtimex says %q", out)
	}
	sec, err1 := strconv.ParseInt(f[0], 10, 64)
	usec, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("guest time: adjtimex says %q", out)
	}
	return time.Unix(sec, usec*1000).Add(rtt / 2)
}

// TestRestoredGuestsAreSeparate restores two guests at once from one snapshot and checks that
// they are two machines: their own ports on the host, their own files and sockets, their own
// randomness where the kernel reseeds from vmgenid.
func TestRestoredGuestsAreSeparate(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots guests")
	}
	for _, name := range []string{"linux-6.1", "linux-6.12"} {
		t.Run(name, func(t *testing.T) {
			img := imageNamed(t, name)
			cfg := snapshotConfig(img, t.TempDir())
			first := startVM(t, cfg)
			if err := first.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			var vms [2]*VM
			var wg sync.WaitGroup
			for i := range vms {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := cfg
					c.Name = fmt.Sprintf("lab test separate %d", i)
					vm, err := Start(context.Background(), c)
					if err != nil {
						t.Errorf("Start %d: %v", i, err)
						return
					}
					vms[i] = vm
				}()
			}
			wg.Wait()
			for _, vm := range vms {
				if vm != nil {
					t.Cleanup(func() { vm.Stop(context.Background()) })
				}
			}
			if t.Failed() {
				return
			}
			a, b := vms[0], vms[1]
			if !a.Restored() || !b.Restored() {
				t.Fatalf("Restored = %v, %v; want both restored", a.Restored(), b.Restored())
			}
			if a.SSHAddr() == b.SSHAddr() {
				t.Fatalf("both guests forward %s", a.SSHAddr())
			}
			ca, cb := dialGuest(t, img, a), dialGuest(t, img, b)

			// A listening socket and a file made in A exist in A only.
			guestRun(t, ca, "(nc -l -p 4711 </dev/null >/dev/null 2>&1 &); echo a >/tmp/only-in-a")
			listening := func(c *remote.Client) bool {
				// 4711 is 0x1267; state 0A is LISTEN.
				return strings.Contains(guestRun(t, c, "cat /proc/net/tcp /proc/net/tcp6"), ":1267 00000000:0000 0A") ||
					strings.Contains(guestRun(t, c, "cat /proc/net/tcp6"), ":1267 00000000000000000000000000000000:0000 0A")
			}
			deadline := time.Now().Add(5 * time.Second)
			for !listening(ca) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if !listening(ca) {
				t.Fatal("guest A does not listen on 4711 after starting nc")
			}
			if listening(cb) {
				t.Error("guest B listens on 4711, which only A bound")
			}
			if got := guestRun(t, cb, "cat /tmp/only-in-a 2>/dev/null || echo absent"); got != "absent" {
				t.Errorf("guest B has A's file: %q", got)
			}
			// B can bind the port A holds.
			guestRun(t, cb, "(nc -l -p 4711 </dev/null >/dev/null 2>&1 &)")
			deadline = time.Now().Add(5 * time.Second)
			for !listening(cb) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if !listening(cb) {
				t.Error("guest B could not listen on 4711 while A does")
			}

			// Random numbers: without vmgenid the guests share the kernel's state until it
			// reseeds, which is what TestVMGenIDRandomness looks at; here only the reseeding
			// kernels must differ at once.
			ra, rb := guestRun(t, ca, "head -c 16 /dev/urandom | od -An -tx1"), guestRun(t, cb, "head -c 16 /dev/urandom | od -An -tx1")
			t.Logf("%s: first random bytes over SSH: A %s, B %s", name, ra, rb)
			if vmgenidReseeds[name] && ra == rb {
				t.Errorf("%s reseeds from vmgenid, yet both guests read %s", name, ra)
			}
			if ba, bb := guestRun(t, ca, "cat /proc/sys/kernel/random/boot_id"), guestRun(t, cb, "cat /proc/sys/kernel/random/boot_id"); ba != bb {
				t.Logf("boot_id differs (%s, %s)", ba, bb)
			} else {
				t.Logf("both guests have boot_id %s: it is made once, at boot", ba)
			}
		})
	}
}

// TestSnapshotFallback damages the snapshot in each way a cache can be damaged, or makes it
// another QEMU's, and checks that Start then boots cold, says so once, and replaces the
// snapshot with one that restores.
func TestSnapshotFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots guests")
	}
	img := imageNamed(t, "linux-6.1")
	cfg := snapshotConfig(img, t.TempDir())
	first := startVM(t, cfg)
	dir := first.Snapshot()
	if dir == "" {
		t.Fatal("the first start saved no snapshot")
	}
	first.Stop(context.Background())

	editMeta := func(t *testing.T, edit func(*snapshotMeta)) {
		m := readMeta(t, dir)
		edit(&m)
		b, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(dir, snapshotMetaFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T)
		why    string // in the warning
	}{
		{"state damaged", func(t *testing.T) { flipByte(t, filepath.Join(dir, snapshotStateFile), 1000) }, "state is damaged"},
		{"RAM damaged", func(t *testing.T) { flipByte(t, filepath.Join(dir, snapshotRAMFile), -1) }, "ram is damaged"},
		{"RAM truncated", func(t *testing.T) {
			if err := os.Truncate(filepath.Join(dir, snapshotRAMFile), 64<<20); err != nil {
				t.Fatal(err)
			}
		}, "ram is 67108864 bytes"},
		{"another QEMU version", func(t *testing.T) {
			editMeta(t, func(m *snapshotMeta) { m.Key.QEMU.Version = "QEMU emulator version 6.2.0" })
		}, `QEMU emulator version 6.2.0`},
		{"unreadable snapshot.json", func(t *testing.T) {
			os.WriteFile(filepath.Join(dir, snapshotMetaFile), []byte("{"), 0o644)
		}, "reading snapshot.json"},
		// Checksums that fit a state QEMU cannot load: QEMU's own refusal is what is tested.
		{"state QEMU refuses", func(t *testing.T) {
			garbage := bytes.Repeat([]byte("not a migration stream\n"), 100)
			os.WriteFile(filepath.Join(dir, snapshotStateFile), garbage, 0o600)
			f, _ := os.Open(filepath.Join(dir, snapshotStateFile))
			sum, _ := sumFile(f)
			f.Close()
			editMeta(t, func(m *snapshotMeta) { m.State = sum })
		}, "snapshot failed to load"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := readMeta(t, dir).ID
			tc.damage(t)
			logs, log := newLogBuffer(t)
			c := cfg
			c.Log = log
			vm := startVM(t, c)
			if vm.Restored() || vm.Snapshot() != dir {
				t.Fatalf("Restored %v, Snapshot %q: want a cold boot that saved %s", vm.Restored(), vm.Snapshot(), dir)
			}
			if n := strings.Count(logs.String(), "booting cold and replacing it"); n != 1 {
				t.Errorf("the fallback was logged %d times, want once", n)
			}
			if !strings.Contains(logs.String(), tc.why) {
				t.Errorf("the log does not say %q", tc.why)
			}
			if id := readMeta(t, dir).ID; id == before {
				t.Errorf("the snapshot was not replaced (id %s)", id)
			}
			vm.Stop(context.Background())
			assertNoDebris(t, cfg.Snapshot)
		})
	}
	// The replaced snapshot restores, also when the first port it picks is taken (a new
	// QEMU then starts on another port with the same files).
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	calls := 0
	pickPort = func() (int, error) {
		if calls++; calls == 1 {
			return taken.Addr().(*net.TCPAddr).Port, nil
		}
		return freePort()
	}
	defer func() { pickPort = freePort }()
	again := startVM(t, cfg)
	pickPort = freePort
	if !again.Restored() || calls != 2 {
		t.Fatalf("Restored %v after %d ports; want restored on the second", again.Restored(), calls)
	}
	guestRun(t, dialGuest(t, img, again), "true")
}

// flipByte inverts one byte of the file: at off, or with off < 0 the first non-zero one.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if off < 0 {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		off = int64(bytes.IndexFunc(b, func(r rune) bool { return r != 0 }))
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// assertNoDebris checks that no half-made snapshot is left in dir.
func assertNoDebris(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") || strings.Contains(e.Name(), ".old-") {
			t.Errorf("debris left in the snapshot dir: %s", e.Name())
		}
	}
}

// shmFiles lists what /dev/shm holds and which tmpfs files this process has open: a guest's
// RAM must be in neither once its QEMU is gone.
func shmFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	entries, _ := os.ReadDir("/dev/shm")
	for _, e := range entries {
		out = append(out, "/dev/shm/"+e.Name())
	}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if link, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(link, "/dev/shm/") {
			out = append(out, "fd "+fd.Name()+" -> "+link)
		}
	}
	return out
}

// TestKilledDuringRestore kills QEMU while it restores (once it runs, before its state is
// loaded): Start must fail without booting cold or replacing the snapshot, which is not at
// fault, and leave no QEMU and no RAM behind. The snapshot restores afterwards.
func TestKilledDuringRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots guests")
	}
	img := imageNamed(t, "linux-6.1")
	cfg := snapshotConfig(img, t.TempDir())
	first := startVM(t, cfg)
	first.Stop(context.Background())
	dir := first.Snapshot()
	before := readMeta(t, dir).ID
	shmBefore := shmFiles(t)

	cfg.Name = "lab test killed during restore " + t.TempDir()
	cfg.Log = testLogger(t)
	restoreHook = func(pid int) { syscall.Kill(pid, syscall.SIGKILL) }
	t.Cleanup(func() { restoreHook = nil })
	vm, err := Start(context.Background(), cfg)
	restoreHook = nil
	if err == nil {
		vm.Stop(context.Background())
		t.Fatalf("Start succeeded (restored %v) though QEMU was killed", vm.Restored())
	}
	t.Logf("Start: %v", err)
	if !strings.Contains(err.Error(), "killed") {
		t.Errorf("the error does not say QEMU was killed: %v", err)
	}
	if left := qemuWithArg(cfg.Name); len(left) > 0 {
		t.Errorf("QEMU still running: %v", left)
	}
	if after := shmFiles(t); !slices.Equal(after, shmBefore) {
		t.Errorf("/dev/shm or this process's tmpfs files changed: %v, before %v", after, shmBefore)
	}
	if id := readMeta(t, dir).ID; id != before {
		t.Errorf("the snapshot was replaced (%s -> %s), though it was not at fault", before, id)
	}
	assertNoDebris(t, cfg.Snapshot)

	cfg.Name = ""
	again := startVM(t, cfg)
	if !again.Restored() {
		t.Fatal("the snapshot did not restore after the kill")
	}
	dialGuest(t, img, again)
	again.Stop(context.Background())
	if after := shmFiles(t); !slices.Equal(after, shmBefore) {
		t.Errorf("after a restored guest stopped, /dev/shm or this process's tmpfs files changed: %v, before %v", after, shmBefore)
	}
}

// TestConcurrentColdStarts starts two guests of one machine at once with no snapshot: one
// boots cold and saves it, the other waits for it and restores, and one whole snapshot is
// left.
func TestConcurrentColdStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots guests")
	}
	img := imageNamed(t, "linux-6.1")
	cfg := snapshotConfig(img, t.TempDir())
	var vms [2]*VM
	var wg sync.WaitGroup
	for i := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cfg
			c.Log = testLogger(t)
			vm, err := Start(context.Background(), c)
			if err != nil {
				t.Errorf("Start %d: %v", i, err)
				return
			}
			t.Cleanup(func() { vm.Stop(context.Background()) })
			vms[i] = vm
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if vms[0].Restored() == vms[1].Restored() {
		t.Errorf("Restored = %v, %v; want one cold boot and one restore", vms[0].Restored(), vms[1].Restored())
	}
	for _, vm := range vms {
		dialGuest(t, img, vm)
	}
	entries, _ := os.ReadDir(cfg.Snapshot)
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) != 1 {
		t.Errorf("snapshot dir holds %v, want one snapshot", dirs)
	}
	assertNoDebris(t, cfg.Snapshot)
}

// paths lists what dir holds, relative to it, sorted.
func paths(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// TestAgentInSnapshot boots a guest from image.AgentInitrd's initramfs and restores it: the
// restored guest has the very agent build at image.GuestAgentPath, without an upload. A new
// agent build is a new snapshot, and the old one goes once its initramfs is gone.
func TestAgentInSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots guests")
	}
	img := imageNamed(t, "linux-6.1")
	// A copy of the image, so that its snapshot dir, where the agent initramfs lives, is
	// this test's.
	cache := t.TempDir()
	own := *img
	own.Dir = filepath.Join(cache, "images", filepath.Base(img.Dir))
	agent := filepath.Join(cache, "lab-agent")
	write := func(content string) {
		if err := os.WriteFile(agent, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("#!/bin/sh\necho agent build 1\n")
	initrd, key, err := image.AgentInitrd(&own, agent)
	if err != nil {
		t.Fatal(err)
	}
	cfg := snapshotConfig(img, own.SnapshotDir())
	cfg.Initrd, cfg.SnapshotKey = initrd, img.Hash+" "+key
	first := startVM(t, cfg)
	first.Stop(context.Background())
	vm := startVM(t, cfg)
	if !vm.Restored() {
		t.Fatal("not restored")
	}
	c := dialGuest(t, img, vm)
	if got := guestRun(t, c, image.GuestAgentPath); got != "agent build 1" {
		t.Errorf("the restored guest's agent says %q", got)
	}
	vm.Stop(context.Background())

	// A new build: a new key, a cold boot, and the first build's snapshot stays until its
	// initramfs is gone.
	write("#!/bin/sh\necho agent build 2\n")
	initrd2, key2, err := image.AgentInitrd(&own, agent)
	if err != nil || key2 == key {
		t.Fatalf("second build: %v, key %s (first %s)", err, key2, key)
	}
	os.Remove(initrd) // as AgentInitrd does to old builds beyond the newest few
	cfg.Initrd, cfg.SnapshotKey = initrd2, img.Hash+" "+key2
	second := startVM(t, cfg)
	if second.Restored() || second.Snapshot() == first.Snapshot() {
		t.Fatalf("a new agent build restored %s", second.Snapshot())
	}
	if _, err := os.Stat(first.Snapshot()); err == nil {
		t.Errorf("the first build's snapshot %s is still there, though its initramfs is gone", first.Snapshot())
	}
	c = dialGuest(t, img, second)
	if got := guestRun(t, c, image.GuestAgentPath); got != "agent build 2" {
		t.Errorf("the new guest's agent says %q", got)
	}
}

// TestSnapshotDetached keeps a guest as lab repro --keep does (Detach: the console goes
// straight to a file, where Start finds the ready marker) and restores one detached.
func TestSnapshotDetached(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots guests")
	}
	img := imageNamed(t, "linux-6.1")
	cfg := snapshotConfig(img, t.TempDir())
	cfg.Detach = true
	for i, want := range []bool{false, true} {
		c := cfg
		c.ConsolePath = filepath.Join(t.TempDir(), "console.log")
		vm := startVM(t, c)
		if vm.Restored() != want || vm.Snapshot() == "" {
			t.Fatalf("start %d: Restored %v, Snapshot %q; want restored %v", i, vm.Restored(), vm.Snapshot(), want)
		}
		guestRun(t, dialGuest(t, img, vm), "true")
		vm.Stop(context.Background())
		logged, _ := os.ReadFile(c.ConsolePath)
		if want && !strings.Contains(string(logged), "lab: restoring snapshot") {
			t.Errorf("the restored guest's console does not say it was restored:\n%s", logged)
		}
	}
}

// TestLabDies kills a process that started a guest, as a crash or SIGKILL would end lab,
// while the guest boots cold to be snapshotted and while a restored guest runs: its QEMU must
// die with it (Pdeathsig) and nothing must be left in /dev/shm. The cold boot's RAM is an
// unnamed file whose last holders were those two processes.
func TestLabDies(t *testing.T) {
	if os.Getenv("LAB_SNAPSHOT_CHILD") != "" {
		return // the child's part is TestLabDiesChild
	}
	if testing.Short() {
		t.Skip("skipping: boots guests")
	}
	img := imageNamed(t, "linux-6.1")
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		ready string // what the child prints once it got that far
	}{
		{"during a cold boot that saves", "qemu started"},
		{"with a restored guest running", "RESTORED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ready == "RESTORED" {
				// The snapshot to restore.
				startVM(t, snapshotConfig(img, dir)).Stop(context.Background())
			}
			shmBefore := shmFiles(t)
			name := "lab test lab dies " + t.Name()
			child := exec.Command(os.Args[0], "-test.run=^TestLabDiesChild$", "-test.v")
			child.Env = append(os.Environ(), "LAB_SNAPSHOT_CHILD="+dir, "LAB_SNAPSHOT_NAME="+name, "LAB_IMAGE_CACHE="+testCache)
			out := &logBuffer{t: t}
			child.Stdout, child.Stderr = out, out
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { child.Process.Kill(); child.Wait() })
			deadline := time.Now().Add(bootTimeout)
			var pids []int
			for time.Now().Before(deadline) {
				pids = qemuWithArg(name)
				if len(pids) > 0 && (tc.ready == "" || strings.Contains(out.String(), tc.ready)) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if len(pids) == 0 || !strings.Contains(out.String(), tc.ready) {
				t.Fatalf("the child's QEMU never ran (or was not restored):\n%s", out.String())
			}
			if tc.ready != "RESTORED" && strings.Contains(out.String(), "snapshot saved") {
				t.Log("the snapshot was saved before the kill; the case ran as a plain kill")
			}
			child.Process.Kill()
			child.Wait()
			for gone := time.Now().Add(5 * time.Second); time.Now().Before(gone) && len(qemuWithArg(name)) > 0; {
				time.Sleep(50 * time.Millisecond)
			}
			if left := qemuWithArg(name); len(left) > 0 {
				t.Errorf("QEMU %v outlived the process that started it", left)
				for _, pid := range left {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			if after := shmFiles(t); !slices.Equal(after, shmBefore) {
				t.Errorf("/dev/shm changed: %v, before %v", after, shmBefore)
			}
		})
	}
}

// TestLabDiesChild is TestLabDies's child: it starts a guest with snapshots in
// $LAB_SNAPSHOT_CHILD, says RESTORED if it was restored, and waits to be killed.
func TestLabDiesChild(t *testing.T) {
	dir := os.Getenv("LAB_SNAPSHOT_CHILD")
	if dir == "" {
		t.Skip("run by TestLabDies")
	}
	img := imageNamed(t, "linux-6.1")
	cfg := snapshotConfig(img, dir)
	cfg.Name = os.Getenv("LAB_SNAPSHOT_NAME")
	cfg.Log = testLogger(t)
	vm, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Restored() {
		fmt.Println("RESTORED")
	}
	time.Sleep(time.Hour)
}

// TestScanRAM checks the RAM copy and its checksum on a sparse file: only non-zero pages are
// stored, the copy reads back the same, and zeros written out or left as holes give the same
// checksum, so how a file system keeps them does not matter.
func TestScanRAM(t *testing.T) {
	dir := t.TempDir()
	const size = 8 << 20
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	page := bytes.Repeat([]byte{0xab}, pageSize)
	for _, off := range []int64{0, 3 * pageSize, 2 << 20, size - pageSize} {
		src.WriteAt(page, off)
	}
	src.WriteAt(make([]byte, 64*pageSize), 4<<20) // written zeros: data, but no content
	src.Truncate(size)
	dst, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	sum, err := scanRAM(src, size, dst)
	if err != nil {
		t.Fatal(err)
	}
	dst.Truncate(size)
	if sum.Data != 4*pageSize || sum.Size != size {
		t.Errorf("scanRAM = %+v, want 4 pages of data in %d bytes", sum, size)
	}
	a, _ := os.ReadFile(src.Name())
	b, _ := os.ReadFile(dst.Name())
	if !bytes.Equal(a, b) {
		t.Error("the copy differs from the original")
	}
	var st syscall.Stat_t
	syscall.Fstat(int(dst.Fd()), &st)
	if st.Blocks*512 > 64*pageSize {
		t.Errorf("the copy takes %d bytes on disk, want about 4 pages", st.Blocks*512)
	}
	again, err := scanRAM(dst, size, nil)
	if err != nil || again.CRC32C != sum.CRC32C {
		t.Errorf("the copy's checksum %08x (%v), want %08x", again.CRC32C, err, sum.CRC32C)
	}
	// One bit anywhere changes it.
	dst.WriteAt([]byte{0xaa}, 3*pageSize+100)
	if bad, _ := scanRAM(dst, size, nil); bad.CRC32C == sum.CRC32C {
		t.Error("a changed byte kept the checksum")
	}
}

// TestSnapshotKeyMismatch: every part of the key that differs is named.
func TestSnapshotKeyMismatch(t *testing.T) {
	base := snapshotKey{
		Format: snapshotFormat, Image: "abc",
		QEMU:  qemuID{Path: "/usr/bin/qemu-system-x86_64", Version: "QEMU emulator version 7.2.22", Size: 1},
		Args:  []string{"-m", "256"},
		Files: []fileID{{Path: "/k", Size: 1}},
	}
	for _, tc := range []struct {
		name string
		edit func(*snapshotKey)
		want string
	}{
		{"same", func(*snapshotKey) {}, ""},
		{"format", func(k *snapshotKey) { k.Format++ }, "snapshot format"},
		{"version", func(k *snapshotKey) { k.QEMU.Version = "QEMU emulator version 8.2.2" }, `made by "QEMU emulator version 8.2.2"`},
		{"binary rebuilt", func(k *snapshotKey) { k.QEMU.Size = 2 }, "another QEMU binary"},
		{"image", func(k *snapshotKey) { k.Image = "def" }, "from image"},
		{"memory", func(k *snapshotKey) { k.Args = []string{"-m", "512"} }, "another machine"},
		{"kernel file", func(k *snapshotKey) { k.Files[0].Size = 2 }, "other kernel or initrd"},
		{"host", func(k *snapshotKey) { k.Host = "other" }, "another host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := base
			k.Files = slices.Clone(base.Files)
			tc.edit(&k)
			got := k.mismatch(base)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("mismatch = %q, want %q", got, tc.want)
			}
			if (got == "") != (k.id() == base.id()) {
				t.Errorf("id %s vs %s disagrees with mismatch %q", k.id(), base.id(), got)
			}
		})
	}
}

// TestConsoleWatch: the watched line is seen across writes that split it, and only once.
func TestConsoleWatch(t *testing.T) {
	c := &console{}
	c.Write([]byte("booting\nlab-guest: sshd"))
	seen := c.watch("lab-guest: sshd ready")
	select {
	case <-seen:
		t.Fatal("seen before the line is complete")
	default:
	}
	c.Write([]byte(" re"))
	c.Write([]byte("ady\nmore"))
	select {
	case <-seen:
	default:
		t.Fatal("not seen after the line was written in pieces")
	}
	c.Write([]byte("lab-guest: sshd ready\n")) // must not close seen again
}

// TestSnapshotArgs: a snapshotted machine's RAM is the file on fd 4, shared when booted cold
// and copy-on-write when restored; the key's arguments name neither, nor the port or -name.
func TestSnapshotArgs(t *testing.T) {
	line := func(args []string) string { return " " + strings.Join(args, " ") + " " }
	cold, restore := line(snapshotArgs(256, "on", false)), line(snapshotArgs(256, "off", true))
	for _, want := range []string{"-object memory-backend-file,id=ram0,size=256M,mem-path=/dev/fd/4,share=on", "-machine memory-backend=ram0",
		"-device vmgenid,guid=auto", "-chardev socket,id=qmp,fd=3", "-mon chardev=qmp,mode=control"} {
		if !strings.Contains(cold, " "+want+" ") {
			t.Errorf("cold boot args lack %q:%s", want, cold)
		}
	}
	if !strings.Contains(restore, "share=off") || !strings.Contains(restore, " -incoming defer ") || strings.Contains(cold, "-incoming") {
		t.Errorf("restore args%s, cold%s", restore, cold)
	}
	cfg := Config{Arch: "amd64", Kernel: "/k", Initrd: "/i", Append: "console=ttyS0", MemoryMB: 256, Name: "run 1"}
	_, info, _ := lookupArch("amd64")
	key := line(cfg.machineArgs(info, "tcg"))
	cfg.Name = "run 2"
	if other := line(cfg.machineArgs(info, "tcg")); other != key {
		t.Errorf("-name changed the key:%s\n%s", key, other)
	}
	for _, not := range []string{"mem-path", "share=", "-incoming", "-name", "hostfwd=tcp:127.0.0.1:2222"} {
		if strings.Contains(key, not) {
			t.Errorf("the key's args contain %q:%s", not, key)
		}
	}
	for _, want := range []string{"-m 256", "-kernel /k", "-initrd /i", "-append console=ttyS0", "-accel tcg", "-device vmgenid,guid=auto"} {
		if !strings.Contains(key, " "+want+" ") {
			t.Errorf("the key's args lack %q:%s", want, key)
		}
	}
}
