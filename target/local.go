package target

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"lab/internal/output"
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
	// What the program says on stderr goes to lab's, and its end into the
	// error when it fails: a rump kernel's panic message, or what F-Stack
	// printed before it crashed.
	tail := &tailBuffer{max: 16 << 10}
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, io.MultiWriter(os.Stderr, tail)
	if len(m.Env) > 0 {
		c.Env = append(os.Environ(), m.Env...)
	}
	c.SysProcAttr = childProcAttr()
	if err := runToEnd(c); err != nil {
		if said := diagnosis(tail.String()); said != "" {
			return fmt.Errorf("local agent: %w: %s", err, said)
		}
		return fmt.Errorf("local agent: %w", err)
	}
	return nil
}

// crashLines start the lines that say why a program died: lab's agent's
// own, a kernel's panic (a rump kernel's "panic: ..."), Go's crash report,
// DPDK's fatal errors.
var crashLines = []string{"lab-agent:", "panic:", "fatal error:", "SIGSEGV", "SIGABRT", "SIGBUS", "EAL: Error", "EAL: FATAL", "PANIC"}

// diagnosis picks from what a program printed on stderr the lines that say
// why it died (at most the last three such), or its last lines when none
// does: a crash report's registers and goroutines say nothing to a reader
// of a target's error.
func diagnosis(stderr string) string {
	var said []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		for _, p := range crashLines {
			if strings.HasPrefix(l, p) {
				said = append(said, l)
				break
			}
		}
	}
	if len(said) == 0 {
		return output.Tail(stderr, 3)
	}
	return strings.Join(said[max(0, len(said)-3):], "; ")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
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
