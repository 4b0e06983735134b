package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"lab/internal/testenv"
)

// testCache is shared by the tests of one run so that each image is built once. LAB_IMAGE_CACHE
// keeps it across runs (then builds after the first are cache hits).
var testCache string

func TestMain(m *testing.M) { testenv.RunWithCache(m, "lab-image-test-", &testCache) }

var (
	buildMu   sync.Mutex
	buildTime = map[string]time.Duration{} // first Build of each image in this run
)

// buildImage builds spec in the shared cache, skipping (outside CI) if the mirror is unreachable.
func buildImage(t *testing.T, spec Spec) *Image {
	t.Helper()
	testenv.NeedTools(t, "apt-get", "apt-cache", "dpkg-deb")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	log := hclog.New(&hclog.LoggerOptions{Output: t.Output(), Level: hclog.Info})
	start := time.Now()
	img, err := Build(ctx, spec, testCache, log)
	if errors.Is(err, ErrUnavailable) && os.Getenv("CI") == "" {
		t.Skipf("skipping: cannot fetch Debian packages: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	buildMu.Lock()
	if _, ok := buildTime[spec.Name]; !ok {
		buildTime[spec.Name] = time.Since(start)
	}
	buildMu.Unlock()
	return img
}

func defaultSpec(t *testing.T, name string) Spec {
	t.Helper()
	s, ok := DefaultSpec(name)
	if !ok {
		t.Fatalf("no default spec %q", name)
	}
	return s
}

func TestBuildBookworm(t *testing.T) {
	spec := defaultSpec(t, "linux-6.1")
	start := time.Now()
	img := buildImage(t, spec)
	first := time.Since(start)

	for _, f := range []string{img.Kernel, img.Initrd, img.HostKey, img.ClientKey} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("image file %s missing or empty: %v", f, err)
		}
	}
	if fi, err := os.Stat(img.ClientKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("client key mode = %v, want 0600 (err %v)", fi.Mode().Perm(), err)
	}
	if !strings.HasPrefix(img.KernelRelease, "6.1.") || !strings.HasPrefix(img.KernelPackage, "linux-image-6.1.") {
		t.Errorf("kernel = %s (%s), want 6.1 from linux-image-6.1.*", img.KernelRelease, img.KernelPackage)
	}
	if img.User != "root" || img.OtherUser != "labother" || len(img.Hash) != 64 {
		t.Errorf("image = %+v", img)
	}
	if _, err := img.HostPublicKey(); err != nil {
		t.Error(err)
	}
	if _, err := img.ClientSigner(); err != nil {
		t.Error(err)
	}
	checkInitrd(t, img)

	start = time.Now()
	again := buildImage(t, spec)
	cached := time.Since(start)
	if again.Hash != img.Hash || again.Dir != img.Dir {
		t.Errorf("second build: hash %s dir %s, want %s %s", again.Hash, again.Dir, img.Hash, img.Dir)
	}
	// A cache hit only asks apt about versions in its local lists.
	if cached > 10*time.Second {
		t.Errorf("cached build took %v", cached)
	}
	t.Logf("bookworm: %s %s (%s); first Build %v, cached Build %v", img.KernelPackage, img.KernelVersion, img.KernelRelease,
		first.Round(time.Millisecond), cached.Round(time.Millisecond))
}

// checkInitrd checks the initramfs holds what a guest needs, with the modes sshd insists on.
func checkInitrd(t *testing.T, img *Image) {
	t.Helper()
	entries, err := readInitrd(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	client, err := os.ReadFile(img.ClientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{
		"init":                           0o100755,
		"usr/bin/busybox":                0o100755,
		"usr/sbin/sshd":                  0o100755,
		"usr/lib/openssh/sftp-server":    0o100755,
		"etc/ssh/ssh_host_ed25519_key":   0o100600,
		"root":                           0o040700,
		"root/.ssh/authorized_keys":      0o100600,
		"home/labother/.ssh":             0o040700,
		"tmp":                            0o041777,
		"dev/console":                    0o020600,
		"lib":                            0o120777,
		"usr/lib64/ld-linux-x86-64.so.2": 0o100755,
	}
	for name, mode := range want {
		e, ok := entries[name]
		if !ok {
			t.Errorf("initrd lacks %s", name)
		} else if e.mode != mode {
			t.Errorf("initrd %s mode = %o, want %o", name, e.mode, mode)
		}
	}
	if e := entries["home/labother/.ssh"]; e.uid != OtherUID {
		t.Errorf("labother's .ssh owned by %d", e.uid)
	}
	if got := entries["root/.ssh/authorized_keys"].data; !bytes.Equal(got, client) {
		t.Errorf("root's authorized_keys = %q, want the client key %q", got, client)
	}
}

// bootTimeout bounds one guest's boot under TCG, which takes seconds here; the margin is for a
// loaded CI machine.
const bootTimeout = 3 * time.Minute

// TestBoot boots every default image under QEMU and logs in over SSH with the host key pinned.
func TestBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots VMs (slow)")
	}
	testenv.NeedTools(t, "qemu-system-x86_64")
	for _, spec := range Defaults {
		t.Run(spec.Name, func(t *testing.T) {
			img := buildImage(t, spec)
			res := boot(t, img)
			buildMu.Lock()
			built := buildTime[spec.Name]
			buildMu.Unlock()
			t.Logf("%s: %s %s, uname -r %s; first Build this run %v; console marker after %v, SSH command after %v",
				spec.Name, img.KernelPackage, img.KernelVersion, img.KernelRelease, built.Round(time.Millisecond),
				res.marker.Round(time.Millisecond), res.ssh.Round(time.Millisecond))
		})
	}
}

