package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// SSHD is a private OpenSSH server on 127.0.0.1, standing in for a host lab
// reaches over SSH (a colleague's machine): lab talks to it exactly as to
// one.
type SSHD struct {
	Addr       string // 127.0.0.1:port
	Key        string // the client's private key, authorized for every user
	KnownHosts string // a known_hosts file naming Addr with every host key
	HostPub    string // the host's first public key (ed25519 unless told otherwise), authorized_keys form
	// HostKeys maps each host key type the server holds ("rsa", "ecdsa",
	// "ed25519") to its public key, authorized_keys form.
	HostKeys map[string]string
	PID      int // the listening sshd's

	tmp string // where the server's private /tmp is seen from here, if it has one
}

// SSHDOptions changes how StartSSHDWith runs sshd.
type SSHDOptions struct {
	// HostKeyTypes are ssh-keygen -t types, one host key each, in the order sshd
	// is given them; empty means ed25519 only. A server holding several is what
	// FreeBSD's and NetBSD's rc scripts leave (they create every missing type).
	HostKeyTypes []string
	// NetNS runs sshd inside that network namespace (see NewNetNS): Addr is then
	// 127.0.0.1 of the namespace, reached by clients run in it too.
	NetNS string
	// PrivateTmp gives sshd and every session it starts a /tmp of their own,
	// an empty tmpfs in a mount namespace of their own, which vanishes with
	// them. A test reads it with Tmp to see exactly what a run left on the
	// host: other packages' tests, run at the same time, write into the
	// machine's /tmp and can no longer be mistaken for this one's leftovers.
	PrivateTmp bool
}

// StartSSHD starts Debian's sshd as root on a free loopback port with fresh
// ed25519 host and client keys, and stops it when the test ends. It skips the
// test where that cannot be done.
func StartSSHD(t testing.TB) *SSHD { return StartSSHDWith(t, SSHDOptions{}) }

// StartSSHDWith is StartSSHD with options. When the test ends it kills sshd and
// everything sshd started (sessions, their shells and commands) by PID.
func StartSSHDWith(t testing.TB, opt SSHDOptions) *SSHD {
	t.Helper()
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("needs OpenSSH's sshd (scripts/setup installs openssh-server)")
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("runs sshd as root on Linux")
	}
	os.MkdirAll("/run/sshd", 0o755) // sshd's privilege separation directory
	types := opt.HostKeyTypes
	if len(types) == 0 {
		types = []string{"ed25519"}
	}
	dir := t.TempDir()
	if opt.PrivateTmp {
		// The server's own files cannot live under the /tmp it will no
		// longer see.
		var err error
		if dir, err = os.MkdirTemp("/var/tmp", "lab-sshd-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	keygen := func(typ, file string) {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-N", "", "-C", "lab test "+typ, "-f", file).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -t %s: %v %s", typ, err, out)
		}
	}
	keygen("ed25519", filepath.Join(dir, "client"))
	s := &SSHD{Key: filepath.Join(dir, "client"), HostKeys: map[string]string{}}
	var hostKeyLines []string
	var conf strings.Builder
	for _, typ := range types {
		file := filepath.Join(dir, "host_"+typ)
		keygen(typ, file)
		pub, err := os.ReadFile(file + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		line := strings.TrimSpace(string(pub))
		s.HostKeys[typ] = line
		hostKeyLines = append(hostKeyLines, line)
		fmt.Fprintf(&conf, "HostKey %s\n", file)
	}
	s.HostPub = hostKeyLines[0] + "\n"
	port := freePort(t, opt.NetNS)
	s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	fmt.Fprintf(&conf, `Port %d
ListenAddress 127.0.0.1
AuthorizedKeysFile %s
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp /usr/lib/openssh/sftp-server
`, port, filepath.Join(dir, "client.pub"))
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// Every wrapper below execs the next, so the process started is sshd.
	argv := []string{bin, "-D", "-e", "-f", cfgFile}
	if opt.PrivateTmp {
		argv = append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount -t tmpfs -o mode=1777,size=512m lab-sshd-tmp /tmp && exec "$@"`, "sh"}, argv...)
	}
	if opt.NetNS != "" {
		argv = append([]string{"ip", "netns", "exec", opt.NetNS}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var log bytes.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.PID = cmd.Process.Pid
	if opt.PrivateTmp {
		s.tmp = fmt.Sprintf("/proc/%d/root/tmp", s.PID)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		for _, pid := range Descendants(s.PID) {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		}
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sshd log:\n%s", log.String())
		}
	})
	for i := 0; ; i++ {
		if listening(port, opt.NetNS) {
			break
		}
		select {
		case <-exited:
			t.Fatalf("sshd exited: %s", log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if i > 500 {
			t.Fatalf("sshd did not listen on %s within 10 s", s.Addr)
		}
	}
	known := filepath.Join(dir, "known_hosts")
	var kh strings.Builder
	for _, line := range hostKeyLines {
		fmt.Fprintf(&kh, "[127.0.0.1]:%d %s\n", port, line)
	}
	if err := os.WriteFile(known, []byte(kh.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	s.KnownHosts = known
	return s
}

// Tmp lists what is in the server's private /tmp (see PrivateTmp), as names
// relative to it; it fails the test when the server has none.
func (s *SSHD) Tmp(t testing.TB) []string {
	t.Helper()
	if s.tmp == "" {
		t.Fatal("testenv: Tmp needs an sshd started with PrivateTmp")
	}
	return Left(t, s.tmp)
}

// freePort picks a port nothing listens on, in netns or here.
func freePort(t testing.TB, netns string) int {
	t.Helper()
	if netns == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	// A fresh namespace has nothing listening at all.
	var b [2]byte
	rand.Read(b[:])
	return 20000 + int(binary.BigEndian.Uint16(b[:]))%20000
}

// listening reports whether something listens on 127.0.0.1:port, in netns or here.
func listening(port int, netns string) bool {
	if netns == "" {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	out, err := exec.Command("ip", "netns", "exec", netns, "ss", "-Htln", fmt.Sprintf("sport = :%d", port)).Output()
	return err == nil && len(bytes.TrimSpace(out)) > 0
}

// NetNS is a network namespace a test made, removed when the test ends.
type NetNS struct{ Name string }

// NewNetNS makes a network namespace with its loopback up, for traffic that must
// stay inside the test, and deletes it when the test ends (after the cleanups
// registered later, which stop what runs in it). It skips the test without root or
// iproute2.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("makes a network namespace: root on Linux")
	}
	NeedTools(t, "ip")
	var b [6]byte
	rand.Read(b[:])
	ns := &NetNS{Name: "labtest-" + hex.EncodeToString(b[:])}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	ns.Run(t, "ip", "link", "set", "lo", "up")
	return ns
}

// Command returns a command that runs in the namespace.
func (ns *NetNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command in the namespace and returns its output, failing the test
// if it fails.
func (ns *NetNS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := ns.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s %s: %v: %s", ns.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
