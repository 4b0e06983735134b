package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"time"

	"lab/wire"
)

// HelperFlag is the argument that makes the agent binary serve as a helper
// process, whose sockets are a scenario's proc= or user=other sockets,
// instead of running scenarios.
const HelperFlag = "-helper"

// helperRequest is one socket call the agent asks its helper to make.
type helperRequest struct {
	Op       string       `json:"op"`
	Name     string       `json:"name,omitempty"`
	NewName  string       `json:"new_name,omitempty"`
	IP6      bool         `json:"ip6,omitempty"`
	Proto    string       `json:"proto,omitempty"`
	Option   *wire.Option `json:"option,omitempty"`
	Addr     string       `json:"addr,omitempty"`
	Deadline int64        `json:"deadline_unix_ms,omitempty"`
	Bytes    int          `json:"bytes,omitempty"`
}

// helperReply is what the call did.
type helperReply struct {
	Err   string `json:"err,omitempty"` // errno name, or "unsupported"
	Errno int    `json:"errno,omitempty"`
	Local string `json:"local,omitempty"`
	IP6   bool   `json:"ip6,omitempty"`
	FD    int    `json:"fd,omitempty"` // the socket's descriptor in the helper
	N     int    `json:"n,omitempty"`
	EOF   bool   `json:"eof,omitempty"`
}

// helper is one of the agent's helper processes: a process of the agent's
// own user (proc=NAME sockets) or of another unprivileged user (user=other
// sockets), holding a scenario's sockets there. It is driven over a pipe,
// one JSON line each way per call, and lives as long as its scenario, which
// may end it (exit, kill) while it holds sockets.
type helper struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	dead   bool
	waited chan struct{} // closed once the process has ended and been reaped
	stderr *mutable      // the helper's standard error, muted by kill
}

// mutable passes writes on to w until muted.
type mutable struct {
	mu    sync.Mutex
	w     io.Writer
	muted bool
}

func (m *mutable) Write(b []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.muted {
		return len(b), nil
	}
	return m.w.Write(b)
}

func (m *mutable) mute() {
	m.mu.Lock()
	m.muted = true
	m.mu.Unlock()
}

// startHelper re-executes this binary, as user when user is not "" (the
// agent's own user otherwise), and checks it answers.
func startHelper(user string) (*helper, error) {
	who := "the agent's user"
	if user != "" {
		who = user
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the agent's own binary to run as %s: %w", who, err)
	}
	cmd := exec.Command(exe, HelperFlag)
	// A helper a scenario kills with SIGSEGV crashes as Go programs do; its
	// goroutine dump would only fill the agent's standard error. Go prints
	// one for a SIGSEGV sent by kill even with GOTRACEBACK=none, so the
	// helper's standard error is also muted once a kill step signals it.
	cmd.Env = append(os.Environ(), "GOTRACEBACK=none")
	stderr := &mutable{w: os.Stderr}
	if user != "" {
		if err := runAs(cmd, user); err != nil {
			return nil, err
		}
	}
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("starting helper as %s: %w", who, err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("starting helper as %s: %w", who, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting helper as %s (%s must be executable by that user): %w", who, exe, err)
	}
	h := &helper{cmd: cmd, in: in, out: bufio.NewScanner(out), waited: make(chan struct{}), stderr: stderr}
	go func() { cmd.Wait(); close(h.waited) }()
	if _, err := h.call(helperRequest{Op: "ping"}); err != nil {
		h.stop()
		return nil, fmt.Errorf("helper running as %s does not answer: %w", who, err)
	}
	return h, nil
}

var errHelperDead = errors.New("the helper process holding these sockets has ended")

func (h *helper) call(req helperRequest) (helperReply, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead {
		return helperReply{}, errHelperDead
	}
	b, _ := json.Marshal(req)
	if _, err := h.in.Write(append(b, '\n')); err != nil {
		h.dead = true
		return helperReply{}, fmt.Errorf("%w: %w", errHelperDead, err)
	}
	if !h.out.Scan() {
		h.dead = true
		return helperReply{}, fmt.Errorf("%w: %v", errHelperDead, h.out.Err())
	}
	var rep helperReply
	if err := json.Unmarshal(h.out.Bytes(), &rep); err != nil {
		h.dead = true
		return helperReply{}, fmt.Errorf("reading helper reply: %w", err)
	}
	return rep, nil
}

// do makes a call whose only answer is success or an errno.
func (h *helper) do(req helperRequest) error {
	rep, err := h.call(req)
	if err != nil {
		return err
	}
	return rep.err()
}

func (r helperReply) err() error {
	switch r.Err {
	case "":
		return nil
	case wire.Unsupported:
		return fmt.Errorf("%w (errno %d)", errUnsupported, r.Errno)
	}
	return &callError{Name: r.Err, Errno: r.Errno}
}

// helperExitWait bounds how long an ending helper may take to go: it only
// has to leave its loop, or die of a signal.
const helperExitWait = 2 * time.Second

// stop ends the helper process.
func (h *helper) stop() {
	h.in.Close() // the helper exits at EOF
	select {
	case <-h.waited:
	case <-time.After(helperExitWait):
		h.cmd.Process.Kill()
		<-h.waited
	}
}

// exit asks the helper to exit at once without closing its sockets, as a
// program that just calls exit() does, and waits until it has. The call
// describes what happened.
func (h *helper) exit() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead {
		return "", errHelperDead
	}
	h.dead = true
	pid := h.cmd.Process.Pid
	b, _ := json.Marshal(helperRequest{Op: "exit"})
	if _, err := h.in.Write(append(b, '\n')); err != nil {
		return "", fmt.Errorf("%w: %w", errHelperDead, err)
	}
	return h.await(fmt.Sprintf("exit(0) in process %d", pid))
}

