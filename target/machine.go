package target

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"lab/internal/output"
	"lab/internal/shell"
	"lab/remote"
	"lab/wire"
)

// sshOutput is how the agent writes on a machine reached over SSH, where
// each write is a packet the remote sshd must read, encrypt and send, and
// under emulation every byte it sends costs: a hold of 20 ms gathers a
// burst of fast scenarios into one write and keeps what a crash of the
// agent can lose to a few scenarios, and gzip makes traces a 17th of their
// size. 2,000 scenarios in a linux-6.1 guest (BenchmarkMicroVMAtScale):
// 13 s streamed line by line, 2.4 s held, 1.9 s held and gzipped, 1.9 s
// for the agent alone.
var sshOutput = wire.Output{HoldMillis: 20, Gzip: true}

// redialTimeout bounds a reconnect: the machine answered a moment ago, and
// one that does not come back soon is better reported than waited for.
const redialTimeout = 20 * time.Second

// Connect turns a started instance into the Machine the agent runs on. An
// instance reached over SSH is dialled (pinned or known_hosts host key, the
// retries and deadline of in.SSH), prepared, and reconnected the same way
// when its connection drops. On error Connect stops the instance: nothing
// is left running.
func Connect(ctx context.Context, in *Instance, log hclog.Logger) (Machine, error) {
	if in.SSH == nil {
		if in.Local == nil {
			return nil, errors.Join(errors.New("the provider returned neither a local machine nor a way to reach one"), in.stop(ctx))
		}
		return in.Local, nil
	}
	cfg := *in.SSH
	cfg.Abort = in.Exited
	if cfg.Log == nil {
		cfg.Log = log
	}
	c, err := remote.Dial(ctx, cfg)
	if err == nil && in.Prepare != nil {
		if err = in.Prepare(ctx, c); err != nil {
			c.Close()
		}
	}
	if err != nil {
		if in.Diagnose != nil {
			err = in.Diagnose(err)
		}
		return nil, errors.Join(err, in.stop(ctx))
	}
	redial := cfg
	redial.Deadline = redialTimeout
	m := &sshMachine{client: c, goos: in.Agent.GOOS, root: in.Root, exited: in.Exited, redial: redial, preloaded: in.Preloaded}
	if !in.Keep {
		m.stop = in.Stop
	}
	return m, nil
}

// stop stops what Start started, as a failed connection must; the run's
// context may be the reason it failed, and the machine must still stop.
func (in *Instance) stop(ctx context.Context) error {
	if in.Stop == nil {
		return nil
	}
	return in.Stop(context.WithoutCancel(ctx))
}

// sshMachine is a target reached over SSH: a guest lab booted or a host that
// was already there.
type sshMachine struct {
	client *remote.Client
	goos   string
	root   string // the command prefix that makes the agent root, or ""
	// stop tears down what the provider started (the VM); nil for hosts
	// lab does not own and machines it keeps.
	stop   func(context.Context) error
	exited <-chan struct{} // closed when the VM dies; nil for hosts
	// cleanup removes the uploaded agent where the run command cannot
	// (Windows); run before disconnecting.
	cleanup string
	// redial connects again as the first connection was made.
	redial remote.Config
	// preloaded are programs already on the machine (Instance.Preloaded).
	preloaded map[string]string
	// cut are the destinations of uploads the connection broke under,
	// whose partial files the next connection removes.
	cut  []string
	once sync.Once
	err  error
}

var (
	_ Machine     = (*sshMachine)(nil)
	_ Reconnecter = (*sshMachine)(nil)
	_ Linked      = (*sshMachine)(nil)
)

// AgentOutput implements Linked.
func (m *sshMachine) AgentOutput() wire.Output { return sshOutput }

// Upload copies the agent to the target's temporary directory under a
// random name, so two runs on one host never collide.
func (m *sshMachine) Upload(ctx context.Context, local string) (string, error) {
	if there, ok := m.preloaded[local]; ok {
		q := shell.Quote(there)
		if m.root != "" {
			q = m.root + " " + q
		}
		return q, nil
	}
	f, err := os.Open(local)
	if err != nil {
		return "", fmt.Errorf("opening agent: %w", err)
	}
	defer f.Close()
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "lab-agent-" + hex.EncodeToString(rnd[:])
	dst := path.Join("/tmp", name)
	if m.goos == "windows" {
		// OpenSSH for Windows's SFTP server takes /C:/... paths; cmd.exe
		// runs the same file by its Windows form.
		dst = "/C:/Windows/Temp/" + name + ".exe"
	}
	if err := m.client.Upload(ctx, f, dst, 0o755); err != nil {
		var lost *remote.TransportError
		if errors.As(err, &lost) {
			m.cut = append(m.cut, dst)
		}
		return "", m.ifGuestDied(err)
	}
	if m.goos == "windows" {
		m.cleanup = "del " + windowsPath(dst)
	}
	return agentCommand(m.goos, dst, m.root), nil
}

