//go:build fstack

package agent

// Tests of the F-Stack backend against the real F-Stack, inside this test
// binary (go test ./fstack builds the library and runs them with it). Each
// expected outcome comes from FreeBSD's source in the F-Stack tree, cited.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"lab/scenario"
	"lab/wire"
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopFStack()
	if ff.prefix != "" {
		if left := DPDKLeftovers(ff.prefix); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "DPDK state left behind: %v\n", left)
			code = 1
		}
	}
	os.Exit(code)
}

func TestSockaddrLayout(t *testing.T) {
	for _, c := range []struct {
		ip6  bool
		ap   string
		want []byte
	}{
		// Linux's sockaddr_in: family 2 (little-endian), port, address.
		{false, "127.0.0.2:4660", []byte{2, 0, 0x12, 0x34, 127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0}},
		// Linux's sockaddr_in6: family 10, port, flowinfo, address, scope.
		{true, "[::1]:80", append([]byte{10, 0, 0, 80, 0, 0, 0, 0}, append(make([]byte, 15), 1, 0, 0, 0, 0)...)},
		// An IPv4 address on an IPv6 socket is mapped.
		{true, "[::ffff:127.0.0.1]:1", append([]byte{10, 0, 0, 1, 0, 0, 0, 0}, append(make([]byte, 10), 0xff, 0xff, 127, 0, 0, 1, 0, 0, 0, 0)...)},
	} {
		sa := sockaddr(c.ip6, netip.MustParseAddrPort(c.ap))
		if got := sa.buf[:sa.len]; !bytes.Equal(got, c.want) {
			t.Errorf("%s: % x, want % x", c.ap, got, c.want)
		}
	}
}

func TestIfaliasreqLayout(t *testing.T) {
	b := ifaliasreq("lo0", netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("255.255.255.255"))
	want := make([]byte, 68)
	copy(want, "lo0")
	copy(want[16:], []byte{16, 2, 0, 0, 127, 0, 0, 2}) // ifra_addr: sin_len, AF_INET, port 0
	copy(want[48:], []byte{16, 2, 0, 0, 255, 255, 255, 255})
	if !bytes.Equal(b[:], want) {
		t.Errorf("ifaliasreq\n% x\nwant\n% x", b, want)
	}
}

func TestErrnoNamesAreFreeBSDs(t *testing.T) {
	for _, c := range []struct {
		linux syscall.Errno
		name  string
		num   int
	}{
		{syscall.EADDRINUSE, "EADDRINUSE", 48},
		{syscall.EADDRNOTAVAIL, "EADDRNOTAVAIL", 49},
		{syscall.ECONNREFUSED, "ECONNREFUSED", 61},
		{syscall.EAGAIN, "EAGAIN", 35},
		{syscall.EOPNOTSUPP, "EOPNOTSUPP", 45}, // Linux calls 95 ENOTSUP
		{syscall.EINVAL, "EINVAL", 22},
	} {
		if name, num := errnoName(c.linux); name != c.name || num != c.num {
			t.Errorf("%d: %s %d, want %s %d", int(c.linux), name, num, c.name, c.num)
		}
	}
}

// step fails the test unless err is nil.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func errName(err error) string { return result("", err).Result }

