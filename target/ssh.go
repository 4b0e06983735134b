package target

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"lab/remote"
)

// sshProvider reaches a host that is already running (a Mac, a Windows
// server, a colleague's FreeBSD box), verifying it against known_hosts.
// lab never stops such a host.
type sshProvider struct{}

// sshConfig is how lab logs in to a host that is already there.
type sshConfig struct {
	Host       string `yaml:"host"` // host or host:port
	User       string `yaml:"user"`
	Key        string `yaml:"key"`         // private key file, must be 0600
	KnownHosts string `yaml:"known_hosts"` // default ~/.ssh/known_hosts
	// Sudo runs the agent with sudo: only for disposable machines.
	Sudo bool `yaml:"sudo"`
	// BootTimeout bounds the connection (default sshDialTimeout).
	BootTimeout duration `yaml:"boot_timeout"`
}

func (sshProvider) NewConfig() Config { return &sshConfig{} }

func (c *sshConfig) Validate(s *Spec) []string {
	if c.Host == "" || c.User == "" || s.OS == "" || s.Arch == "" {
		return []string{"an ssh target needs \"host\", \"user\", \"os\" and \"arch\""}
	}
	if c.BootTimeout == 0 {
		c.BootTimeout = duration(sshDialTimeout)
	}
	return nil
}

func (c *sshConfig) Describe() string { return c.User + "@" + c.Host }

func (c *sshConfig) knownHosts() string {
	if c.KnownHosts != "" {
		return expandHome(c.KnownHosts)
	}
	return expandHome("~/.ssh/known_hosts")
}

// Check: the key must exist with safe permissions and known_hosts must exist.
func (sshProvider) Check(s Spec, _ Env) error {
	c := s.Config.(*sshConfig)
	if c.Key != "" {
		fi, err := os.Stat(expandHome(c.Key))
		if err != nil {
			return fmt.Errorf("key %s: %w", c.Key, err)
		}
		if mode := fi.Mode().Perm(); mode&0o077 != 0 {
			return fmt.Errorf("key %s has mode %04o; it must be readable by its owner only (chmod 600)", c.Key, mode)
		}
	}
	if _, err := os.Stat(c.knownHosts()); err != nil {
		return fmt.Errorf("known_hosts: %w (lab verifies every host key; add the host with ssh-keyscan after checking its fingerprint)", err)
	}
	return nil
}

// Start says how to reach the host.
func (sshProvider) Start(ctx context.Context, s Spec, env Env) (*Instance, error) {
	c := s.Config.(*sshConfig)
	hk, err := remote.KnownHosts(c.knownHosts())
	if err != nil {
		return nil, err
	}
	if c.Key == "" {
		return nil, fmt.Errorf("target %s has no \"key\"", s.Name)
	}
	signer, err := remote.LoadSigner(expandHome(c.Key))
	if err != nil {
		return nil, err
	}
	addr := c.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "22")
	}
	in := &Instance{
		Agent: AgentBuild{GOOS: s.OS, GOARCH: s.Arch},
		SSH:   &remote.Config{Addr: addr, User: c.User, Signer: signer, HostKey: hk, Deadline: time.Duration(c.BootTimeout), Log: env.Log},
		CC:    CBuildTarget,
	}
	if c.Sudo {
		in.Root = "sudo -n"
	}
	return in, nil
}
