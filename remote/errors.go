package remote

import (
	"errors"
	"fmt"
)

// ErrHostKey means the target presented a host key that is not the one expected. Dial does
// not retry it: waiting longer does not change the key, and it may be an impostor.
var ErrHostKey = errors.New("host key mismatch")

// ErrAborted means Dial stopped waiting because Config.Abort was closed, e.g. because the
// guest's QEMU exited.
var ErrAborted = errors.New("aborted")

// ErrKeepalive means the target stopped answering keepalive requests, so the connection was
// closed.
var ErrKeepalive = errors.New("no answer to keepalives")

// TransportError is a failure of the SSH connection itself, not of a remote command: the
// target is unreachable, the connection broke, or the target stopped answering. What was
// running on the target may or may not have finished.
type TransportError struct {
	Op   string // what was being done: "dial", "run", "upload"
	Addr string // the target
	Err  error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("remote: %s %s: %v", e.Op, e.Addr, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// ExitError is a remote command that ran and failed: it exited with a non-zero status or
// was killed by a signal.
type ExitError struct {
	Cmd    string
	Status int    // exit status; -1 if killed by a signal
	Signal string // signal name without "SIG", if killed by one
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return fmt.Sprintf("remote command %q killed by signal %s", e.Cmd, e.Signal)
	}
	return fmt.Sprintf("remote command %q exited with status %d", e.Cmd, e.Status)
}
