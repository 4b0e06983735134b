package orchestrator

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"time"
)

// Local runs the agent on the machine lab runs on, with lab's own
// privileges.
type Local struct{}

// Check: the local machine is always there.
func (Local) Check(*Target) error { return nil }

// Start fills in the target's OS and architecture; there is nothing to boot.
func (Local) Start(ctx context.Context, t *Target, env StartEnv) (Machine, error) {
	t.OS, t.Arch = runtime.GOOS, runtime.GOARCH
	return localMachine{}, nil
}

type localMachine struct{}

// Upload runs the agent where it was built: nothing to copy.
func (localMachine) Upload(ctx context.Context, local string) (string, error) { return local, nil }

func (localMachine) Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	c := exec.CommandContext(ctx, cmd)
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, os.Stderr
	// The agent gets SIGINT first so it can close its sockets and end its
	// helper; it is killed if it does not exit within 2 s.
	c.Cancel = func() error { return c.Process.Signal(os.Interrupt) }
	c.WaitDelay = 2 * time.Second
	c.SysProcAttr = agentProcAttr()
	if err := c.Run(); err != nil {
		return fmt.Errorf("local agent: %w", err)
	}
	return nil
}

func (localMachine) Close(context.Context) error { return nil }