func TestCallsOnFStack(t *testing.T) {
	tb := newTable()
	defer tb.closeAll()
	deadline := time.Now().Add(2 * time.Second)
	loop := netip.MustParseAddr("127.0.0.1")

	// bind(port 0) picks a port at once, as FreeBSD's in_pcbbind_setup
	// does (lab's freebsd-ports.patch undoes F-Stack's deferral to connect).
	must(t, "socket", tb.open("L", false, "tcp"))
	must(t, "bind", tb.bind("L", netip.AddrPortFrom(loop, 0)))
	ap, err := netip.ParseAddrPort(tb.localAddr("L"))
	if err != nil || ap.Port() == 0 {
		t.Fatalf("after bind(127.0.0.1:0) the local address is %q", tb.localAddr("L"))
	}
	must(t, "listen", tb.listen("L"))

	// A second plain bind of the same address: EADDRINUSE, FreeBSD's number.
	must(t, "socket", tb.open("X", false, "tcp"))
	err = tb.bind("X", ap)
	if r := result("", err); r.Result != "EADDRINUSE" || r.Errno != 48 {
		t.Errorf("second bind: %s %d, want EADDRINUSE 48", r.Result, r.Errno)
	}

	// A connection over lo0 needs the loop to run between the calls.
	must(t, "socket", tb.open("C", false, "tcp"))
	must(t, "connect", tb.connect("C", ap, deadline))
	must(t, "accept", tb.accept("L", "S", deadline))
	if tb.localAddr("S") != ap.String() {
		t.Errorf("accepted socket's address %s, want %s", tb.localAddr("S"), ap)
	}
	must(t, "close", tb.close("S"))
	must(t, "read to EOF", tb.waitEOF("C", deadline))

	// Nothing accepted within the wait: EAGAIN, as on the host.
	if err := tb.accept("L", "T", time.Now().Add(20*time.Millisecond)); errName(err) != "EAGAIN" {
		t.Errorf("accept with nothing pending: %v", err)
	}
	must(t, "close", tb.close("L"))

	// A refused connection: FreeBSD's ECONNREFUSED from SO_ERROR (tcp_input
	// answers a SYN to a closed port with a RST: blackhole is off).
	must(t, "socket", tb.open("R", false, "tcp"))
	if err := tb.connect("R", ap, deadline); errName(err) != "ECONNREFUSED" {
		t.Errorf("connect to a closed port: %v, want ECONNREFUSED", err)
	}

	// An address lo0 does not have: EADDRNOTAVAIL (ifa_ifwithaddr_check).
	must(t, "socket", tb.open("N", false, "udp"))
	if err := tb.bind("N", netip.MustParseAddrPort("127.0.0.9:0")); errName(err) != "EADDRNOTAVAIL" {
		t.Errorf("bind to 127.0.0.9: %v, want EADDRNOTAVAIL", err)
	}

	// Options FreeBSD defines are set; the exclusive ones it lacks are
	// unsupported.
	must(t, "socket", tb.open("O", true, "udp"))
	for _, o := range []string{"SO_REUSEADDR", "SO_REUSEPORT", "SO_REUSEPORT_LB", "IPV6_V6ONLY"} {
		must(t, o, tb.setopt("O", wire.Option{Name: o, Value: 1}))
	}
	for _, o := range []string{"SO_EXCLUSIVEADDRUSE", "SO_EXCLBIND"} {
		if err := tb.setopt("O", wire.Option{Name: o, Value: 1}); !errors.Is(err, errUnsupported) {
			t.Errorf("%s: %v, want unsupported", o, err)
		}
	}
	if n := tb.count(); n != 5 { // X, C, R, N, O
		t.Errorf("%d sockets in the table, want 5", n)
	}
}

func TestUDPOverLoopback(t *testing.T) {
	tb := newTable()
	defer tb.closeAll()
	must(t, "socket", tb.open("U", false, "udp"))
	must(t, "bind", tb.bind("U", netip.MustParseAddrPort("127.0.0.1:0")))
	dst := netip.MustParseAddrPort(tb.localAddr("U"))
	for i := range 5 {
		name := fmt.Sprint("c", i)
		must(t, "socket", tb.open(name, false, "udp"))
		must(t, "sendto", tb.sendto(name, dst))
	}
	// The datagrams are delivered by lo0's software interrupt in the loop.
	got := 0
	for end := time.Now().Add(time.Second); got < 5 && time.Now().Before(end); time.Sleep(time.Millisecond) {
		got += tb.drain("U")
	}
	if got != 5 {
		t.Errorf("received %d of 5 datagrams", got)
	}
}

func TestAliasesOnLo0(t *testing.T) {
	addrs, note, _ := chooseAddrs(nil)
	if addrs["addr1"] != "127.0.0.2" || addrs["addr2"] != "127.0.0.3" {
		t.Fatalf("addrs %v (%s)", addrs, note)
	}
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		if !bindable(ip) {
			t.Errorf("%s is not bindable after chooseAddrs (%s)", ip, note)
		}
	}
}