// kill sends the helper a signal and waits until it has died of it.
func (h *helper) kill(sig string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead {
		return "", errHelperDead
	}
	pid := h.cmd.Process.Pid
	call := fmt.Sprintf("kill(%d, %s)", pid, sig)
	h.stderr.mute()
	if err := sysSignal(h.cmd.Process, sig); err != nil {
		return call, err
	}
	h.dead = true
	return h.await(call)
}

// await waits for the helper to end after exit or kill; call says what
// ended it, and the result adds how it ended.
func (h *helper) await(call string) (string, error) {
	select {
	case <-h.waited:
	case <-time.After(helperExitWait):
		h.cmd.Process.Kill()
		<-h.waited
		return call + "; did not end, killed", fmt.Errorf("helper process %d did not end within %s", h.cmd.Process.Pid, helperExitWait)
	}
	return call + "; " + h.cmd.ProcessState.String(), nil
}

func (h *helper) open(name string, ip6 bool, proto string) error {
	return h.do(helperRequest{Op: "open", Name: name, IP6: ip6, Proto: proto})
}
func (h *helper) setopt(name string, o wire.Option) error {
	return h.do(helperRequest{Op: "setopt", Name: name, Option: &o})
}
func (h *helper) bind(name string, ap netip.AddrPort) error {
	return h.do(helperRequest{Op: "bind", Name: name, Addr: ap.String()})
}
func (h *helper) listen(name string) error { return h.do(helperRequest{Op: "listen", Name: name}) }
func (h *helper) connect(name string, ap netip.AddrPort, deadline time.Time) error {
	return h.do(helperRequest{Op: "connect", Name: name, Addr: ap.String(), Deadline: deadline.UnixMilli()})
}
func (h *helper) accept(name, newName string, deadline time.Time) error {
	return h.do(helperRequest{Op: "accept", Name: name, NewName: newName, Deadline: deadline.UnixMilli()})
}
func (h *helper) close(name string) error { return h.do(helperRequest{Op: "close", Name: name}) }
func (h *helper) localAddr(name string) string {
	rep, _ := h.call(helperRequest{Op: "local", Name: name})
	return rep.Local
}
func (h *helper) isIP6(name string) bool {
	rep, _ := h.call(helperRequest{Op: "local", Name: name})
	return rep.IP6
}
func (h *helper) fd(name string) int {
	rep, err := h.call(helperRequest{Op: "local", Name: name})
	if err != nil {
		return -1
	}
	return rep.FD
}
func (h *helper) drain(name string) int {
	rep, _ := h.call(helperRequest{Op: "drain", Name: name})
	return rep.N
}
func (h *helper) send(name string, n int) (int, error) {
	rep, err := h.call(helperRequest{Op: "send", Name: name, Bytes: n})
	if err != nil {
		return 0, err
	}
	return rep.N, rep.err()
}
func (h *helper) sendto(name string, ap netip.AddrPort) error {
	return h.do(helperRequest{Op: "sendto", Name: name, Addr: ap.String()})
}
func (h *helper) recv(name string, deadline time.Time) (int, bool, error) {
	rep, err := h.call(helperRequest{Op: "recv", Name: name, Deadline: deadline.UnixMilli()})
	if err != nil {
		return 0, false, err
	}
	return rep.N, rep.EOF, rep.err()
}
func (h *helper) peerAddr(name string) string {
	rep, _ := h.call(helperRequest{Op: "peer", Name: name})
	return rep.Local
}
func (h *helper) closeAll() { h.call(helperRequest{Op: "closeall"}) }