type bootResult struct {
	marker, ssh time.Duration // from QEMU's start to ReadyMarker and to the first SSH command
}

func boot(t *testing.T, img *Image) bootResult {
	port := freePort(t)
	console := &consoleLog{seen: make(chan struct{})}
	cmd := exec.Command("qemu-system-x86_64",
		"-M", "q35", "-m", "256", "-nographic", "-no-reboot",
		"-kernel", img.Kernel, "-initrd", img.Initrd,
		"-append", "console=ttyS0 panic=-1",
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22", port),
		"-device", "virtio-net-pci,netdev=n0")
	cmd.Stdout, cmd.Stderr = console, console
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting QEMU: %v", err)
	}
	exited := make(chan error, 1)
	waited := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
		if t.Failed() {
			t.Logf("console of %s:\n%s", img.Name, console.String())
		}
	})

	hostKey, err := img.HostPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := img.ClientSigner()
	if err != nil {
		t.Fatal(err)
	}
	// Waiting for the marker before dialing keeps the measurement honest: an early connection
	// sits in QEMU's user-mode stack through SYN retries, adding seconds after sshd is up.
	select {
	case <-console.seen:
	case err := <-exited:
		t.Fatalf("QEMU exited before %q: %v", ReadyMarker, err)
	case <-time.After(bootTimeout):
		t.Fatalf("no %q on the console within %v", ReadyMarker, bootTimeout)
	}
	var res bootResult
	res.marker = console.readyAt().Sub(start)
	client := dialSSH(t, fmt.Sprintf("127.0.0.1:%d", port), img.User, signer, hostKey, exited)
	defer client.Close()

	if got := run(t, client, "uname -r"); got != img.KernelRelease {
		t.Errorf("uname -r = %q, want %q", got, img.KernelRelease)
	}
	res.ssh = time.Since(start)

	if got, want := run(t, client, "id labother"), "uid=1001(labother) gid=1001(labother)"; !strings.HasPrefix(got, want) {
		t.Errorf("id labother = %q, want %q...", got, want)
	}
	if got := run(t, client, "cat /proc/net/if_inet6"); !strings.Contains(got, "00000000000000000000000000000001") {
		t.Errorf("no ::1 on lo; /proc/net/if_inet6:\n%s", got)
	}
	if got := run(t, client, "dd if=/dev/zero of=/tmp/blob bs=1M count=8 2>/dev/null && ls -l /tmp/blob && rm /tmp/blob"); !strings.Contains(got, "8388608") {
		t.Errorf("writing 8 MB to /tmp: %q", got)
	}
	checkSFTP(t, client)

	other := dialSSH(t, fmt.Sprintf("127.0.0.1:%d", port), img.OtherUser, signer, hostKey, exited)
	defer other.Close()
	if got := run(t, other, "id -u"); got != fmt.Sprint(OtherUID) {
		t.Errorf("labother's id -u = %q", got)
	}
	return res
}