func TestPollLoopRunsUntilDoneOrDeadline(t *testing.T) {
	n := 0
	done, err := pollLoop(time.Now().Add(time.Second), func() bool { n++; return n == 3 })
	if err != nil || !done || n != 3 {
		t.Errorf("done %v err %v after %d runs, want done after 3", done, err, n)
	}
	n = 0
	start := time.Now()
	done, err = pollLoop(time.Now().Add(30*time.Millisecond), func() bool { n++; return false })
	if err != nil || done || n < 2 || time.Since(start) < 30*time.Millisecond {
		t.Errorf("done %v err %v after %d runs in %s, want not done after several runs and 30 ms", done, err, n, time.Since(start))
	}
	n = 0
	done, _ = pollLoop(time.Now().Add(-time.Second), func() bool { n++; return true })
	if !done || n != 1 {
		t.Errorf("a task past its deadline ran %d times (done %v), want once", n, done)
	}
}

func TestEnvironmentSaysWhatItIs(t *testing.T) {
	var env *wire.Env
	err := Run(context.Background(), wire.Request{}, func(l wire.Line) error {
		if l.Env != nil {
			env = l.Env
		}
		return nil
	})
	if err != nil || env == nil {
		t.Fatalf("Run: %v, env %v", err, env)
	}
	if env.OS != "freebsd" || env.Family != "bsd" || env.KernelRelease != FStackKernel || env.UID != 0 {
		t.Errorf("env %+v", env)
	}
	if !strings.Contains(env.KernelVersion, "1300139") || !strings.Contains(env.KernelVersion, "on Linux") {
		t.Errorf("kernel version %q", env.KernelVersion)
	}
	if env.OtherUser != "" || env.OtherUserNote != notOnFStack {
		t.Errorf("other user %q (%s)", env.OtherUser, env.OtherUserNote)
	}
}

