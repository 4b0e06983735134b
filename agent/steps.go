package agent

// The steps beyond binding and connecting: data (send, sendto, recv), what
// a socket is bound and connected to (local, peer), other processes that
// end while they hold sockets (exit, kill), and time (sleep, waitfree).

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"

	"lab/wire"
)

// waitfreePoll is how often a waitfree step tries to bind: TIME_WAIT
// lengths are whole seconds, and a bind attempt costs microseconds.
const waitfreePoll = 100 * time.Millisecond

// process returns where a socket step's socket lives: this process, or the
// helper process the step names (proc=NAME, or the other user's), started
// the first time a step names it.
func (r *scenarioRun) process(st wire.Step) (sockets, error) {
	name := st.Proc
	if name == "" && st.User == "other" {
		name = "other"
	}
	if name == "" {
		return r.local, nil
	}
	r.mu.Lock()
	h, ok := r.procs[name]
	r.mu.Unlock()
	if ok {
		return h, nil
	}
	user := ""
	if st.User == "other" {
		user = r.env.otherUser
	}
	h, err := startProcess(user)
	if err != nil {
		if st.User == "other" {
			r.mu.Lock()
			r.skipReason = "could not start the second user's process: " + err.Error()
			r.mu.Unlock()
		}
		return nil, fmt.Errorf("starting process %s: %w", name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shut {
		// The scenario ended while the process started: nothing would end it.
		h.stop()
		return nil, errShut
	}
	r.procs[name] = h
	return h, nil
}

func (r *scenarioRun) send(st wire.Step) wire.StepResult {
	n, err := r.owner[st.Sock].send(st.Sock, st.N)
	sr := r.withLocal(st.Sock, fmt.Sprintf("send(%d bytes)", st.N), err)
	sr.Bytes = n
	return sr
}

func (r *scenarioRun) sendto(st wire.Step) wire.StepResult {
	s := r.owner[st.Sock]
	ap, err := r.endpoint(st.Addr, st.Port, s.isIP6(st.Sock))
	if err != nil {
		return wire.StepResult{Result: wire.Error, Call: err.Error()}
	}
	return r.withLocal(st.Sock, fmt.Sprintf("sendto(%s)", ap), s.sendto(st.Sock, ap))
}

// recv reads until the stream ends: eof after a FIN, the errno after a
// reset (ECONNRESET), data when bytes came but the stream did not end within
// recvMore of the last (UDP: what was queued), EAGAIN when nothing came
// within recvWait.
func (r *scenarioRun) recv(st wire.Step) wire.StepResult {
	n, eof, err := r.owner[st.Sock].recv(st.Sock, r.deadline)
	sr := result("read()", err)
	switch {
	case err != nil:
	case eof:
		sr.Result = wire.RecvEOF
	default:
		sr.Result = wire.RecvData
	}
	sr.Bytes = n
	return sr
}

// classify is a local or peer step: the class of the socket's local or peer
// address (see addrClass), unbound or none when it has none.
func (r *scenarioRun) classify(st wire.Step) wire.StepResult {
	s := r.owner[st.Sock]
	call, a, none := "getsockname()", s.localAddr(st.Sock), wire.LocalUnbound
	if st.Verb == wire.VerbPeer {
		call, a, none = "getpeername()", s.peerAddr(st.Sock), wire.PeerNone
	}
	sr := wire.StepResult{Call: call, Result: none, Local: s.localAddr(st.Sock)}
	if a == "" {
		return sr
	}
	sr.Call += " = " + a
	class, err := r.addrClass(a)
	if err != nil {
		sr.Result, sr.Call = wire.Error, sr.Call+": "+err.Error()
		return sr
	}
	sr.Result = class
	return sr
}

// classNames are the symbolic addresses an address class may name, in the
// order they are tried.
var classNames = []string{"addr1", "addr2", "loop", "loop6", "any", "any6", "mcast"}

// addrClass names an address the way a claim does, so it compares across
// runs whatever ports were picked: which of the scenario's addresses it is
// (an IPv4-mapped one as its IPv4 name; "specific" for another) and which
// port: P or Q, a port a step names, "ephemeral" inside the OS's ephemeral
// range, "other" outside it.
func (r *scenarioRun) addrClass(a string) (string, error) {
	ap, err := netip.ParseAddrPort(a)
	if err != nil {
		return "", err
	}
	ip := ap.Addr().Unmap().WithZone("")
	name := "specific"
	for _, n := range classNames {
		if c, err := netip.ParseAddr(r.addrs[n]); err == nil && c == ip {
			name = n
			break
		}
	}
	port := int(ap.Port())
	for _, sym := range []string{"P", "Q"} {
		if p, ok := r.ports[sym]; ok && p == port {
			return name + ":" + sym, nil
		}
	}
	for _, st := range r.sc.Steps {
		if st.Port == strconv.Itoa(port) && port != 0 {
			return name + ":" + st.Port, nil
		}
	}
	lo, hi := r.env.ephemeral[0], r.env.ephemeral[1]
	switch {
	case lo == 0:
		return "", fmt.Errorf("port %d: the OS's ephemeral port range is not known here", port)
	case port >= lo && port <= hi:
		return name + ":ephemeral", nil
	}
	return name + ":other", nil
}

// endProcess is an exit or kill step: the process ends while it
// holds its sockets, and the kernel closes them.
func (r *scenarioRun) endProcess(st wire.Step) wire.StepResult {
	h, ok := r.procs[st.Proc]
	if !ok {
		return wire.StepResult{Result: wire.Error, Call: "no process " + st.Proc}
	}
	var call string
	var err error
	if st.Verb == wire.VerbExit {
		call, err = h.exit()
	} else {
		call, err = h.kill(st.Signal)
	}
	return result(call, err)
}

func (r *scenarioRun) sleep(ctx context.Context, st wire.Step) wire.StepResult {
	d := st.Wait.Duration()
	t := time.NewTimer(time.Until(minTime(time.Now().Add(d), r.deadline)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return wire.StepResult{Call: fmt.Sprintf("sleep(%s)", d), Result: wire.OK}
}

// waitfree measures how long an endpoint stays unavailable: it binds a fresh
// socket with the step's options there every waitfreePoll until a bind
// succeeds, and yields the time that took (waitOutcome: "60s"), the exact
// wait in Waited. A bind that fails otherwise than EADDRINUSE is the
// result; one still refused when the deadline comes is EADDRINUSE.
func (r *scenarioRun) waitfree(ctx context.Context, st wire.Step) wire.StepResult {
	ap, err := r.endpoint(st.Addr, st.Port, false)
	if err != nil {
		return wire.StepResult{Result: wire.Error, Call: err.Error()}
	}
	start := time.Now()
	for attempts := 1; ; attempts++ {
		t := newTable()
		err := t.open("W", false, r.sc.Proto)
		for _, o := range st.Options {
			if err == nil {
				err = t.setopt("W", o)
			}
		}
		if err == nil {
			err = t.bind("W", ap)
		}
		t.closeAll()
		waited := time.Since(start)
		sr := result(fmt.Sprintf("bind(%s) every %s: %d attempts", ap, waitfreePoll, attempts), err)
		sr.Waited = wire.Millis(waited / time.Millisecond)
		switch {
		case sr.Result == wire.OK:
			sr.Result = waitOutcome(waited)
			return sr
		case sr.Result != "EADDRINUSE":
			return sr
		case time.Now().Add(waitfreePoll).After(r.deadline):
			sr.Call += ", still in use at the scenario's deadline"
			return sr
		}
		select {
		case <-time.After(waitfreePoll):
		case <-ctx.Done():
			return sr
		}
	}
}

// waitOutcome is a wait as a comparable outcome: whole seconds under 10 s,
// the nearest 5 s above. Kernels time a minute-long TIME_WAIT a second or
// two late (Linux's timer wheel has a granularity of 512 ticks there, 2 s
// at HZ=250; 5.10 and 6.1 guests measured 60.4 to 61.4 s), so whole seconds
// would change from run to run; the exact wait is in Waited.
func waitOutcome(d time.Duration) string {
	s := d.Seconds()
	if s < 10 {
		return fmt.Sprintf("%ds", int(math.Round(s)))
	}
	return fmt.Sprintf("%ds", 5*int(math.Round(s/5)))
}
