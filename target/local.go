package target

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"time"
)

// localProvider runs the agent on the machine lab runs on, with lab's own
// privileges.
type localProvider struct{}

// localConfig: the local machine has no settings.
type localConfig struct{}

func (localProvider) NewConfig() Config { return &localConfig{} }

// Validate fills in this machine's OS and architecture.
func (*localConfig) Validate(s *Spec) []string {
	s.OS, s.Arch = runtime.GOOS, runtime.GOARCH
	return nil
}

func (*localConfig) Describe() string { return runtime.GOOS + "/" + runtime.GOARCH }

// Check: the local machine is always there.
func (localProvider) Check(Spec, Env) error { return nil }

// Start has nothing to boot.
func (localProvider) Start(ctx context.Context, s Spec, env Env) (*Instance, error) {
	return &Instance{
		Agent: AgentBuild{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH},
		Local: &processMachine{},
		CC:    CBuildHost,
	}, nil
}

// processMachine runs programs as child processes of lab on this host.
type processMachine struct {
	// Env is added to the environment of every program it runs.
	Env []string
	// Stop, if set, cleans up after the programs when the machine closes
	// (a user-space stack's state in /var/run).
	Stop func(context.Context) error
}

var _ Machine = (*processMachine)(nil)

// Upload runs the agent where it was built: nothing to copy.
func (*processMachine) Upload(ctx context.Context, local string) (string, error) { return local, nil }

func (m *processMachine) Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	c := exec.CommandContext(ctx, cmd)
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, os.Stderr
	if len(m.Env) > 0 {
		c.Env = append(os.Environ(), m.Env...)
	}
	c.SysProcAttr = childProcAttr()
	if err := runToEnd(c); err != nil {
		return fmt.Errorf("local agent: %w", err)
	}
	return nil
}

// interruptGrace is how long a child lab interrupts gets to exit before it
// is killed: the agent closes its sockets and ends its helper in
// milliseconds.
const interruptGrace = 2 * time.Second

// runToEnd runs c, made with exec.CommandContext, and reads its output to
// the end: however slowly lab takes it in, nothing the program printed
// before it exited is cut off (exec's WaitDelay would cut it). Only the
// context ends it early: SIGINT first, so the agent can close its sockets,
// and SIGKILL interruptGrace later.
func runToEnd(c *exec.Cmd) error {
	c.Cancel = func() error {
		p := c.Process
		time.AfterFunc(interruptGrace, func() { p.Kill() })
		return p.Signal(os.Interrupt)
	}
	c.WaitDelay = 0
	return c.Run()
}

func (m *processMachine) Close(ctx context.Context) error {
	if m.Stop == nil {
		return nil
	}
	return m.Stop(ctx)
}
