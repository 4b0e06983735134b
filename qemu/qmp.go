//go:build linux

package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// qmp is a client of QEMU's machine protocol (QMP) on one end of a socket pair whose other end
// QEMU got as a file descriptor (-chardev socket,fd=N): no socket file exists, so nothing is
// left behind and no other process can reach the monitor, which can run commands as QEMU's
// user. Snapshots need it to stop the guest, save and load its device state, and let it
// continue. A qmp is used by one goroutine at a time.
type qmp struct {
	conn *net.UnixConn
	r    *bufio.Reader
}

// qmpReply is one line QEMU sends: a command's return or error, an event, or the greeting.
type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	QMP   json.RawMessage `json:"QMP"`
}

// socketPair returns a connected pair of Unix stream sockets: lab's end and QEMU's.
func socketPair() (ours, theirs *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	return os.NewFile(uintptr(fds[0]), "qmp"), os.NewFile(uintptr(fds[1]), "qmp-qemu"), nil
}

// newQMP wraps lab's end of the socket pair; it takes ownership of f.
func newQMP(f *os.File) (*qmp, error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("qmp socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, errors.New("qmp socket is not a Unix socket")
	}
	return &qmp{conn: uc, r: bufio.NewReader(uc)}, nil
}

// handshake reads QEMU's greeting and leaves capability negotiation, after which QEMU takes
// commands.
func (q *qmp) handshake(ctx context.Context) error {
	defer q.bound(ctx)()
	for {
		rep, err := q.read()
		if err != nil {
			return fmt.Errorf("qmp greeting: %w", err)
		}
		if rep.QMP != nil {
			break
		}
	}
	_, err := q.execute(ctx, "qmp_capabilities", nil)
	return err
}

// bound makes reads and writes give up when ctx ends; the returned func lifts that.
func (q *qmp) bound(ctx context.Context) func() {
	if d, ok := ctx.Deadline(); ok {
		q.conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { q.conn.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		q.conn.SetDeadline(time.Time{})
	}
}

// read returns the next line QEMU sent.
func (q *qmp) read() (qmpReply, error) {
	var rep qmpReply
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(line, &rep); err != nil {
		return rep, fmt.Errorf("qmp: reading %q: %w", line, err)
	}
	return rep, nil
}

// execute runs one command and returns its result. files travel with the command as
// SCM_RIGHTS, for getfd. Events QEMU sends meanwhile are skipped: lab asks for state instead
// of waiting for events, which QEMU sends only for some of what it does.
func (q *qmp) execute(ctx context.Context, cmd string, args any, files ...*os.File) (json.RawMessage, error) {
	defer q.bound(ctx)()
	msg := map[string]any{"execute": cmd}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	if _, _, err := q.conn.WriteMsgUnix(append(b, '\n'), oob, nil); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		rep, err := q.read()
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case rep.Error != nil:
			return nil, fmt.Errorf("qmp %s: %s: %s", cmd, rep.Error.Class, rep.Error.Desc)
		case rep.Return != nil:
			return rep.Return, nil
		}
	}
}

// migrationStatus is query-migrate's status: "setup", "active", "completed", "failed", ...
func (q *qmp) migrationStatus(ctx context.Context) (status, why string, err error) {
	raw, err := q.execute(ctx, "query-migrate", nil)
	if err != nil {
		return "", "", err
	}
	var st struct {
		Status      string `json:"status"`
		ErrorDesc   string `json:"error-desc"`
		Setup       int64  `json:"setup-time"`
		TotalTimeMS int64  `json:"total-time"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", "", fmt.Errorf("qmp query-migrate: %w", err)
	}
	return st.Status, st.ErrorDesc, nil
}

// runState is query-status's status: "running", "paused", "inmigrate", "postmigrate", ...
func (q *qmp) runState(ctx context.Context) (string, error) {
	raw, err := q.execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("qmp query-status: %w", err)
	}
	return st.Status, nil
}

func (q *qmp) close() error { return q.conn.Close() }
