package scenario

// The step language: what a line of a scenario's "steps" may say, checked
// word by word so each problem points at its column.

import (
	"math"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"lab/wire"
)

// Options lists the socket options a step may set.
var Options = []string{"SO_REUSEADDR", "SO_REUSEPORT", "SO_REUSEPORT_LB", "SO_EXCLUSIVEADDRUSE", "SO_EXCLBIND", "IPV6_V6ONLY"}

// binaryOptions are the options the language restricts to 0 or 1
// (IPV6_V6ONLY=0|1): another value would read as a mode the option does not
// have. The others take any value setsockopt's int does, as they always
// have; kernels read every nonzero value as on, and a scenario may check so.
var binaryOptions = []string{"IPV6_V6ONLY"}

// Addrs lists the symbolic addresses a step may use.
var Addrs = []string{"any", "any6", "addr1", "addr2", "loop", "loop6", "mcast"}

var sockNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// stepParser checks one scenario's steps in order, tracking which sockets
// exist so a name used before its socket step is caught before anything runs.
type stepParser struct {
	*parser
	proto string
	open  map[string]bool
}

func (p *parser) steps(n *yaml.Node, proto string) []wire.Step {
	if n.Kind != yaml.SequenceNode {
		p.errf(n, "field \"steps\": expected a list of steps, found %s", kindName(n))
		return nil
	}
	if len(n.Content) == 0 {
		p.errf(n, "field \"steps\": a scenario needs at least one step")
	}
	sp := &stepParser{parser: p, proto: proto, open: map[string]bool{}}
	var out []wire.Step
	for _, sn := range n.Content {
		if sn.Kind != yaml.ScalarNode {
			p.errf(sn, "step: expected a line like \"bind A addr1:P\", found %s", kindName(sn))
			continue
		}
		if st, ok := sp.step(sn); ok {
			out = append(out, st)
		}
	}
	return out
}

// token is a word of a step with its column.
type token struct {
	text string
	pos  Pos
}

func (sp *stepParser) tokens(n *yaml.Node) []token {
	col := n.Column
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		col++ // the opening quote
	}
	var toks []token
	line := n.Value
	for i := 0; i < len(line); {
		at := col + i
		if n.Style&substituted != 0 {
			at = n.Column
		}
		if line[i] == ' ' || line[i] == '\t' {
			i++
			continue
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		toks = append(toks, token{line[i:j], Pos{sp.file, n.Line, at}})
		i = j
	}
	return toks
}

var verbUsage = map[string]string{
	wire.VerbSocket:   "socket S [OPTION[=V] ...] [ip6] [user=other]",
	wire.VerbSetopt:   "setopt S OPTION[=V]",
	wire.VerbBind:     "bind S ADDR:PORT",
	wire.VerbListen:   "listen S",
	wire.VerbConnect:  "connect S ADDR:PORT",
	wire.VerbAccept:   "accept S NEWNAME",
	wire.VerbClose:    "close S",
	wire.VerbTimewait: "timewait ADDR:PORT [OPTION[=V] ...]",
	wire.VerbSpread:   "spread N S1,S2,...",
}