func TestPrivilegeScenariosAreSkipped(t *testing.T) {
	other := wire.Scenario{ID: "other", Proto: "tcp", Steps: []wire.Step{
		{Text: "socket A SO_REUSEPORT", Verb: "socket", Sock: "A", Options: []wire.Option{{Name: "SO_REUSEPORT", Value: 1}}},
		{Text: "bind A addr1:P", Verb: "bind", Sock: "A", Addr: "addr1", Port: "P"},
		{Text: "socket B SO_REUSEPORT user=other", Verb: "socket", Sock: "B", User: "other", Options: []wire.Option{{Name: "SO_REUSEPORT", Value: 1}}},
		{Text: "bind B addr1:P", Verb: "bind", Sock: "B", Addr: "addr1", Port: "P"},
	}}
	reserved := wire.Scenario{ID: "reserved", Proto: "tcp", Steps: []wire.Step{
		{Text: "socket A", Verb: "socket", Sock: "A"},
		{Text: "bind A loop:80", Verb: "bind", Sock: "A", Addr: "loop", Port: "80"},
	}}
	high := wire.Scenario{ID: "high", Proto: "udp", Steps: []wire.Step{
		{Text: "socket A", Verb: "socket", Sock: "A"},
		{Text: "bind A loop:0", Verb: "bind", Sock: "A", Addr: "loop", Port: "0"},
	}}
	res := map[string]*wire.Result{}
	err := Run(context.Background(), wire.Request{Scenarios: []wire.Scenario{other, reserved, high}}, func(l wire.Line) error {
		if l.Result != nil {
			res[l.Result.ID] = l.Result
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"other", "reserved"} {
		if r := res[id]; r == nil || r.Outcome != wire.Skipped || !strings.HasPrefix(r.Reason, notOnFStack) {
			t.Errorf("%s: %+v, want skipped: %s", id, r, notOnFStack)
		}
	}
	if r := res["high"]; r == nil || r.Outcome != wire.OK {
		t.Errorf("bind to port 0: %+v, want ok", r)
	}
}

// runYAML runs scenarios written in the scenario language on F-Stack.
func runYAML(t *testing.T, yaml string) (*wire.Env, map[string]*wire.Result) {
	t.Helper()
	scs, err := scenario.Parse("test.yaml", []byte("scenarios:\n"+yaml))
	if err != nil {
		t.Fatal(err)
	}
	var env *wire.Env
	res := map[string]*wire.Result{}
	err = Run(context.Background(), wire.Request{Scenarios: scenario.Wire(scs)}, func(l wire.Line) error {
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

// TestNewVerbsOnFStack: the steps beyond bind and connect on FreeBSD 13's
// code, each outcome from its source in the F-Stack tree (freebsd/).
func TestNewVerbsOnFStack(t *testing.T) {
	listen := `"socket L", "bind L loop:P", "listen L"`
	env, res := runYAML(t, `
  - {id: udp-sendto-autobinds, title: t, source: s, proto: udp, steps: ["socket A", "try local A", "sendto A loop:P", "local A"]}
  - {id: tcp-connect-autobinds, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A", "try local A", "connect A loop:P", "try local A", "peer A"]}
  - {id: connect-replaces-wildcard, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A", "bind A any:Q", "try local A", "connect A loop:P", "local A"]}
  - {id: port0, title: t, source: s, proto: tcp, steps: ["socket A", "bind A addr1:0", "local A"]}
  - {id: no-peer, title: t, source: s, proto: udp, steps: ["socket A", "bind A addr1:P", "peer A"]}
  - {id: graceful, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A", "connect A loop:P", "accept L S", "send A 10", "close A", "recv S"]}
  - {id: linger0-resets, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A SO_LINGER=0", "connect A loop:P", "accept L S", "send A 10", "close A", "recv S"]}
  - {id: linger-set, title: t, source: s, proto: tcp, steps: ["socket A SO_LINGER=5", "setopt A SO_LINGER=0", "setopt A SO_LINGER=off"]}
  - {id: data, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A", "connect A loop:P", "accept L S", "send A 100", "recv S"]}
  - {id: nothing, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A", "connect A loop:P", "accept L S", "recv S"]}
  - {id: datagram, title: t, source: s, proto: udp, steps: ["socket A", "bind A loop:P", "socket B", "sendto B loop:P", "recv A"]}
  - {id: process, title: t, source: s, proto: tcp, steps: ["socket A proc=two", "bind A addr1:P", "exit two"]}
  - {id: linger-waits, title: t, source: s, proto: tcp, steps: [`+listen+`, "socket A SO_LINGER=1", "connect A loop:P", "accept L S", "send A 100000", "close A", "recv S"]}
`)
	for id, want := range map[string]string{
		// udp_output binds an unbound socket first: in_pcbconnect_setup
		// then in_pcbbind_setup with the wildcard (netinet/udp_usrreq.c).
		"udp-sendto-autobinds": "unbound then any:ephemeral",
		// tcp_connect binds with the route's source address
		// (in_pcbconnect_setup, netinet/in_pcb.c).
		"tcp-connect-autobinds":     "unbound then loop:ephemeral then loop:P",
		"connect-replaces-wildcard": "any:Q then loop:Q",
		// in_pcb_lport picks from ipport_firstauto..ipport_lastauto.
		"port0":    "addr1:ephemeral",
		"no-peer":  "none",
		"graceful": "eof",
		// tcp_disconnect drops the connection (RST) for SO_LINGER with a
		// time of 0 (netinet/tcp_usrreq.c).
		"linger0-resets": "ECONNRESET",
		"linger-set":     wire.OK,
		"data":           "data",
		"nothing":        "EAGAIN",
		"datagram":       "data",
		"process":        wire.Skipped,
		"linger-waits":   wire.Skipped,
	} {
		r := res[id]
		if r == nil || r.Outcome != want {
			t.Errorf("%s: %+v, want %s", id, r, want)
		}
	}
	if r := res["process"]; r != nil && r.Reason != oneProcess {
		t.Errorf("process: skipped for %q", r.Reason)
	}
	if r := res["linger-waits"]; r != nil && r.Reason != noLingerWait {
		t.Errorf("linger-waits: skipped for %q", r.Reason)
	}
	// FreeBSD's default range, IPPORT_EPHEMERALFIRST..LAST (netinet/in.h),
	// read from the stack with sysctl.
	if env.EphemeralPorts != "10000-65535" {
		t.Errorf("ephemeral ports %q (%s)", env.EphemeralPorts, env.EphemeralNote)
	}
}
