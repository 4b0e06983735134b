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
	"strings"
	"testing"

	"lab/internal/testenv"
	"lab/orchestrator"
	"lab/rundir"
	"lab/target"
)

func sshTarget(t testing.TB, s *testenv.SSHD) target.Spec {
	u, _ := user.Current()
	return oneTarget(t, fmt.Sprintf("{name: ssh-host, provider: ssh, host: %q, user: %s, key: %s, known_hosts: %s, os: linux, arch: amd64}", s.Addr, u.Username, s.Key, s.KnownHosts))
}

// TestSSHProvider runs scenarios on a host reached over SSH and checks the
// agent leaves nothing behind there.
func TestSSHProvider(t *testing.T) {
	// The host's /tmp is its own, so whatever is in it afterwards is this
	// run's.
	s := testenv.StartSSHDWith(t, testenv.SSHDOptions{PrivateTmp: true})
	scs := scenarios(t, "bsd-table/*")
	sum, err := orchestrator.Run(context.Background(), runOpts(t, []target.Spec{sshTarget(t, s)}, scs))
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
	if left := s.Tmp(t); len(left) != 0 {
		t.Errorf("the run left %v in the host's /tmp", left)
	}
}

// TestSSHProviderRefusesUnknownKey: a host whose key does not match
// known_hosts is refused and nothing runs.
func TestSSHProviderRefusesUnknownKey(t *testing.T) {
	s := testenv.StartSSHD(t)
	// known_hosts names the host with another key.
	other := t.TempDir()
	exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(other, "k")).Run()
	pub, _ := os.ReadFile(filepath.Join(other, "k.pub"))
	host, port, _ := net.SplitHostPort(s.Addr)
	os.WriteFile(s.KnownHosts, []byte(fmt.Sprintf("[%s]:%s %s", host, port, pub)), 0o644)
	sum, err := orchestrator.Run(context.Background(), runOpts(t, []target.Spec{sshTarget(t, s)}, scenarios(t, "bsd-table/row1/*")))
	if err != nil {
		t.Fatal(err)
	}
	tr := sum.Targets[0]
	if tr.Status != rundir.StatusFailed || !strings.Contains(tr.Error, "host key") || len(tr.Results) != 0 {
		t.Errorf("status %s, %d results, error %q; want failed on the host key with nothing run", tr.Status, len(tr.Results), tr.Error)
	}
}