func verbs() string {
	vs := make([]string, 0, len(verbUsage))
	for v := range verbUsage {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	return strings.Join(vs, ", ")
}

func (sp *stepParser) step(n *yaml.Node) (wire.Step, bool) {
	before := len(sp.problems)
	toks := sp.tokens(n)
	st := wire.Step{Text: strings.Join(strings.Fields(n.Value), " ")}
	if len(toks) == 0 {
		sp.errf(n, "empty step; expected one of: %s", verbs())
		return st, false
	}
	if m := varRE.FindString(n.Value); m != "" {
		sp.errf(n, "step %q: %s is not a variable of this scenario's matrix", n.Value, m)
		return st, false
	}
	verb, args := toks[0], toks[1:]
	st.Verb = verb.text
	usage, ok := verbUsage[verb.text]
	if !ok {
		sp.errAt(verb.pos, "unknown verb %q; expected one of: %s", verb.text, verbs())
		return st, false
	}
	need := func(min, max int) bool {
		if len(args) < min || (max >= 0 && len(args) > max) {
			sp.errf(n, "step %q: wrong number of arguments; expected %q", n.Value, usage)
			return false
		}
		return true
	}
	switch verb.text {
	case wire.VerbSocket:
		if !need(1, -1) {
			break
		}
		st.Sock = sp.newSock(args[0])
		for _, a := range args[1:] {
			switch {
			case a.text == "ip6":
				st.IP6 = true
			case a.text == "user=other":
				st.User = "other"
			case strings.HasPrefix(a.text, "user="):
				sp.errAt(a.pos, "%q: the only user is \"other\" (user=other)", a.text)
			default:
				if o, ok := sp.option(a); ok {
					st.Options = append(st.Options, o)
				}
			}
		}
	case wire.VerbSetopt:
		if need(2, 2) {
			st.Sock = sp.useSock(args[0])
			if o, ok := sp.option(args[1]); ok {
				st.Options = []wire.Option{o}
			}
		}
	case wire.VerbBind, wire.VerbConnect:
		if need(2, 2) {
			st.Sock = sp.useSock(args[0])
			st.Addr, st.Port = sp.endpoint(args[1])
		}
	case wire.VerbListen:
		if need(1, 1) {
			sp.tcpOnly(verb)
			st.Sock = sp.useSock(args[0])
		}
	case wire.VerbAccept:
		if need(2, 2) {
			sp.tcpOnly(verb)
			st.Sock = sp.useSock(args[0])
			st.NewName = sp.newSock(args[1])
		}
	case wire.VerbClose:
		if need(1, 1) {
			st.Sock = sp.useSock(args[0])
			delete(sp.open, st.Sock)
		}
	case wire.VerbTimewait:
		if need(1, -1) {
			sp.tcpOnly(verb)
			st.Addr, st.Port = sp.endpoint(args[0])
			for _, a := range args[1:] {
				if o, ok := sp.option(a); ok {
					st.Options = append(st.Options, o)
				}
			}
		}
	case wire.VerbSpread:
		if need(2, 2) {
			v, err := strconv.Atoi(args[0].text)
			if err != nil || v < 1 || v > 10000 {
				sp.errAt(args[0].pos, "spread: %q is not a count between 1 and 10000", args[0].text)
			}
			st.N = v
			col := args[1].pos.Col
			for _, name := range strings.Split(args[1].text, ",") {
				pos := args[1].pos
				pos.Col = col
				st.Socks = append(st.Socks, sp.useSock(token{name, pos}))
				col += len(name) + 1
			}
		}
	}
	return st, len(sp.problems) == before
}

func (sp *stepParser) tcpOnly(verb token) {
	if sp.proto == "udp" {
		sp.errAt(verb.pos, "%s is for tcp scenarios; this scenario's proto is udp", verb.text)
	}
}

func (sp *stepParser) newSock(t token) string {
	if !sockNameRE.MatchString(t.text) {
		sp.errAt(t.pos, "%q is not a socket name (a letter, then letters, digits or _)", t.text)
		return t.text
	}
	if sp.open[t.text] {
		sp.errAt(t.pos, "socket %s already exists; close it first or use another name", t.text)
	}
	sp.open[t.text] = true
	return t.text
}

func (sp *stepParser) useSock(t token) string {
	if !sp.open[t.text] {
		sp.errAt(t.pos, "socket %q is used before a \"socket %s\" step creates it", t.text, t.text)
	}
	return t.text
}

// option parses OPTION or OPTION=V; V defaults to 1.
func (sp *stepParser) option(t token) (wire.Option, bool) {
	name, val, hasVal := strings.Cut(t.text, "=")
	if !slices.Contains(Options, name) {
		sp.errAt(t.pos, "unknown option %q; expected one of: %s", name, strings.Join(Options, ", "))
		return wire.Option{}, false
	}
	o := wire.Option{Name: name, Value: 1}
	if hasVal {
		v, err := strconv.ParseInt(val, 10, 32)
		switch {
		case slices.Contains(binaryOptions, name):
			if err != nil || (v != 0 && v != 1) {
				sp.errAt(t.pos, "option %s: %q is not a valid value; expected 0 or 1", name, val)
				return o, false
			}
		case err != nil || v < 0:
			// setsockopt takes a C int: a larger value would be truncated.
			sp.errAt(t.pos, "option %s: %q is not a non-negative integer value (0 to %d)", name, val, math.MaxInt32)
			return o, false
		}
		o.Value = int(v)
	}
	return o, true
}

// endpoint parses ADDR:PORT, where ADDR is symbolic or a literal IP ([v6]
// in brackets) and PORT is P, Q or a number.
func (sp *stepParser) endpoint(t token) (addr, port string) {
	i := strings.LastIndex(t.text, ":")
	if i <= 0 {
		sp.errAt(t.pos, "%q is not ADDR:PORT (e.g. addr1:P, any:0, [::1]:Q)", t.text)
		return "", ""
	}
	addr, port = t.text[:i], t.text[i+1:]
	switch {
	case slices.Contains(Addrs, addr):
	case strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") && isIP(addr[1:len(addr)-1], true):
		addr = addr[1 : len(addr)-1]
	case isIP(addr, false):
	default:
		sp.errAt(t.pos, "unknown address %q; expected one of %s, or a literal IP ([::1] for IPv6)", addr, strings.Join(Addrs, ", "))
	}
	if port != "P" && port != "Q" {
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			sp.errAt(Pos{t.pos.File, t.pos.Line, t.pos.Col + i + 1}, "port %q: expected P, Q, 0 or a number up to 65535", port)
		}
	}
	return addr, port
}

// isIP reports whether s is a literal IP of the wanted kind; IPv6 literals
// must be bracketed in an endpoint so the port's colon is unambiguous.
func isIP(s string, v6 bool) bool {
	ip := net.ParseIP(s)
	return ip != nil && (ip.To4() == nil) == v6
}