// agentCommand is the shell command that runs the uploaded agent, quoted
// for the target's shell, as root through the root prefix when it has one;
// on Unix it also removes the agent afterwards.
//
// OpenSSH for Windows runs commands with cmd.exe or, where an administrator
// chose so, PowerShell, whose quoting rules differ. The agent's Windows
// path has no spaces or special characters (lab names it), so the bare path
// runs the agent in either shell, and the exit status is the agent's own;
// the file is removed by a second command, "del PATH", which both shells
// also understand (in PowerShell del is Remove-Item).
func agentCommand(goos, dst, root string) string {
	if goos == "windows" {
		return windowsPath(dst)
	}
	q := shell.Quote(dst)
	run := q
	if root != "" {
		run = root + " " + q
	}
	return fmt.Sprintf("%s; s=$?; rm -f %s; exit $s", run, q)
}

// windowsPath turns the SFTP form of a Windows path (/C:/Windows/Temp/x)
// into the shells' form (C:\Windows\Temp\x).
func windowsPath(sftpPath string) string {
	return strings.ReplaceAll(strings.TrimPrefix(sftpPath, "/"), "/", `\`)
}

// ifGuestDied returns err, a failure of the connection, as ErrMachineExited
// too when the guest's QEMU exited: a dead VM usually shows first as a
// dropped connection, and then the error should say what happened to the
// guest, and lab should not try to reconnect.
func (m *sshMachine) ifGuestDied(err error) error {
	var lost *remote.TransportError
	if m.exited == nil || !errors.As(err, &lost) {
		return err
	}
	select {
	case <-m.exited:
		return fmt.Errorf("%w: %w", ErrMachineExited, err)
	case <-time.After(200 * time.Millisecond):
		return err
	}
}

// Run runs cmd; a VM that dies mid-run ends it at once.
func (m *sshMachine) Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if m.exited != nil {
		go func() {
			select {
			case <-m.exited:
				cancel(ErrMachineExited)
			case <-ctx.Done():
			}
		}()
	}
	var stderr bytes.Buffer
	remoteErr, transportErr := m.client.Run(ctx, cmd, stdin, stdout, &stderr)
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		return fmt.Errorf("running agent: %w", cause)
	}
	if transportErr != nil {
		if err := m.ifGuestDied(transportErr); errors.Is(err, ErrMachineExited) {
			return fmt.Errorf("running agent: %w", err)
		}
		return fmt.Errorf("running agent: connection lost: %w", transportErr)
	}
	if remoteErr != nil {
		return fmt.Errorf("agent failed: %w: %s", remoteErr, output.Tail(stderr.String(), 5))
	}
	return nil
}

// Reconnect replaces a lost connection with a new one, unless the VM died.
func (m *sshMachine) Reconnect(ctx context.Context) error {
	if m.exited != nil {
		select {
		case <-m.exited:
			return ErrMachineExited
		default:
		}
	}
	c, err := remote.Dial(ctx, m.redial)
	if err != nil {
		return fmt.Errorf("reconnecting: %w", err)
	}
	m.client.Close()
	m.client = c
	m.removePartialUploads(ctx)
	return nil
}

// removePartialUploads removes, best effort, what uploads cut by the lost
// connection left in the target's temporary directory: each is a copy of
// the agent (megabytes), and nothing else would ever remove it.
func (m *sshMachine) removePartialUploads(ctx context.Context) {
	if len(m.cut) == 0 {
		return
	}
	var globs []string
	for _, dst := range m.cut {
		prefix := remote.PartialUploadPrefix(dst)
		if m.goos == "windows" {
			// cmd.exe's del and PowerShell's Remove-Item both expand *.
			globs = append(globs, windowsPath(prefix)+"*")
		} else {
			globs = append(globs, shell.Quote(prefix)+"*")
		}
	}
	cmd := "rm -f -- " + strings.Join(globs, " ")
	if m.goos == "windows" {
		cmd = "del " + strings.Join(globs, " ")
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if remoteErr, transportErr := m.client.Run(cctx, cmd, nil, nil, nil); remoteErr != nil || transportErr != nil {
		if m.redial.Log != nil {
			m.redial.Log.Debug("removing partial uploads", "cmd", cmd, "error", errors.Join(remoteErr, transportErr))
		}
		return // the agent's next upload does not depend on it
	}
	m.cut = nil
}

// Close disconnects and stops the VM, once.
func (m *sshMachine) Close(ctx context.Context) error {
	m.once.Do(func() {
		if m.cleanup != "" {
			// Best effort: a host that is gone keeps a stray file in its
			// temporary directory, which is all this could fix.
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			m.client.Run(cctx, m.cleanup, nil, nil, nil)
			cancel()
		}
		m.client.Close()
		if m.stop != nil {
			m.err = m.stop(ctx)
		}
	})
	return m.err
}
