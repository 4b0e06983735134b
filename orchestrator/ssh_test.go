//go:build linux

package orchestrator_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"lab/orchestrator"
	"lab/rundir"
)

// sshd is a private OpenSSH server on 127.0.0.1, standing in for a host
// that is already running: the ssh provider talks to it exactly as to a
// colleague's machine.
type sshd struct {
	addr, key, knownHosts, hostPub string
}

func startSSHD(t *testing.T) *sshd {
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
	os.WriteFile(cfgFile, []byte(cfg), 0o600)
	cmd := exec.Command(bin, "-D", "-e", "-f", cfgFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	hostPub, _ := os.ReadFile(filepath.Join(dir, "host.pub"))
	known := filepath.Join(dir, "known_hosts")
	os.WriteFile(known, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", port, hostPub)), 0o644)
	return &sshd{addr: fmt.Sprintf("127.0.0.1:%d", port), key: filepath.Join(dir, "client"), knownHosts: known, hostPub: string(hostPub)}
}

func sshTarget(s *sshd) *orchestrator.Target {
	u, _ := user.Current()
	return &orchestrator.Target{Name: "ssh-host", Provider: "ssh", Host: s.addr, User: u.Username, Key: s.key, KnownHosts: s.knownHosts, OS: "linux", Arch: "amd64"}
}

// TestSSHProvider runs scenarios on a host reached over SSH and checks the
// agent leaves nothing behind there.
func TestSSHProvider(t *testing.T) {
	s := startSSHD(t)
	before, _ := filepath.Glob("/tmp/lab-agent-*")
	scs := scenarios(t, "bsd-table/*")
	sum, err := orchestrator.Run(context.Background(), runOpts(t, []*orchestrator.Target{sshTarget(s)}, scs))
	if err != nil {
		t.Fatal(err)
	}
	tr := sum.Targets[0]
	if tr.Status != rundir.StatusComplete {
		t.Fatalf("status %s: %s", tr.Status, tr.Error)
	}
	if len(tr.Results) != len(scs) || tr.Env == nil || tr.Env.OS != "linux" {
		t.Errorf("%d results for %d scenarios, env %+v", len(tr.Results), len(scs), tr.Env)
	}
	after, _ := filepath.Glob("/tmp/lab-agent-*")
	if len(after) != len(before) {
		t.Errorf("the agent was left on the host: %v", after)
	}
}

// TestSSHProviderRefusesUnknownKey: a host whose key does not match
// known_hosts is refused and nothing runs.
func TestSSHProviderRefusesUnknownKey(t *testing.T) {
	s := startSSHD(t)
	// known_hosts names the host with another key.
	other := t.TempDir()
	exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(other, "k")).Run()
	pub, _ := os.ReadFile(filepath.Join(other, "k.pub"))
	host, port, _ := net.SplitHostPort(s.addr)
	os.WriteFile(s.knownHosts, []byte(fmt.Sprintf("[%s]:%s %s", host, port, pub)), 0o644)
	sum, err := orchestrator.Run(context.Background(), runOpts(t, []*orchestrator.Target{sshTarget(s)}, scenarios(t, "bsd-table/row1/*")))
	if err != nil {
		t.Fatal(err)
	}
	tr := sum.Targets[0]
	if tr.Status != rundir.StatusFailed || !strings.Contains(tr.Error, "host key") || len(tr.Results) != 0 {
		t.Errorf("status %s, %d results, error %q; want failed on the host key with nothing run", tr.Status, len(tr.Results), tr.Error)
	}
}