// dialSSH retries until the guest's sshd answers, QEMU exits, or bootTimeout passes. QEMU's port
// forward accepts connections before the guest listens, so a failed handshake means "not yet".
func dialSSH(t *testing.T, addr, user string, signer ssh.Signer, hostKey ssh.PublicKey, exited <-chan error) *ssh.Client {
	t.Helper()
	config := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		Timeout:         5 * time.Second,
	}
	deadline := time.Now().Add(bootTimeout)
	for {
		client, err := ssh.Dial("tcp", addr, config)
		if err == nil {
			return client
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SSH login as %s within %v: %v", user, bootTimeout, err)
		}
		select {
		case err := <-exited:
			t.Fatalf("QEMU exited before SSH was up: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func run(t *testing.T, client *ssh.Client, command string) string {
	t.Helper()
	s, err := client.NewSession()
	if err != nil {
		t.Fatalf("SSH session for %q: %v", command, err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(command)
	if err != nil {
		t.Errorf("%q: %v: %s", command, err, out)
	}
	return strings.TrimSpace(string(out))
}

// checkSFTP uploads a file the way lab uploads its agent, and reads it back with cat.
func checkSFTP(t *testing.T, client *ssh.Client) {
	t.Helper()
	sc, err := sftp.NewClient(client)
	if err != nil {
		t.Errorf("SFTP: %v", err)
		return
	}
	defer sc.Close()
	f, err := sc.Create("/tmp/lab-sftp-check")
	if err != nil {
		t.Errorf("SFTP create: %v", err)
		return
	}
	want := strings.Repeat("lab sftp check\n", 1000)
	if _, err := io.WriteString(f, want); err != nil {
		t.Errorf("SFTP write: %v", err)
	}
	f.Close()
	if got := run(t, client, "cat /tmp/lab-sftp-check"); got != strings.TrimSpace(want) {
		t.Errorf("file uploaded by SFTP reads back %d bytes, want %d", len(got), len(want))
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// consoleLog collects QEMU's serial console and notes when ReadyMarker appears.
type consoleLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	seen chan struct{}
	at   time.Time
}

func (c *consoleLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if c.at.IsZero() && bytes.Contains(c.buf.Bytes(), []byte(ReadyMarker)) {
		c.at = time.Now()
		close(c.seen)
	}
	return len(p), nil
}

func (c *consoleLog) readyAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *consoleLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// cpioEntry is one file of an initramfs as the test reads it back.
type cpioEntry struct {
	mode, uid uint32
	data      []byte
}

// readInitrd parses a gzip-compressed newc cpio archive.
func readInitrd(file string) (map[string]cpioEntry, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzipReader(f)
	if err != nil {
		return nil, err
	}
	return readCPIO(bufio.NewReader(zr))
}

func readCPIO(r io.Reader) (map[string]cpioEntry, error) {
	entries := map[string]cpioEntry{}
	for {
		hdr := make([]byte, 110)
		if _, err := io.ReadFull(r, hdr); err != nil {
			return nil, fmt.Errorf("cpio header: %w", err)
		}
		if string(hdr[:6]) != "070701" {
			return nil, fmt.Errorf("bad cpio magic %q", hdr[:6])
		}
		field := func(i int) uint32 {
			var v uint32
			fmt.Sscanf(string(hdr[6+8*i:14+8*i]), "%08x", &v)
			return v
		}
		mode, uid, size, nameLen := field(1), field(2), field(6), field(11)
		name := make([]byte, nameLen+pad(110+nameLen))
		if _, err := io.ReadFull(r, name); err != nil {
			return nil, err
		}
		data := make([]byte, size+pad(size))
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, err
		}
		n := string(name[:nameLen-1])
		if n == "TRAILER!!!" {
			return entries, nil
		}
		entries[n] = cpioEntry{mode: mode, uid: uid, data: data[:size]}
	}
}

func pad(n uint32) uint32 { return (4 - n%4) % 4 }

func gzipReader(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }

func TestInitScriptPrintsReadyMarker(t *testing.T) {
	if !strings.Contains(initScript, `echo "`+ReadyMarker+`"`) {
		t.Fatalf("init script does not print %q", ReadyMarker)
	}
}

func TestCPIORoundTrip(t *testing.T) {
	tr := newTree()
	tr.file("/bin/tool", 0o755, []byte("abc"))
	tr.ownedFile("/home/u/f", 0o600, 1001, 1001, []byte("hello"))
	tr.charDev("/dev/console", 0o600, 5, 1)
	var buf bytes.Buffer
	if err := tr.writeCPIOGzip(&buf); err != nil {
		t.Fatal(err)
	}
	zr, err := gzipReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := readCPIO(zr)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want cpioEntry
	}{
		{"usr/bin/tool", cpioEntry{mode: 0o100755, data: []byte("abc")}},
		{"home/u/f", cpioEntry{mode: 0o100600, uid: 1001, data: []byte("hello")}},
		{"bin", cpioEntry{mode: 0o120777, data: []byte("usr/bin")}},
		{"usr", cpioEntry{mode: 0o040755, data: []byte{}}},
		{"dev/console", cpioEntry{mode: 0o020600, data: []byte{}}},
	}
	for _, tc := range tests {
		e, ok := got[tc.name]
		if !ok || e.mode != tc.want.mode || e.uid != tc.want.uid || !bytes.Equal(e.data, tc.want.data) {
			t.Errorf("%s = %+v (present %v), want %+v", tc.name, e, ok, tc.want)
		}
	}
	// The cpio tool from Debian must agree with our reader.
	if _, err := exec.LookPath("cpio"); err == nil {
		dir := t.TempDir()
		raw := filepath.Join(dir, "a.cpio")
		zr, _ := gzipReader(bytes.NewReader(buf.Bytes()))
		data, _ := io.ReadAll(zr)
		os.WriteFile(raw, data, 0o644)
		out, err := exec.Command("sh", "-c", "cpio -it < "+raw).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "home/u/f") {
			t.Errorf("cpio -it: %v\n%s", err, out)
		}
	}
}
