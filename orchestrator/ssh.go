package orchestrator

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"lab/remote"
)

// SSH reaches a host that is already running (a Mac, a Windows server, a
// colleague's FreeBSD box), verifying it against known_hosts. lab never
// stops such a host.
type SSH struct{}

// Check: the key must exist with safe permissions and known_hosts must exist.
func (SSH) Check(t *Target) error {
	if t.Key != "" {
		mode, err := fileMode(ExpandHome(t.Key))
		if err != nil {
			return fmt.Errorf("key %s: %w", t.Key, err)
		}
		if mode&0o077 != 0 {
			return fmt.Errorf("key %s has mode %04o; it must be readable by its owner only (chmod 600)", t.Key, mode)
		}
	}
	if _, err := os.Stat(knownHosts(t)); err != nil {
		return fmt.Errorf("known_hosts: %w (lab verifies every host key; add the host with ssh-keyscan after checking its fingerprint)", err)
	}
	return nil
}

func knownHosts(t *Target) string {
	if t.KnownHosts != "" {
		return ExpandHome(t.KnownHosts)
	}
	return ExpandHome("~/.ssh/known_hosts")
}

// Start connects.
func (SSH) Start(ctx context.Context, t *Target, env StartEnv) (Machine, error) {
	env.Phase("connect")
	hk, err := remote.KnownHosts(knownHosts(t))
	if err != nil {
		return nil, err
	}
	if t.Key == "" {
		return nil, fmt.Errorf("target %s has no \"key\"", t.Name)
	}
	signer, err := remote.LoadSigner(ExpandHome(t.Key))
	if err != nil {
		return nil, err
	}
	addr := t.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "22")
	}
	deadline := time.Duration(t.BootTimeout)
	if deadline == 0 {
		deadline = 30 * time.Second
	}
	cfg := remote.Config{Addr: addr, User: t.User, Signer: signer, HostKey: hk, Deadline: deadline, Log: env.Log}
	c, err := remote.Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &sshMachine{client: c, goos: t.OS, sudo: t.Sudo, redial: redialWith(cfg)}, nil
}
