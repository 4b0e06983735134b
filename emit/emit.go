// Package emit turns one measured scenario into a standalone program that
// performs exactly the same socket calls with the concrete ports and
// addresses the agent used, so a platform bug can be reported with a
// reproducer that needs nothing but a compiler. C and Go are emitted; both
// print the trace lab repro prints for the agent (WriteStep): each step's
// result, then the call as the OS saw it with its arguments and what it
// returned, which Parse reads back for Compare.
package emit

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"lab/wire"
)

// ErrUnsupported marks a scenario the emitters cannot express: a verb or a
// feature (user=other) outside the plain socket calls.
var ErrUnsupported = errors.New("not supported by --emit")

// op is one step with everything symbolic resolved.
type op struct {
	n      int // 1-based step number
	text   string
	verb   string
	sock   string
	ip6    bool
	opts   []wire.Option
	addr   string // concrete IP, IPv4-mapped for an ip6 socket
	addr6  bool   // addr is an IPv6 address (what sockaddr the call gets)
	port   string // a number, or port_P / port_Q (see plan.ports)
	newSoc string
	dst    string // timewait: where its client connects (loopback for a wildcard)
}

// plan resolves sc's steps with the ports and addresses of res.
type plan struct {
	id    string
	proto string
	ops   []op
	socks []string // every socket name, in order of appearance
	// ports are the symbolic ports (P, Q) the steps use, with the agent's
	// values. A program built with fresh ports (LAB_FRESH_PORTS) picks free
	// ones instead: a rerun right after the agent needs that when the agent
	// left TIME_WAIT entries on its ports.
	ports     []string
	portValue map[string]int
}

// portExpr is how the program names a step's port.
func (p *plan) portExpr(res *wire.Result, sym string, port uint16) string {
	if _, ok := res.Ports[sym]; !ok {
		return strconv.Itoa(int(port))
	}
	if _, ok := p.portValue[sym]; !ok {
		p.ports = append(p.ports, sym)
		p.portValue[sym] = int(port)
	}
	return "port_" + sym
}

// NeedsFreshPorts says a rerun of sc right after the agent must build the
// program with fresh ports: sc leaves TIME_WAIT entries on them.
func NeedsFreshPorts(sc wire.Scenario) bool {
	for _, st := range sc.Steps {
		if st.Verb == wire.VerbTimewait {
			return true
		}
	}
	return false
}

func newPlan(sc wire.Scenario, res *wire.Result) (*plan, error) {
	p := &plan{id: sc.ID, proto: sc.Proto, portValue: map[string]int{}}
	ip6 := map[string]bool{}
	seen := map[string]bool{}
	addSock := func(s string) {
		if !seen[s] {
			seen[s] = true
			p.socks = append(p.socks, s)
		}
	}
	for i, st := range sc.Steps {
		o := op{n: i + 1, text: st.Text, verb: st.Verb, sock: st.Sock, opts: st.Options, newSoc: st.NewName}
		if err := checkStep(st); err != nil {
			return nil, fmt.Errorf("step %d (%s): %w", o.n, st.Text, err)
		}
		switch st.Verb {
		case wire.VerbSocket:
			ip6[st.Sock] = st.IP6
			o.ip6 = st.IP6
			addSock(st.Sock)
		case wire.VerbSetopt, wire.VerbListen, wire.VerbClose:
			o.ip6 = ip6[st.Sock]
		case wire.VerbBind, wire.VerbConnect:
			o.ip6 = ip6[st.Sock]
			ap, err := endpoint(res, st.Addr, st.Port, o.ip6)
			if err != nil {
				return nil, fmt.Errorf("step %d (%s): %w", o.n, st.Text, err)
			}
			o.addr, o.port = ap.Addr().String(), p.portExpr(res, st.Port, ap.Port())
			o.addr6 = ap.Addr().Is6()
		case wire.VerbAccept:
			ip6[st.NewName] = ip6[st.Sock]
			addSock(st.NewName)
		case wire.VerbTimewait:
			ap, err := endpoint(res, st.Addr, st.Port, false)
			if err != nil {
				return nil, fmt.Errorf("step %d (%s): %w", o.n, st.Text, err)
			}
			o.addr, o.port, o.dst = ap.Addr().String(), p.portExpr(res, st.Port, ap.Port()), ap.Addr().String()
			if ap.Addr().IsUnspecified() {
				o.dst = "127.0.0.1"
				if l, ok := res.Addrs["loop"]; ok {
					o.dst = l
				}
			}
		default:
			return nil, fmt.Errorf("step %d (%s): verb %q is %w", o.n, st.Text, st.Verb, ErrUnsupported)
		}
		p.ops = append(p.ops, o)
	}
	return p, nil
}

