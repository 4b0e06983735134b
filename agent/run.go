package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"lab/wire"
)

// acceptWait bounds how long an accept step waits for a pending connection:
// on loopback a connection that was made is queued within microseconds.
const acceptWait = 500 * time.Millisecond

// spreadDrainEvery is how many connections a TCP spread makes between two
// drains of its listeners.
const spreadDrainEvery = 16

// stragglerWait bounds how long a timed-out scenario waits for its steps to
// stop. Every wait in a step ends at the scenario's deadline, so they stop
// within milliseconds of it; this is only a guard against a call that
// blocks regardless, so that it cannot hang the agent.
const stragglerWait = time.Second

// scenarioRun is the state of one scenario: its sockets, where each lives,
// and its concrete ports.
type scenarioRun struct {
	sc    wire.Scenario
	env   runEnv
	addrs map[string]string
	ports map[string]int
	local *table
	// procs are the scenario's other processes by name (proc=NAME, or
	// "other" for user=other), started by the first socket step naming
	// each; a process that exited or was killed stays here, dead. mu guards
	// procs and shut: a step of a timed-out scenario may still be starting
	// one when the scenario closes, and must not leave it running.
	mu       sync.Mutex
	shut     bool
	procs    map[string]process
	owner    map[string]sockets
	protos   map[string]string // each socket's protocol
	deadline time.Time
	// skipReason ends the scenario as skipped: the other user's
	// process could not start (guarded by mu).
	skipReason string
}

// runScenario runs one scenario under its deadline; a scenario that outlives
// it has outcome "timeout". Every socket the scenario opened is closed, and
// every other process it started ended, once its steps have stopped. The
// steps run on their own goroutine so that a call blocking despite the
// deadline cannot hang the agent.
func runScenario(ctx context.Context, sc wire.Scenario, env runEnv) *wire.Result {
	start := time.Now()
	timeout := sc.Timeout.Duration()
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	if needsOther(sc) && env.otherUser == "" {
		return &wire.Result{ID: sc.ID, Outcome: wire.Skipped, Reason: env.otherNote}
	}
	if reason := notMeasurable(sc); reason != "" {
		return &wire.Result{ID: sc.ID, Outcome: wire.Skipped, Reason: reason}
	}
	r := &scenarioRun{
		sc:       sc,
		env:      env,
		addrs:    env.addrs,
		local:    newTable(),
		procs:    map[string]process{},
		owner:    map[string]sockets{},
		protos:   map[string]string{},
		deadline: start.Add(timeout),
	}
	res := &wire.Result{ID: sc.ID, Addrs: map[string]string{}}
	ports, err := freePorts(sc)
	if err != nil {
		res.Outcome, res.Reason = wire.Error, "choosing free ports: "+err.Error()
		return res
	}
	r.ports = ports
	res.Ports = ports
	for _, st := range sc.Steps {
		if st.Addr != "" {
			if a, ok := r.addrs[st.Addr]; ok {
				res.Addrs[st.Addr] = a
			}
		}
	}

	ctx, cancel := context.WithDeadline(ctx, r.deadline)
	defer cancel()
	done := make(chan []wire.StepResult, 1)
	goSteps(func() { done <- r.steps(ctx) })
	timedOut, abandoned := false, false
	select {
	case res.Steps = <-done:
		// Waits inside the steps end at the deadline, so a scenario that
		// finished after it was cut short: its outcome cannot be trusted.
		timedOut = time.Now().After(r.deadline)
	case <-ctx.Done():
		timedOut = true
		// The steps stop at the deadline, a call in progress soon after it.
		// Closing the sockets before they have stopped would let a late step
		// open one that nothing closes, or use a descriptor number reused
		// since; only a call that ignores its deadline is given up on.
		select {
		case res.Steps = <-done:
		case <-time.After(stragglerWait):
			abandoned = true
		}
	}
	r.mu.Lock()
	skip := r.skipReason
	r.mu.Unlock()
	switch {
	case timedOut:
		res.Outcome = wire.Timeout
		res.Reason = fmt.Sprintf("scenario did not finish within %s", timeout)
		if abandoned {
			res.Reason += "; a call that ignored the deadline was left running"
		}
	case skip != "":
		res.Outcome, res.Reason = wire.Skipped, skip
	default:
		res.Outcome, res.Reason = outcome(sc, res.Steps)
	}
	r.closeAll()
	res.Micros = time.Since(start).Microseconds()
	return res
}