// ServeHelper is the helper process's main loop: it makes each call it reads
// from r on its own sockets and writes the reply to w, until r ends.
func ServeHelper(r io.Reader, w io.Writer) error {
	t := newTable()
	defer t.closeAll()
	in := bufio.NewScanner(r)
	enc := json.NewEncoder(w)
	for in.Scan() {
		var req helperRequest
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			return fmt.Errorf("helper reading request: %w", err)
		}
		if err := enc.Encode(serve(t, req)); err != nil {
			return fmt.Errorf("helper writing reply: %w", err)
		}
	}
	return in.Err()
}

func serve(t *table, req helperRequest) helperReply {
	deadline := time.UnixMilli(req.Deadline)
	var err error
	switch req.Op {
	case "ping":
	case "open":
		err = t.open(req.Name, req.IP6, req.Proto)
	case "setopt":
		err = t.setopt(req.Name, *req.Option)
	case "bind", "connect":
		var ap netip.AddrPort
		if ap, err = netip.ParseAddrPort(req.Addr); err == nil {
			if req.Op == "bind" {
				err = t.bind(req.Name, ap)
			} else {
				err = t.connect(req.Name, ap, deadline)
			}
		}
	case "listen":
		err = t.listen(req.Name)
	case "accept":
		err = t.accept(req.Name, req.NewName, deadline)
	case "close":
		err = t.close(req.Name)
	case "local":
		return helperReply{Local: t.localAddr(req.Name), IP6: t.isIP6(req.Name), FD: t.fd(req.Name)}
	case "drain":
		return helperReply{N: t.drain(req.Name)}
	case "peer":
		return helperReply{Local: t.peerAddr(req.Name)}
	case "send":
		n, err := t.send(req.Name, req.Bytes)
		rep := errReply(err)
		rep.N = n
		return rep
	case "sendto":
		var ap netip.AddrPort
		if ap, err = netip.ParseAddrPort(req.Addr); err == nil {
			err = t.sendto(req.Name, ap)
		}
	case "recv":
		n, eof, err := t.recv(req.Name, deadline)
		rep := errReply(err)
		rep.N, rep.EOF = n, eof
		return rep
	case "exit":
		// As a program that just calls exit(): the kernel closes the
		// sockets, not this process.
		os.Exit(0)
	case "closeall":
		t.closeAll()
	default:
		return helperReply{Err: "EINVAL", Errno: -1}
	}
	return errReply(err)
}

func errReply(err error) helperReply {
	sr := result("", err)
	if sr.Result == wire.OK {
		return helperReply{}
	}
	return helperReply{Err: sr.Result, Errno: sr.Errno}
}
