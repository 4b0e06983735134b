package orchestrator

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

	"lab/remote"
)

// sshMachine is a target reached over SSH: a guest lab booted (vm set) or
// a host that was already there.
type sshMachine struct {
	client *remote.Client
	goos   string
	sudo   bool
	// stop tears down what the provider started (the VM); nil for hosts
	// lab does not own.
	stop   func(context.Context) error
	exited <-chan struct{} // closed when the VM dies; nil for hosts
	// cleanup removes the uploaded agent where the run command cannot
	// (Windows); run before disconnecting.
	cleanup string
	// redial connects again as the first connection was made; nil where
	// that is not possible.
	redial func(context.Context) (*remote.Client, error)
	once   sync.Once
	err    error
}

// Upload copies the agent to the target's temporary directory under a
// random name, so two runs on one host never collide.
func (m *sshMachine) Upload(ctx context.Context, local string) (string, error) {
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
		return "", m.ifGuestDied(err)
	}
	if m.goos == "windows" {
		m.cleanup = "del " + windowsPath(dst)
	}
	return agentCommand(m.goos, dst, m.sudo), nil
}

// agentCommand is the shell command that runs the uploaded agent, quoted
// for the target's shell; on Unix it also removes the agent afterwards.
//
// OpenSSH for Windows runs commands with cmd.exe or, where an administrator
// chose so, PowerShell, whose quoting rules differ. The agent's Windows
// path has no spaces or special characters (lab names it), so the bare path
// runs the agent in either shell, and the exit status is the agent's own;
// the file is removed by a second command, "del PATH", which both shells
// also understand (in PowerShell del is Remove-Item).
func agentCommand(goos, dst string, sudo bool) string {
	if goos == "windows" {
		return windowsPath(dst)
	}
	q := shellQuote(dst)
	run := q
	if sudo {
		run = "sudo -n " + q
	}
	return fmt.Sprintf("%s; s=$?; rm -f %s; exit $s", run, q)
}

// windowsPath turns the SFTP form of a Windows path (/C:/Windows/Temp/x)
// into the shells' form (C:\Windows\Temp\x).
func windowsPath(sftpPath string) string {
	return strings.ReplaceAll(strings.TrimPrefix(sftpPath, "/"), "/", `\`)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// errGuestExited says the guest's VM is gone: the connection it broke is not
// worth making again.
var errGuestExited = errors.New("the guest's QEMU process exited")

// ifGuestDied returns err, a failure of the connection, as errGuestExited
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
		return fmt.Errorf("%w: %w", errGuestExited, err)
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
				cancel(errGuestExited)
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
		if err := m.ifGuestDied(transportErr); errors.Is(err, errGuestExited) {
			return fmt.Errorf("running agent: %w", err)
		}
		return fmt.Errorf("running agent: connection lost: %w", transportErr)
	}
	if remoteErr != nil {
		return fmt.Errorf("agent failed: %w: %s", remoteErr, strings.TrimSpace(lastLines(stderr.String(), 5)))
	}
	return nil
}

// redialWith connects again the way cfg connected the first time, with a
// shorter deadline: the machine answered a moment ago, and one that does
// not come back soon is better reported than waited for.
func redialWith(cfg remote.Config) func(context.Context) (*remote.Client, error) {
	cfg.Deadline = 20 * time.Second
	return func(ctx context.Context) (*remote.Client, error) { return remote.Dial(ctx, cfg) }
}

// Reconnect replaces a lost connection with a new one, unless the VM died.
func (m *sshMachine) Reconnect(ctx context.Context) error {
	if m.redial == nil {
		return errors.New("this machine cannot be reconnected")
	}
	if m.exited != nil {
		select {
		case <-m.exited:
			return errGuestExited
		default:
		}
	}
	c, err := m.redial(ctx)
	if err != nil {
		return fmt.Errorf("reconnecting: %w", err)
	}
	m.client.Close()
	m.client = c
	return nil
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

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