// outcome is the last step's result, preceded by the result of every step
// marked try (joined by wire.Then), unless a step before the last that is
// not marked try failed.
func outcome(sc wire.Scenario, steps []wire.StepResult) (string, string) {
	var parts []string
	for i, s := range steps {
		last := i == len(sc.Steps)-1
		reason := fmt.Sprintf("step %d (%s): %s", i+1, s.Text, s.Result)
		switch {
		case s.Result == wire.Unsupported && (last || sc.Steps[i].Try):
			return wire.Unsupported, reason
		case s.Result == wire.Error && (last || sc.Steps[i].Try):
			return wire.Error, reason + ": " + s.Call
		case last || sc.Steps[i].Try:
			parts = append(parts, s.Result)
			if last {
				return strings.Join(parts, wire.Then), ""
			}
		case s.Result != wire.OK:
			if s.Result == wire.Unsupported {
				return wire.Unsupported, reason
			}
			return wire.SetupFailed, reason
		}
	}
	return wire.Error, "scenario stopped before its last step"
}

func (r *scenarioRun) steps(ctx context.Context) []wire.StepResult {
	var out []wire.StepResult
	for _, st := range r.sc.Steps {
		// ctx ends at the deadline, but its timer may fire late: no step may
		// start after the deadline.
		if ctx.Err() != nil || time.Now().After(r.deadline) {
			break
		}
		t := time.Now()
		sr := r.step(ctx, st)
		sr.Text = st.Text
		sr.Micros = time.Since(t).Microseconds()
		r.describe(st, &sr)
		out = append(out, sr)
		r.mu.Lock()
		skip := r.skipReason != ""
		r.mu.Unlock()
		if skip || (sr.Result != wire.OK && !st.Try) {
			break
		}
	}
	return out
}

func (r *scenarioRun) step(ctx context.Context, st wire.Step) wire.StepResult {
	switch st.Verb {
	case wire.VerbSocket:
		s, err := r.process(st)
		if err != nil {
			return wire.StepResult{Result: wire.Error, Call: err.Error()}
		}
		r.owner[st.Sock] = s
		proto := r.proto(st)
		r.protos[st.Sock] = proto
		call := fmt.Sprintf("socket(%s, %s)", familyName(st.IP6), proto)
		if err := s.open(st.Sock, st.IP6, proto); err != nil {
			return result(call, err)
		}
		for _, o := range st.Options {
			if err := s.setopt(st.Sock, o); err != nil {
				return result(call+"; "+optCall(o), err)
			}
			call += "; " + optCall(o)
		}
		return result(call, nil)
	case wire.VerbSetopt:
		o := st.Options[0]
		return r.withLocal(st.Sock, optCall(o), r.owner[st.Sock].setopt(st.Sock, o))
	case wire.VerbBind, wire.VerbConnect:
		s := r.owner[st.Sock]
		ap, err := r.endpoint(st.Addr, st.Port, s.isIP6(st.Sock))
		if err != nil {
			return wire.StepResult{Result: wire.Error, Call: err.Error()}
		}
		call := fmt.Sprintf("%s(%s)", st.Verb, ap)
		if st.Verb == wire.VerbBind {
			return r.withLocal(st.Sock, call, s.bind(st.Sock, ap))
		}
		return r.withLocal(st.Sock, call, s.connect(st.Sock, ap, r.deadline))
	case wire.VerbListen:
		return r.withLocal(st.Sock, "listen()", r.owner[st.Sock].listen(st.Sock))
	case wire.VerbAccept:
		s := r.owner[st.Sock]
		r.owner[st.NewName] = s
		r.protos[st.NewName] = r.protos[st.Sock]
		return r.withLocal(st.NewName, "accept()", s.accept(st.Sock, st.NewName, minTime(time.Now().Add(acceptWait), r.deadline)))
	case wire.VerbClose:
		return result("close()", r.owner[st.Sock].close(st.Sock))
	case wire.VerbTimewait:
		return r.timewait(st)
	case wire.VerbSpread:
		return r.spread(st)
	case wire.VerbSend:
		return r.send(st)
	case wire.VerbSendto:
		return r.sendto(st)
	case wire.VerbRecv:
		return r.recv(st)
	case wire.VerbLocal, wire.VerbPeer:
		return r.classify(st)
	case wire.VerbExit, wire.VerbKill:
		return r.endProcess(st)
	case wire.VerbSleep:
		return r.sleep(ctx, st)
	case wire.VerbWaitfree:
		return r.waitfree(ctx, st)
	}
	return wire.StepResult{Result: wire.Error, Call: "unknown verb " + st.Verb}
}