// Check says whether the emitters can express sc, before anything runs:
// the plain socket calls with integer options, in one process, on sockets
// of the scenario's protocol, every step but the last required to succeed.
// The rest of the language (send, recv, local, peer, exit, kill, sleep,
// waitfree, spread; SO_LINGER; proc= and user=other; a socket's own
// protocol; try) is refused with ErrUnsupported.
func Check(sc wire.Scenario) error {
	for i, st := range sc.Steps {
		if err := checkStep(st); err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, st.Text, err)
		}
	}
	return nil
}

func checkStep(st wire.Step) error {
	switch st.Verb {
	case wire.VerbSocket, wire.VerbSetopt, wire.VerbBind, wire.VerbListen, wire.VerbConnect, wire.VerbAccept, wire.VerbClose, wire.VerbTimewait:
	default:
		return fmt.Errorf("verb %q is %w", st.Verb, ErrUnsupported)
	}
	switch {
	case st.User != "":
		return fmt.Errorf("user=%s is %w", st.User, ErrUnsupported)
	case st.Proc != "":
		return fmt.Errorf("proc=%s is %w", st.Proc, ErrUnsupported)
	case st.Proto != "":
		return fmt.Errorf("a socket's own protocol (%s) is %w", st.Proto, ErrUnsupported)
	case st.Try:
		return fmt.Errorf("try is %w", ErrUnsupported)
	}
	for _, o := range st.Options {
		if o.Name == "SO_LINGER" {
			return fmt.Errorf("SO_LINGER is %w", ErrUnsupported)
		}
	}
	return nil
}

// endpoint resolves a symbolic address and port as the agent did.
func endpoint(res *wire.Result, addr, port string, ip6 bool) (netip.AddrPort, error) {
	a, ok := res.Addrs[addr]
	if !ok {
		a = addr
	}
	ip, err := netip.ParseAddr(a)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q not in the result (%v)", addr, err)
	}
	if ip6 && ip.Is4() {
		ip = netip.AddrFrom16(ip.As16())
	}
	p, ok := res.Ports[port]
	if !ok {
		n, err := strconv.Atoi(port)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("port %q not in the result", port)
		}
		p = n
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// cString quotes s as a C string literal.
func cString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r < 0x20 || r > 0x7e:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// ident makes a socket name a C or Go identifier.
func ident(s string) string {
	var b strings.Builder
	b.WriteString("s_")
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// familyName is how the agent names a socket's family.
func familyName(ip6 bool) string {
	if ip6 {
		return "inet6"
	}
	return "inet"
}

// optLevel is the level an option is set at, by its C name.
func optLevel(name string) string {
	if strings.HasPrefix(name, "IPV6_") {
		return "IPPROTO_IPV6"
	}
	return "SOL_SOCKET"
}

// optCall is how the agent writes a setsockopt in a step's call.
func optCall(o wire.Option) string { return fmt.Sprintf("setsockopt(%s=%d)", o.Name, o.Value) }

// optionFields are the options of o as WriteStep prints them, for every
// step but timewait (the agent records options with their level there).
func (o op) optionFields() string {
	if o.verb == wire.VerbTimewait {
		return ""
	}
	var f []string
	for _, opt := range o.opts {
		f = append(f, optionField(wire.SetOption{Level: optLevel(opt.Name), Name: opt.Name, Value: opt.Value}))
	}
	return strings.Join(f, "  ")
}

// addrColon is o's address as a call shows it before the port:
// "127.0.0.2:" or "[::1]:".
func (o op) addrColon() string {
	if o.addr6 {
		return "[" + o.addr + "]:"
	}
	return o.addr + ":"
}

// values is the trace's values line (WriteValues) as a printf format and
// its arguments (", port_P"): a port the program may pick afresh is printed
// from its variable.
func (p *plan) values(res *wire.Result) (format string, args []string) {
	type val struct{ text, arg string }
	var vals []val
	for k, v := range res.Ports {
		if _, ok := p.portValue[k]; ok {
			vals = append(vals, val{fmt.Sprintf("%s=%d", k, v), k + "=%d"})
		} else {
			vals = append(vals, val{fmt.Sprintf("%s=%d", k, v), ""})
		}
	}
	for k, v := range res.Addrs {
		vals = append(vals, val{k + "=" + v, ""})
	}
	// Sorted as WriteValues sorts the agent's values.
	sort.Slice(vals, func(i, j int) bool { return vals[i].text < vals[j].text })
	var f []string
	for _, v := range vals {
		if v.arg == "" {
			f = append(f, strings.ReplaceAll(v.text, "%", "%%"))
			continue
		}
		f = append(f, v.arg)
		sym, _, _ := strings.Cut(v.arg, "=")
		args = append(args, ", port_"+sym)
	}
	return "values   " + strings.Join(f, " "), args
}
