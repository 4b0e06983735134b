package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// SSHD is a private OpenSSH server on 127.0.0.1, standing in for a host lab
// reaches over SSH (a colleague's machine): lab talks to it exactly as to
// one.
type SSHD struct {
	Addr       string // 127.0.0.1:port
	Key        string // the client's private key, authorized for every user
	KnownHosts string // a known_hosts file naming Addr with the host key
	HostPub    string // the host's public key, authorized_keys form
}

// StartSSHD starts Debian's sshd as root on a free loopback port with fresh
// host and client keys, and stops it when the test ends. It skips the test
// where that cannot be done.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("needs OpenSSH's sshd (scripts/setup installs openssh-server)")
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("runs sshd as root on Linux")
	}
	os.MkdirAll("/run/sshd", 0o755) // sshd's privilege separation directory
	dir := t.TempDir()
	for _, k := range []string{"host", "client"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp /usr/lib/openssh/sftp-server
`, port, filepath.Join(dir, "host"), filepath.Join(dir, "client.pub"))
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-D", "-e", "-f", cfgFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	hostPub, err := os.ReadFile(filepath.Join(dir, "host.pub"))
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", port, hostPub)), 0o644); err != nil {
		t.Fatal(err)
	}
	return &SSHD{Addr: addr, Key: filepath.Join(dir, "client"), KnownHosts: known, HostPub: string(hostPub)}
}