// proto is the protocol of the socket a socket step creates.
func (r *scenarioRun) proto(st wire.Step) string {
	if st.Proto != "" {
		return st.Proto
	}
	return r.sc.Proto
}

// describe adds the call's arguments as the OS saw them to sr.
func (r *scenarioRun) describe(st wire.Step, sr *wire.StepResult) {
	switch st.Verb {
	case wire.VerbTimewait, wire.VerbSpread, wire.VerbExit, wire.VerbKill, wire.VerbSleep, wire.VerbWaitfree:
		return
	}
	s := r.owner[st.Sock]
	if s == nil {
		return
	}
	ip6 := st.IP6
	if st.Verb != wire.VerbSocket {
		ip6 = s.isIP6(st.Sock)
	}
	sr.Family = familyName(ip6)
	if st.Verb == wire.VerbBind || st.Verb == wire.VerbConnect || st.Verb == wire.VerbSendto {
		if ap, err := r.endpoint(st.Addr, st.Port, ip6); err == nil {
			sr.Addr, sr.Port = ap.Addr().String(), int(ap.Port())
		}
	}
	for _, o := range st.Options {
		level := "SOL_SOCKET"
		if o.Name == "IPV6_V6ONLY" {
			level = "IPPROTO_IPV6"
		}
		sr.Options = append(sr.Options, wire.SetOption{Level: level, Name: o.Name, Value: o.Value, Off: o.Off})
	}
	// socket and accept return the new descriptor; a socket step's ret is
	// socket()'s, its setsockopts are listed above.
	ret := 0
	switch {
	case st.Verb == wire.VerbLocal || st.Verb == wire.VerbPeer || st.Verb == wire.VerbRecv:
		ret = sr.Bytes // what read returned in all; 0 for the address calls
		if sr.Errno != 0 {
			ret = -1
		}
	case st.Verb == wire.VerbSend:
		ret = sr.Bytes
		if sr.Result != wire.OK {
			ret = -1
		}
	case sr.Result != wire.OK:
		ret = -1
	case st.Verb == wire.VerbSocket:
		ret = s.fd(st.Sock)
	case st.Verb == wire.VerbAccept:
		ret = s.fd(st.NewName)
	}
	sr.Ret = &ret
}

// withLocal is result with the socket's local address after the call.
func (r *scenarioRun) withLocal(sock, call string, err error) wire.StepResult {
	sr := result(call, err)
	if s := r.owner[sock]; s != nil {
		sr.Local = s.localAddr(sock)
	}
	return sr
}

// result turns an error into a step result: ok, unsupported or an errno name.
func result(call string, err error) wire.StepResult {
	sr := wire.StepResult{Call: call, Result: wire.OK}
	if err == nil {
		return sr
	}
	if errors.Is(err, errUnsupported) {
		sr.Result = wire.Unsupported
		return sr
	}
	var e *callError
	if errors.As(err, &e) {
		sr.Result, sr.Errno = e.Name, e.Errno
		return sr
	}
	name, num := errnoName(err)
	sr.Result, sr.Errno = name, num
	return sr
}

func optCall(o wire.Option) string { return "setsockopt(" + optValue(o) + ")" }

// optValue is an option as the language writes it: SO_REUSEADDR=1,
// SO_LINGER=5 (on, five seconds), SO_LINGER=off.
func optValue(o wire.Option) string {
	if o.Off {
		return o.Name + "=off"
	}
	return fmt.Sprintf("%s=%d", o.Name, o.Value)
}

