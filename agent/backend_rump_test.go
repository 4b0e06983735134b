//go:build rump

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"lab/scenario"
	"lab/wire"
)

// These tests run the agent's rump backend on the rump kernel linked into
// the test binary. What they expect comes from NetBSD's source (file and
// function named at each) or was measured on this kernel, never from the
// answer.

// run runs scenarios written in the scenario language and returns the
// environment and the results by id.
func runYAML(t *testing.T, yaml string) (*wire.Env, map[string]*wire.Result) {
	t.Helper()
	scs, err := scenario.Parse("test.yaml", []byte("scenarios:\n"+yaml))
	if err != nil {
		t.Fatal(err)
	}
	return runWire(t, scenario.Wire(scs))
}

func runWire(t testing.TB, scs []wire.Scenario) (*wire.Env, map[string]*wire.Result) {
	t.Helper()
	var env *wire.Env
	res := map[string]*wire.Result{}
	err := Run(context.Background(), wire.Request{Scenarios: scs}, func(l wire.Line) error {
		if l.Env != nil {
			env = l.Env
		}
		if l.Result != nil {
			res[l.Result.ID] = l.Result
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return env, res
}

func wantOutcome(t *testing.T, res map[string]*wire.Result, id, want string) {
	t.Helper()
	r := res[id]
	if r == nil {
		t.Fatalf("%s: no result", id)
	}
	if r.Outcome != want {
		t.Errorf("%s: %s (%s), want %s; steps %+v", id, r.Outcome, r.Reason, want, r.Steps)
	}
}

func TestEnvSaysRumpKernel(t *testing.T) {
	env, _ := runWire(t, nil)
	if env.OS != "netbsd" || env.Family != "bsd" {
		t.Errorf("os %q family %q, want netbsd, bsd", env.OS, env.Family)
	}
	for _, want := range []string{"7.99.34", "rump kernel", "src-netbsd 82f3a690, 2016-08-02"} {
		if !strings.Contains(env.KernelRelease, want) {
			t.Errorf("kernel_release %q does not say %q", env.KernelRelease, want)
		}
	}
	if !strings.HasPrefix(env.KernelVersion, "NetBSD 7.99.34") || !strings.Contains(env.KernelVersion, "rump kernel") {
		t.Errorf("kernel_version %q", env.KernelVersion)
	}
	if env.UID != 0 || env.OtherUser != "uid 1000" {
		t.Errorf("uid %d, other user %q", env.UID, env.OtherUser)
	}
	if env.Addrs["addr1"] != "127.0.0.2" || env.Addrs["addr2"] != "127.0.0.3" {
		t.Errorf("addrs %v (%s)", env.Addrs, env.AddrsNote)
	}
}

func TestSockaddrIsNetBSDs(t *testing.T) {
	for _, c := range []struct {
		ip6  bool
		ap   string
		want string
	}{
		{false, "127.0.0.2:4660", "10 02 1234 7f000002 0000000000000000"},
		{true, "[::1]:4660", "1c 18 1234 00000000 00000000000000000000000000000001 00000000"},
		{true, "[::ffff:127.0.0.2]:4660", "1c 18 1234 00000000 00000000000000000000ffff7f000002 00000000"},
		// An IPv6 address on an IPv4 socket: a sockaddr_in6, for the kernel to refuse.
		{false, "[::1]:4660", "1c 18 1234 00000000 00000000000000000000000000000001 00000000"},
	} {
		ap := netip.MustParseAddrPort(c.ap)
		b := sockaddr(c.ip6, ap)
		if got := fmt.Sprintf("%x", b); got != strings.ReplaceAll(c.want, " ", "") {
			t.Errorf("sockaddr(%v, %s) = % x, want %s", c.ip6, c.ap, b, c.want)
		}
		back, err := parseSockaddr(b)
		if err != nil || back != ap {
			t.Errorf("parseSockaddr(sockaddr(%s)) = %v, %v", c.ap, back, err)
		}
	}
	if _, err := parseSockaddr([]byte{16, 99}); err == nil {
		t.Error("parseSockaddr took a family it does not know")
	}
}

func TestErrnoNames(t *testing.T) {
	for _, c := range []struct {
		err  error
		name string
		num  int
	}{
		{os.NewSyscallError("bind", netbsdErrno(48)), "EADDRINUSE", 48},
		{netbsdErrno(49), "EADDRNOTAVAIL", 49},
		{netbsdErrno(35), "EAGAIN", 35},
		{netbsdErrno(86), "ENOTSUP", 86},
		{netbsdErrno(45), "EOPNOTSUPP", 45},
		{netbsdErrno(200), "errno200", 200},
		{errors.New("not an errno"), wire.Error, 0},
	} {
		if name, num := errnoName(c.err); name != c.name || num != c.num {
			t.Errorf("errnoName(%v) = %s, %d; want %s, %d", c.err, name, num, c.name, c.num)
		}
	}
}

// TestBSDTable: rows 6 and 7 with SO_REUSEADDR only on the second socket are
// ok on NetBSD: in_pcbbind_port (sys/netinet/in_pcb.c) looks up a wildcard
// match only when the new socket has neither SO_REUSEADDR nor SO_REUSEPORT
// (wild = 1 at line 335), so with SO_REUSEADDR only an exact address match
// conflicts.
func TestBSDTable(t *testing.T) {
	_, res := runYAML(t, `
  - {id: row6, title: t, source: s, proto: tcp, steps: [socket A, bind A any:P, socket B SO_REUSEADDR, bind B addr1:P]}
  - {id: row7, title: t, source: s, proto: tcp, steps: [socket A, bind A addr1:P, socket B SO_REUSEADDR, bind B any:P]}
  - {id: row4, title: t, source: s, proto: tcp, steps: [socket A, bind A any:P, socket B, bind B addr1:P]}
  - {id: row3-both, title: t, source: s, proto: tcp, steps: [socket A SO_REUSEADDR, bind A addr1:P, socket B SO_REUSEADDR, bind B addr1:P]}
  - {id: reuseport-both, title: t, source: s, proto: tcp, steps: [socket A SO_REUSEPORT, bind A addr1:P, socket B SO_REUSEPORT, bind B addr1:P]}
`)
	wantOutcome(t, res, "row6", "ok")
	wantOutcome(t, res, "row7", "ok")
	wantOutcome(t, res, "row4", "EADDRINUSE")
	wantOutcome(t, res, "row3-both", "EADDRINUSE") // t found, reuseport is 0 (line 386)
	wantOutcome(t, res, "reuseport-both", "ok")
	if r := res["row4"]; r != nil && r.Steps[3].Errno != 48 {
		t.Errorf("EADDRINUSE has number %d, want NetBSD's 48", r.Steps[3].Errno)
	}
}

// TestUnsupportedOptions: options NetBSD's headers do not define.
func TestUnsupportedOptions(t *testing.T) {
	_, res := runYAML(t, `
  - {id: lb, title: t, source: s, proto: udp, steps: [socket A SO_REUSEPORT_LB, bind A addr1:P]}
  - {id: excl, title: t, source: s, proto: tcp, steps: [socket A SO_EXCLUSIVEADDRUSE, bind A addr1:P]}
  - {id: exclbind, title: t, source: s, proto: tcp, steps: [socket A, bind A addr1:P, setopt A SO_EXCLBIND]}
`)
	wantOutcome(t, res, "lb", "unsupported")
	wantOutcome(t, res, "excl", "unsupported")
	wantOutcome(t, res, "exclbind", "unsupported")
}

// TestOtherUser: a second rump process with uid 1000. in_pcbbind_port
// (sys/netinet/in_pcb.c:362-375) refuses a port bound by a socket of another
// uid unless both are on the wildcard address with SO_REUSEPORT.
func TestOtherUser(t *testing.T) {
	env, res := runYAML(t, `
  - {id: other, title: t, source: s, proto: tcp, steps: [socket A SO_REUSEPORT, bind A addr1:P, socket B SO_REUSEPORT user=other, bind B addr1:P]}
  - {id: same, title: t, source: s, proto: tcp, steps: [socket A SO_REUSEPORT, bind A addr1:P, socket B SO_REUSEPORT, bind B addr1:P]}
  - {id: other-any, title: t, source: s, proto: udp, steps: [socket A SO_REUSEPORT, bind A any:P, socket B SO_REUSEPORT user=other, bind B any:P]}
  - {id: other-listen, title: t, source: s, proto: tcp, steps: ["socket L user=other", "bind L loop:P", "listen L", "socket C", "connect C loop:P", "accept L S"]}
`)
	if env.OtherUser != "uid 1000" {
		t.Fatalf("other user %q (%s)", env.OtherUser, env.OtherUserNote)
	}
	wantOutcome(t, res, "other", "EADDRINUSE")
	wantOutcome(t, res, "same", "ok")
	wantOutcome(t, res, "other-any", "ok")
	wantOutcome(t, res, "other-listen", "ok")
	// The other process has a descriptor table of its own (RUMP_RFCFDG): its
	// first socket is descriptor 0 there, as the agent's is in its own.
	if r := res["other"]; r != nil && (r.Steps[2].Ret == nil || *r.Steps[2].Ret != 0) {
		t.Errorf("the other process's first socket is %v, want descriptor 0", r.Steps[2].Ret)
	}
	h, err := startProcess(env.OtherUser)
	if err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	var uid int
	do(h.(*rumpProc).proc, func() { uid = rumpGetuid() })
	if uid != 1000 {
		t.Errorf("the second process has uid %d", uid)
	}
	// Each scenario's processes end with it.
	if live := processes(); len(live) != 2 {
		t.Errorf("processes alive: %v, want the agent's and the one started here", live)
	}
}

// TestAcceptedTimeWaitHidesFromBind: the TIME_WAIT entry a timewait step
// leaves is the accepted socket's, and NetBSD's bind does not see it, unless
// the port is a multiple of 128. in_pcballoc (sys/netinet/in_pcb.c:222) puts
// every new pcb in the port hash bucket of port 0; syn_cache_get
// (sys/netinet/tcp_input.c:3996) gives the accepted pcb its port without
// moving it to that port's bucket (only in_pcbbind_port does, line 397); and
// in_pcblookup_port searches the bucket of the port asked for, of 128
// (tcbhashsize, sys/netinet/tcp_subr.c:232), where port 0's is also that of
// every multiple of 128.
func TestAcceptedTimeWaitHidesFromBind(t *testing.T) {
	_, res := runYAML(t, `
  - {id: tw-40065, title: t, source: s, proto: tcp, steps: [timewait addr1:40065, socket B, bind B addr1:40065]}
  - {id: tw-40064, title: t, source: s, proto: tcp, steps: [timewait addr1:40064, socket B, bind B addr1:40064]}
  - {id: est-40066, title: t, source: s, proto: tcp, steps: [socket L, bind L addr1:40066, listen L, socket C, connect C addr1:40066, accept L S, close L, socket B, bind B addr1:40066]}
  - {id: est-40192, title: t, source: s, proto: tcp, steps: [socket L, bind L addr1:40192, listen L, socket C, connect C addr1:40192, accept L S, close L, socket B, bind B addr1:40192]}
`)
	wantOutcome(t, res, "tw-40065", "ok")
	wantOutcome(t, res, "tw-40064", "EADDRINUSE")
	wantOutcome(t, res, "est-40066", "ok")
	wantOutcome(t, res, "est-40192", "EADDRINUSE")
}

// TestTimeWaitLength measures how long a TIME_WAIT entry blocks a bind, for
// connections from 127.0.0.1 and from 127.0.0.2 to 127.0.0.1: the client
// side's entries, which are in the port hash (the client bound its address
// itself). NetBSD sets a connection's MSL in tcp_established
// (sys/netinet/tcp_subr.c:2066-2080): net.inet.tcp.mslt.loopback (tcp_msl_loop) when the local
// address is INADDR_LOOPBACK itself, else net.inet.tcp.mslt.local when the
// peer is on a subnet of an interface (127/8 of lo0 is one), in slow ticks
// of 500 ms; TIME_WAIT lasts 2 MSL (TCPT_2MSL, tcp_input.c:2988). The
// kernel's values are read and compared with what was measured.
func TestTimeWaitLength(t *testing.T) {
	runWire(t, nil) // lo0 gets its aliases
	var tw map[string]time.Duration
	var err error
	onKernelThread(func() { tw, err = measureTimeWaits("127.0.0.1:40301", "127.0.0.2:40302") })
	if err != nil {
		t.Fatal(err)
	}
	const prSlowHz = 2 // PR_SLOWHZ, sys/sys/protosw.h
	for _, c := range []struct{ addr, sysctl string }{
		{"127.0.0.1:40301", "net.inet.tcp.mslt.loopback"},
		{"127.0.0.2:40302", "net.inet.tcp.mslt.local"},
	} {
		msl, err := sysctlInt(c.sysctl)
		if err != nil {
			t.Fatal(err)
		}
		want := 2 * time.Duration(msl) * time.Second / prSlowHz
		got := tw[c.addr]
		t.Logf("TIME_WAIT of a connection from %s lasted %s; %s = %d slow ticks, so 2 MSL = %s", c.addr, got.Round(time.Millisecond), c.sysctl, msl, want)
		// The 2MSL timer is armed in slow ticks of 500 ms.
		if got < want-600*time.Millisecond || got > want+time.Second {
			t.Errorf("TIME_WAIT from %s lasted %s, 2 x %s is %s", c.addr, got, c.sysctl, want)
		}
	}
}

// measureTimeWaits leaves a TIME_WAIT entry on each client address, from a
// connection to 127.0.0.1:40300 that the client closes first, and tries to
// bind each address every 20 ms until it may.
func measureTimeWaits(clients ...string) (map[string]time.Duration, error) {
	tb := newTable()
	defer tb.closeAll()
	deadline := time.Now().Add(3 * time.Second)
	srv := netip.MustParseAddrPort("127.0.0.1:40300")
	if err := errors.Join(tb.open("L", false, "tcp"), tb.bind("L", srv), tb.listen("L")); err != nil {
		return nil, err
	}
	for i, c := range clients {
		cli, s := "C"+strconv.Itoa(i), "S"+strconv.Itoa(i)
		for j, step := range []func() error{
			func() error { return tb.open(cli, false, "tcp") },
			func() error { return tb.bind(cli, netip.MustParseAddrPort(c)) },
			func() error { return tb.connect(cli, srv, deadline) },
			func() error { return tb.accept("L", s, deadline) },
			func() error { return tb.close(cli) }, // the client closes first: its side waits
			func() error { return tb.waitEOF(s, deadline) },
			func() error { return tb.close(s) },
		} {
			if err := step(); err != nil {
				return nil, fmt.Errorf("%s: step %d: %w", c, j+1, err)
			}
		}
	}
	start := time.Now()
	out := map[string]time.Duration{}
	for len(out) < len(clients) {
		if time.Since(start) > 20*time.Second {
			return nil, fmt.Errorf("TIME_WAIT entries still blocked binds after 20 s (ended: %v)", out)
		}
		for _, c := range clients {
			if _, done := out[c]; done {
				continue
			}
			p := newTable()
			err := p.open("B", false, "tcp")
			if err == nil {
				err = p.bind("B", netip.MustParseAddrPort(c))
			}
			p.closeAll()
			switch {
			case err == nil:
				out[c] = time.Since(start)
			case !errors.Is(err, netbsdErrno(48)):
				return nil, err
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out, nil
}

// TestIPv6 : NetBSD's sockets are IPV6_V6ONLY by default (ip6_v6only = 1,
// sys/netinet6/ip6_input.c), so a plain any6 socket and an IPv4 any socket
// share a port; with IPV6_V6ONLY=0 they conflict.
func TestIPv6(t *testing.T) {
	_, res := runYAML(t, `
  - {id: default, title: t, source: s, proto: tcp, steps: [socket A ip6, bind A any6:P, socket B, bind B any:P]}
  - {id: v6only0, title: t, source: s, proto: tcp, steps: ["socket A IPV6_V6ONLY=0 ip6", bind A any6:P, socket B, bind B any:P]}
  - {id: loop6, title: t, source: s, proto: udp, steps: [socket A ip6, bind A loop6:P, socket B ip6, bind B loop6:P]}
  - {id: v4-on-v6, title: t, source: s, proto: tcp, steps: ["socket A IPV6_V6ONLY=0 ip6", bind A loop:P]}
`)
	wantOutcome(t, res, "default", "ok")
	wantOutcome(t, res, "v6only0", "EADDRINUSE")
	wantOutcome(t, res, "loop6", "EADDRINUSE")
	wantOutcome(t, res, "v4-on-v6", "ok")
}

// TestCallsFromAnotherGoroutine: a call made off the kernel's thread is
// handed to it.
func TestCallsFromAnotherGoroutine(t *testing.T) {
	done := make(chan error)
	go func() {
		tb := newTable()
		defer tb.closeAll()
		if err := tb.open("A", false, "udp"); err != nil {
			done <- err
			return
		}
		done <- tb.bind("A", netip.MustParseAddrPort("127.0.0.1:0"))
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if theKernel().onThread() {
		t.Fatal("the test goroutine is on the kernel's thread")
	}
}

// TestWholeCatalog: every scenario gets a result other than error, and every
// descriptor the agent opened is closed afterwards.
func TestWholeCatalog(t *testing.T) {
	scs, err := scenario.ParseFile("../scenarios.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, res := runWire(t, scenario.Wire(scs))
	if len(res) != len(scs) {
		t.Fatalf("%d results for %d scenarios", len(res), len(scs))
	}
	for id, r := range res {
		if r.Outcome == wire.Error || r.Outcome == wire.Timeout || r.Outcome == wire.Skipped {
			t.Errorf("%s: %s (%s)", id, r.Outcome, r.Reason)
		}
	}
	if live := processes(); len(live) != 1 {
		t.Errorf("processes alive after the catalog: %v, want only the agent's", live)
	}
	for _, proc := range processes() {
		if open := openFDs(proc); len(open) > 0 {
			t.Errorf("process %d still has descriptors %v open", proc, open)
		}
	}
}

// openFDs lists the descriptors below 256 open in a rump process.
func openFDs(proc int) []int {
	var open []int
	do(proc, func() {
		for fd := 0; fd < 256; fd++ {
			if rumpFcntl(fd, nbF_GETFL) >= 0 {
				open = append(open, fd)
			}
		}
	})
	return open
}

// FuzzParseSockaddr: whatever bytes getsockname returns, parseSockaddr
// returns an error or an address that sockaddr encodes back to them.
func FuzzParseSockaddr(f *testing.F) {
	f.Add(sockaddr(false, netip.MustParseAddrPort("127.0.0.2:4660")))
	f.Add(sockaddr(true, netip.MustParseAddrPort("[::1]:4660")))
	f.Add([]byte{16, 99})
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := parseSockaddr(b)
		if err != nil {
			return
		}
		again := sockaddr(b[1] == nbAF_INET6, ap)
		if b[1] == nbAF_INET && string(again[2:8]) != string(b[2:8]) ||
			b[1] == nbAF_INET6 && string(again[2:4])+string(again[8:24]) != string(b[2:4])+string(b[8:24]) {
			t.Errorf("parseSockaddr(% x) = %s, which encodes as % x", b, ap, again)
		}
	})
}

// TestNewVerbsOnNetBSD: the steps beyond bind and connect on NetBSD's code,
// each outcome from its source (file and function named with each case).
func TestNewVerbsOnNetBSD(t *testing.T) {
	listen := `"socket L", "bind L loop:P", "listen L"`
	_, res := runYAML(t, `
  - {id: udp-sendto-autobinds, title: t, source: s, proto: udp, steps: ["socket A", "try local A", "sendto A loop:P", "local A"]}
  - {id: tcp-connect-autobinds, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A", "try local A", "connect A loop:P", "try local A", "peer A"]}
  - {id: connect-replaces-wildcard, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A", "bind A any:Q", "try local A", "connect A loop:P", "local A"]}
  - {id: port0, title: t, source: s, proto: tcp, steps: ["socket A", "bind A addr1:0", "local A"]}
  - {id: no-peer, title: t, source: s, proto: udp, steps: ["socket A", "bind A addr1:P", "peer A"]}
  - {id: graceful, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A", "connect A loop:P", "accept L S", "send A 10", "close A", "recv S"]}
  - {id: linger0-resets, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A SO_LINGER=0", "connect A loop:P", "accept L S", "send A 10", "close A", "recv S"]}
  - {id: data, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A", "connect A loop:P", "accept L S", "send A 100", "recv S"]}
  - {id: nothing, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A", "connect A loop:P", "accept L S", "recv S"]}
  - {id: datagram, title: t, source: s, proto: udp, steps: ["socket A", "bind A loop:P", "socket B", "sendto B loop:P", "recv A"]}
  - {id: exit-linger0, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A SO_LINGER=0 proc=two", "connect A loop:P", "accept L S", "send A 10", "exit two", "recv S"]}
  - {id: kill-graceful, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A proc=two", "connect A loop:P", "accept L S", "kill two SIGSEGV", "recv S"]}
  - {id: exit-frees-port, title: t, source: s, proto: tcp, steps: ["socket A proc=two", "bind A addr1:P", "socket B", "try bind B addr1:P", "exit two", "bind B addr1:P"]}
  - {id: same-uid-shares, title: t, source: s, proto: udp, steps: ["socket A SO_REUSEPORT", "bind A addr1:P", "socket B SO_REUSEPORT proc=two", "bind B addr1:P"]}
  - {id: linger-waits, title: t, source: s, proto: tcp, timeout: 5s, steps: [`+listen+`, "socket A SO_LINGER=1", "connect A loop:P", "accept L S", "send A 8000000", "try close A", "recv S"]}
`)
	for id, want := range map[string]string{
		// udp_output binds an unbound socket to the wildcard and a port from
		// the anonymous range first (in_pcbbind(inp, NULL), udp_usrreq.c).
		"udp-sendto-autobinds": "unbound then any:ephemeral",
		// in_pcbconnect takes the route's source address and, for port 0,
		// in_pcbbind's anonymous port (in_pcb.c:540-560).
		"tcp-connect-autobinds":     "unbound then loop:ephemeral then loop:P",
		"connect-replaces-wildcard": "any:Q then loop:Q",
		// in_pcbsetport picks from anonportmin..anonportmax.
		"port0": "addr1:ephemeral",
		// getpeername on an unconnected socket: ENOTCONN.
		"no-peer":  "none",
		"graceful": "eof",
		// tcp_disconnect drops (a RST) a socket with SO_LINGER and a
		// linger time of 0 (tcp_usrreq.c), whoever closes it.
		"linger0-resets": "ECONNRESET",
		"data":           "data",
		"nothing":        "EAGAIN",
		"datagram":       "data",
		// The process's end closes its sockets through fd_free and soclose,
		// the path of close(): with SO_LINGER=0 a reset, no lingering.
		"exit-linger0":    "ECONNRESET",
		"kill-graceful":   "eof",
		"exit-frees-port": "EADDRINUSE then ok",
		// One uid: SO_REUSEPORT on both shares the port (in_pcb.c:362-386).
		"same-uid-shares": "ok",
		// soclose waits for the linger time on a blocking socket (sowait,
		// uipc_socket.c:761-765) and returns its EWOULDBLOCK when the time
		// runs out (NetBSD's EAGAIN, 35); the close goes on gracefully, so S
		// reads what was queued, then the end of the stream.
		"linger-waits": "EAGAIN then eof",
	} {
		wantOutcome(t, res, id, want)
	}
	if r := res["linger-waits"]; r != nil && len(r.Steps) == 10 {
		if close := r.Steps[8]; close.Micros < 900_000 || close.Errno != 35 {
			t.Errorf("the lingering close took %d µs and failed with errno %d; want about 1 s and 35", close.Micros, close.Errno)
		}
		if sent, read := r.Steps[7].Bytes, r.Steps[9].Bytes; sent == 0 || read != sent {
			t.Errorf("send queued %d bytes and recv read %d; want all that was queued", sent, read)
		}
	}
	if r := res["exit-linger0"]; r != nil && len(r.Steps) == 9 && !strings.Contains(r.Steps[7].Call, "rump_pub_lwproc_releaselwp") {
		t.Errorf("exit's call %q does not say how the process ended", r.Steps[7].Call)
	}
	if live := processes(); len(live) != 1 {
		t.Errorf("processes alive after the scenarios: %v, want only the agent's", live)
	}
}

// TestEndedProcessHoldsNothing: once a rump process has exited its
// descriptors are gone (fd_free closed them) and every call on its sockets
// fails without reaching the kernel, as one on the host's dead helper does.
func TestEndedProcessHoldsNothing(t *testing.T) {
	p, err := startProcess("")
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	if err := p.open("A", false, "udp"); err != nil {
		t.Fatal(err)
	}
	proc := p.(*rumpProc).proc
	if open := openFDs(proc); len(open) != 1 {
		t.Fatalf("the new process has descriptors %v open, want one", open)
	}
	if _, err := p.exit(); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"bind":  p.bind("A", netip.MustParseAddrPort("127.0.0.1:0")),
		"close": p.close("A"),
		"open":  p.open("B", false, "udp"),
	} {
		if !errors.Is(err, errProcessEnded) {
			t.Errorf("%s after exit: %v, want %v", what, err, errProcessEnded)
		}
	}
	if _, err := p.kill("SIGKILL"); !errors.Is(err, errProcessEnded) {
		t.Errorf("kill after exit: %v", err)
	}
	for _, live := range processes() {
		if live == proc {
			t.Errorf("process %d is still listed after its exit", proc)
		}
	}
}

// TestEphemeralRange: the range is NetBSD's default, IPPORT_ANONMIN to
// IPPORT_ANONMAX (sys/netinet/in.h:149-150), read from the kernel.
func TestEphemeralRange(t *testing.T) {
	env, _ := runWire(t, nil)
	if env.EphemeralPorts != "49152-65535" || env.EphemeralNote != "" {
		t.Errorf("ephemeral ports %q (%s), want 49152-65535", env.EphemeralPorts, env.EphemeralNote)
	}
}

// TestWaitfreeMeasuresNetBSDsMSL: waitfree on the connecting side's
// TIME_WAIT entry measures 2 MSL, which tcp_established
// (sys/netinet/tcp_subr.c:2066-2080) sets by the local address: 2 s
// (tcp_msl_loop, PR_SLOWHZ ticks: 1 s) when it is 127.0.0.1 itself, 10 s
// (tcp_msl_local, 5 s) for a peer on a local subnet, as 127.0.0.2 to
// 127.0.0.1 is.
func TestWaitfreeMeasuresNetBSDsMSL(t *testing.T) {
	steps := func(addr string) string {
		return `["socket L", "bind L loop:P", "listen L", "socket A", "bind A ` + addr + `:Q", "connect A loop:P", "accept L S", "close A", "close S", "sleep 20ms", "waitfree ` + addr + `:Q"]`
	}
	_, res := runYAML(t, `
  - {id: loop, title: t, source: s, proto: tcp, timeout: 30s, steps: `+steps("loop")+`}
  - {id: addr1, title: t, source: s, proto: tcp, timeout: 30s, steps: `+steps("addr1")+`}
`)
	wantOutcome(t, res, "loop", "2s")
	wantOutcome(t, res, "addr1", "10s")
}
