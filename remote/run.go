package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Timing of a cancelled Run.
const (
	// signalGrace is how long a cancelled command gets to exit on SIGTERM before its
	// session is closed: enough for the agent to close its sockets.
	signalGrace = time.Second
	// closeWait bounds the wait for a closed session to end. OpenSSH keeps the channel
	// open while the command lives, and a command that ignores its hung-up pipes may live
	// long; Run does not wait for it.
	closeWait = 250 * time.Millisecond
)

// Run runs cmd on the target through the user's shell, feeding it stdin (nil: nothing)
// and streaming its output to stdout and stderr (nil: discarded) as it arrives.
//
// The two errors mean different things, as in x/build's buildlet Exec. remoteErr is the
// command's own failure, an *ExitError carrying its exit status or signal. transportErr
// says that the outcome is unknown: a *TransportError when the connection failed (the
// target died, or stopped answering keepalives); ctx's error when ctx ended; or the error
// of the caller's own stdin, stdout or stderr. At most one is non-nil.
//
// When ctx ends, Run sends the command SIGTERM, gives it a second, closes the session and
// returns; nothing is written to stdout or stderr after Run returns. OpenSSH refuses to
// signal sessions of root (it does not privilege-separate them): there the command sees
// only its stdin closed and its output hung up, and a command that heeds neither (sleep)
// keeps running.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (remoteErr, transportErr error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("remote: run %q: %w", cmd, context.Cause(ctx))
	}
	s, err := c.ssh.NewSession()
	if err != nil {
		return nil, c.transportError("run", fmt.Errorf("opening session: %w", err))
	}
	defer s.Close()
	// The caller's reader and writers are wrapped: to tell their errors from a broken
	// connection, and to cut them off when Run returns.
	local := &localIO{}
	defer local.cut()
	if stdin != nil {
		s.Stdin = &localReader{stdin, local}
	}
	if stdout != nil {
		s.Stdout = &localWriter{stdout, local}
	}
	if stderr != nil {
		s.Stderr = &localWriter{stderr, local}
	}
	if err := s.Start(cmd); err != nil {
		return nil, c.transportError("run", fmt.Errorf("starting %q: %w", cmd, err))
	}
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()

	select {
	case err := <-waited:
		if lerr := local.err(); lerr != nil {
			return nil, fmt.Errorf("remote: run %q: %w", cmd, lerr)
		}
		return c.classify(cmd, err)
	case <-ctx.Done():
	}
	cancelled := fmt.Errorf("remote: run %q: %w", cmd, context.Cause(ctx))
	// The request wants no reply, so a refusal (see above) goes unnoticed; the grace is
	// waited out either way.
	s.Signal(ssh.SIGTERM)
	select {
	case err := <-waited:
		c.log.Debug("cancelled command ended", "cmd", cmd, "result", err)
		return nil, cancelled
	case <-time.After(signalGrace):
	}
	s.Close()
	select {
	case <-waited:
	case <-time.After(closeWait):
		c.log.Debug("cancelled command still running after its session was closed", "cmd", cmd)
	}
	return nil, cancelled
}

// classify sorts Wait's error into the command's failure and the connection's.
func (c *Client) classify(cmd string, err error) (remoteErr, transportErr error) {
	var exitErr *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &exitErr):
		if sig := exitErr.Signal(); sig != "" {
			return &ExitError{Cmd: cmd, Status: -1, Signal: sig}, nil
		}
		return &ExitError{Cmd: cmd, Status: exitErr.ExitStatus()}, nil
	case errors.As(err, &missing):
		// The channel closed without an exit status: the connection went down (or sshd
		// was killed) while the command ran.
		return nil, c.transportError("run", fmt.Errorf("%q: connection closed before the command's exit status arrived", cmd))
	default:
		// Errors copying stdin or output: the channel broke.
		return nil, c.transportError("run", fmt.Errorf("%q: %w", cmd, err))
	}
}

// localIO holds the first error of the caller's stdin, stdout or stderr, and cuts them off
// once Run has returned.
type localIO struct {
	mu    sync.Mutex
	first error
	done  bool
}

// errRunReturned stops the session's copies after Run has returned.
var errRunReturned = errors.New("Run has returned")

func (l *localIO) set(err error) {
	l.mu.Lock()
	if l.first == nil && !l.done {
		l.first = err
	}
	l.mu.Unlock()
}

func (l *localIO) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

func (l *localIO) cut() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

type localReader struct {
	r     io.Reader
	local *localIO
}

func (r *localReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.local.set(fmt.Errorf("reading stdin: %w", err))
	}
	return n, err
}

type localWriter struct {
	w     io.Writer
	local *localIO
}

// Write holds the lock while writing, so that cut waits for a write in progress and no
// write starts after it.
func (w *localWriter) Write(p []byte) (int, error) {
	w.local.mu.Lock()
	defer w.local.mu.Unlock()
	if w.local.done {
		return 0, errRunReturned
	}
	n, err := w.w.Write(p)
	if err != nil && w.local.first == nil {
		w.local.first = fmt.Errorf("writing output: %w", err)
	}
	return n, err
}