func familyName(ip6 bool) string {
	if ip6 {
		return "inet6"
	}
	return "inet"
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// endpoint resolves a symbolic address and port. An IPv4 address given to an
// IPv6 socket is used in its IPv4-mapped form.
func (r *scenarioRun) endpoint(addr, port string, ip6 bool) (netip.AddrPort, error) {
	a, ok := r.addrs[addr]
	if !ok {
		a = addr
	}
	ip, err := netip.ParseAddr(a)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", addr, err)
	}
	if ip6 && ip.Is4() {
		ip = netip.AddrFrom16(ip.As16())
	}
	p, ok := r.ports[port]
	if !ok {
		n, err := strconv.Atoi(port)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("port %q: %w", port, err)
		}
		p = n
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// timewait leaves a TIME_WAIT entry on a local endpoint: a listener with the
// given options is bound there, accepts one connection, and the accepted side
// (which inherits the listener's options) closes first, so it is the one that
// waits; with SO_LINGER=0 its close resets the connection and no entry is
// left.
func (r *scenarioRun) timewait(st wire.Step) wire.StepResult {
	// The step's sockets are its own, not the scenario's, so no step's ret
	// or address shows them: its call lists every call made on them.
	var calls []string
	t := newTable()
	t.calls = &calls
	defer t.closeAll()
	ap, err := r.endpoint(st.Addr, st.Port, false)
	if err != nil {
		return wire.StepResult{Result: wire.Error, Call: err.Error()}
	}
	dst := ap
	if ap.Addr().IsUnspecified() {
		dst = netip.AddrPortFrom(netip.MustParseAddr(r.addrs["loop"]), ap.Port())
	}
	call := func() string { return fmt.Sprintf("timewait(%s): %s", ap, strings.Join(calls, "; ")) }
	// The failed call is the last listed.
	fail := func(err error) wire.StepResult {
		sr := result(call(), err)
		if sr.Result == wire.OK {
			sr.Result = wire.Error
		}
		return sr
	}
	if err := t.open("L", false, "tcp"); err != nil {
		return fail(err)
	}
	for _, o := range st.Options {
		if err := t.setopt("L", o); err != nil {
			return fail(err)
		}
	}
	if err := t.bind("L", ap); err != nil {
		return fail(err)
	}
	if err := t.listen("L"); err != nil {
		return fail(err)
	}
	if err := t.open("C", false, "tcp"); err != nil {
		return fail(err)
	}
	if err := t.connect("C", dst, r.deadline); err != nil {
		return fail(err)
	}
	if err := t.accept("L", "S", minTime(time.Now().Add(acceptWait), r.deadline)); err != nil {
		return fail(err)
	}
	if err := t.close("L"); err != nil {
		return fail(err)
	}
	// The accepted side closes first (active close) and so enters TIME_WAIT
	// once the client's FIN arrives; the client waits for the server's FIN
	// before closing so it never resets the connection.
	if err := t.close("S"); err != nil {
		return fail(err)
	}
	// With SO_LINGER=0 the accepted side resets the connection instead,
	// leaving no TIME_WAIT entry: that is the kernel's answer, not a failure.
	if err := t.waitEOF("C", r.deadline); err != nil && result("", err).Result != "ECONNRESET" {
		return fail(err)
	}
	if err := t.close("C"); err != nil {
		return fail(err)
	}
	// The server's ACK of the client's FIN, which moves it to TIME_WAIT, is
	// processed asynchronously even on loopback.
	time.Sleep(10 * time.Millisecond)
	return wire.StepResult{Call: call(), Result: wire.OK}
}

// spread sends N datagrams (udp) or makes N connections (tcp), each from a
// fresh source port, to the endpoint the sockets share and counts what each
// socket got.
func (r *scenarioRun) spread(st wire.Step) wire.StepResult {
	first := st.Socks[0]
	s := r.owner[first]
	dst, err := netip.ParseAddrPort(s.localAddr(first))
	if err != nil {
		return wire.StepResult{Result: wire.Error, Call: "spread: socket " + first + " is not bound"}
	}
	if dst.Addr().IsUnspecified() {
		loop := r.addrs["loop"]
		if dst.Addr().Is6() && !dst.Addr().Is4In6() {
			loop = r.addrs["loop6"]
		}
		dst = netip.AddrPortFrom(netip.MustParseAddr(loop), dst.Port())
	}
	proto := r.protos[first]
	call := fmt.Sprintf("spread(%d x %s to %s)", st.N, proto, dst)
	counts := make([]int, len(st.Socks))
	drain := func() {
		for i, name := range st.Socks {
			counts[i] += r.owner[name].drain(name)
		}
	}
	t := newTable()
	defer t.closeAll()
	ip6 := dst.Addr().Is6() && !dst.Addr().Is4In6()
	sent := 0
	for i := 0; i < st.N && time.Now().Before(r.deadline); i++ {
		name := "c" + strconv.Itoa(i)
		if err := t.open(name, ip6, proto); err != nil {
			return result(call+": client socket", err)
		}
		if proto == "udp" {
			err = t.sendto(name, dst)
		} else {
			err = t.connect(name, dst, r.deadline)
		}
		if err != nil {
			return result(fmt.Sprintf("%s: sending #%d", call, i+1), err)
		}
		sent++
		// Connections wait in their listener's backlog (128) until drained;
		// draining every spreadDrainEvery keeps even one listener that gets
		// them all well below it, without a round trip to each helper
		// process per connection.
		if proto == "tcp" && sent%spreadDrainEvery == 0 {
			drain()
		}
		t.close(name)
	}
	// Datagrams sent on loopback are queued before sendto returns, but give
	// stragglers a moment.
	for total, idle := 0, 0; idle < 5 && time.Now().Before(r.deadline); {
		drain()
		n := sum(counts)
		if n >= sent {
			break
		}
		if n == total {
			idle++
			time.Sleep(10 * time.Millisecond)
		}
		total = n
	}
	return wire.StepResult{Call: call, Result: spreadOutcome(counts), Counts: counts, Sent: sent}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// spreadOutcome classifies how traffic was spread over a reuse group.
func spreadOutcome(counts []int) string {
	total := sum(counts)
	if total == 0 {
		return wire.SpreadNone
	}
	even := true
	for _, c := range counts {
		if c == total {
			return wire.SpreadSingle
		}
		if c*len(counts)*2 < total {
			even = false
		}
	}
	if even {
		return wire.SpreadEven
	}
	return wire.SpreadUneven
}

func (r *scenarioRun) closeAll() {
	r.local.shut()
	r.mu.Lock()
	r.shut = true
	procs := r.procs
	r.mu.Unlock()
	for _, h := range procs {
		h.stop() // a process's sockets close as it ends
	}
}

// freePorts picks a free port for each of P and Q the scenario uses: one
// that is free for both TCP and UDP on the wildcard address, so every
// address of the scenario can bind it.
func freePorts(sc wire.Scenario) (map[string]int, error) {
	ports := map[string]int{}
	for _, st := range sc.Steps {
		if st.Port != "P" && st.Port != "Q" {
			continue
		}
		if _, done := ports[st.Port]; done {
			continue
		}
		p, err := freePort(ports)
		if err != nil {
			return nil, err
		}
		ports[st.Port] = p
	}
	return ports, nil
}

func freePort(taken map[string]int) (int, error) {
	var lastErr error
	for try := 0; try < 20; try++ {
		p, err := probeFreePort()
		if err != nil {
			lastErr = err
			continue
		}
		clash := false
		for _, q := range taken {
			clash = clash || q == p
		}
		if !clash {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no port free for both tcp and udp after 20 tries: %v", lastErr)
}

// probeFreePort asks the kernel for a TCP port on the wildcard address and
// checks the same UDP port is free too.
func probeFreePort() (int, error) {
	t := newTable()
	defer t.closeAll()
	any4 := netip.MustParseAddrPort("0.0.0.0:0")
	if err := t.open("t", false, "tcp"); err != nil {
		return 0, err
	}
	if err := t.bind("t", any4); err != nil {
		return 0, err
	}
	ap, err := netip.ParseAddrPort(t.localAddr("t"))
	if err != nil {
		return 0, err
	}
	if err := t.open("u", false, "udp"); err != nil {
		return 0, err
	}
	if err := t.bind("u", netip.AddrPortFrom(any4.Addr(), ap.Port())); err != nil {
		return 0, err
	}
	return int(ap.Port()), nil
}
