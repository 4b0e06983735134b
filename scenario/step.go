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
	"time"

	"gopkg.in/yaml.v3"

	"lab/wire"
)

// Options lists the socket options a step may set.
var Options = []string{"SO_REUSEADDR", "SO_REUSEPORT", "SO_REUSEPORT_LB", "SO_EXCLUSIVEADDRUSE", "SO_EXCLBIND", "IPV6_V6ONLY", "SO_LINGER"}

// binaryOptions are the options the language restricts to 0 or 1
// (IPV6_V6ONLY=0|1): another value would read as a mode the option does not
// have. The others take any value setsockopt's int does, as they always
// have; kernels read every nonzero value as on, and a scenario may check so.
var binaryOptions = []string{"IPV6_V6ONLY"}

// maxLinger bounds SO_LINGER=N: a close waits up to N seconds, and the
// scenario's deadline has to outlast it.
const maxLinger = 3600

// Addrs lists the symbolic addresses a step may use.
var Addrs = []string{"any", "any6", "addr1", "addr2", "loop", "loop6", "mcast"}

// Signals lists the signals a kill step may send.
var Signals = []string{"SIGKILL", "SIGTERM", "SIGSEGV", "SIGABRT"}

// maxSleep bounds a sleep step; longer waits belong to waitfree, which
// stops as soon as the endpoint is free.
const maxSleep = 10 * time.Minute

// maxSend bounds send S N: the agent queues N bytes from one buffer.
const maxSend = 64 << 20

var sockNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// otherProc names the other user's process when a socket step says
// user=other without naming one.
const otherProc = "other"

// sockInfo is what the parser knows of an open socket.
type sockInfo struct {
	proto string
	proc  string // "" for the agent's own process
}

// stepParser checks one scenario's steps in order, tracking which sockets
// exist, their protocol and which process holds them, so a name used before
// its socket step, or after its process exited, is caught before anything
// runs.
type stepParser struct {
	*parser
	proto string
	open  map[string]sockInfo
	// procs maps every helper process a socket step named to its user
	// ("" or "other"); exited holds those an exit or kill step ended.
	procs  map[string]string
	exited map[string]bool
	last   bool // the step being parsed is the scenario's last
}

func (p *parser) steps(n *yaml.Node, proto string) []wire.Step {
	if n.Kind != yaml.SequenceNode {
		p.errf(n, "field \"steps\": expected a list of steps, found %s", kindName(n))
		return nil
	}
	if len(n.Content) == 0 {
		p.errf(n, "field \"steps\": a scenario needs at least one step")
	}
	sp := &stepParser{parser: p, proto: proto, open: map[string]sockInfo{}, procs: map[string]string{}, exited: map[string]bool{}}
	var out []wire.Step
	for i, sn := range n.Content {
		if sn.Kind != yaml.ScalarNode {
			p.errf(sn, "step: expected a line like \"bind A addr1:P\", found %s", kindName(sn))
			continue
		}
		sp.last = i == len(n.Content)-1
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
	wire.VerbSocket:   "socket S [OPTION[=V] ...] [ip6] [tcp|udp] [user=other] [proc=NAME]",
	wire.VerbSetopt:   "setopt S OPTION[=V]",
	wire.VerbBind:     "bind S ADDR:PORT",
	wire.VerbListen:   "listen S",
	wire.VerbConnect:  "connect S ADDR:PORT",
	wire.VerbAccept:   "accept S NEWNAME",
	wire.VerbClose:    "close S",
	wire.VerbTimewait: "timewait ADDR:PORT [OPTION[=V] ...]",
	wire.VerbSpread:   "spread N S1,S2,...",
	wire.VerbSend:     "send S [BYTES]",
	wire.VerbSendto:   "sendto S ADDR:PORT",
	wire.VerbRecv:     "recv S",
	wire.VerbLocal:    "local S",
	wire.VerbPeer:     "peer S",
	wire.VerbExit:     "exit PROC",
	wire.VerbKill:     "kill PROC [SIGNAL]",
	wire.VerbSleep:    "sleep DURATION",
	wire.VerbWaitfree: "waitfree ADDR:PORT [OPTION[=V] ...]",
}

// tryVerbs are the verbs a step may mark try: those whose failure leaves the
// scenario able to go on. A socket, timewait, exit, kill or sleep step that
// fails leaves nothing sensible for the next step.
var tryVerbs = []string{wire.VerbSetopt, wire.VerbBind, wire.VerbListen, wire.VerbConnect, wire.VerbAccept, wire.VerbClose,
	wire.VerbSpread, wire.VerbSend, wire.VerbSendto, wire.VerbRecv, wire.VerbLocal, wire.VerbPeer, wire.VerbWaitfree}

// observeVerbs are the verbs whose result is an observation (an address
// class, data or eof, a duration) rather than ok: before the last step they
// must be marked try, or the scenario would always end setup-failed.
var observeVerbs = []string{wire.VerbRecv, wire.VerbLocal, wire.VerbPeer, wire.VerbWaitfree, wire.VerbSpread}

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
	if toks[0].text == "try" {
		st.Try = true
		toks = toks[1:]
		if len(toks) == 0 {
			sp.errf(n, "step %q: try needs a step after it (e.g. \"try bind B addr1:P\")", n.Value)
			return st, false
		}
	}
	verb, args := toks[0], toks[1:]
	st.Verb = verb.text
	usage, ok := verbUsage[verb.text]
	if !ok {
		sp.errAt(verb.pos, "unknown verb %q; expected one of: %s", verb.text, verbs())
		return st, false
	}
	if st.Try && !slices.Contains(tryVerbs, verb.text) {
		sp.errAt(verb.pos, "a %s step cannot be marked try: if it fails the steps after it have nothing to work on", verb.text)
	}
	if !st.Try && !sp.last && slices.Contains(observeVerbs, verb.text) {
		sp.errAt(verb.pos, "%s before the last step must be marked try (\"try %s\"): its result is an observation, never ok, so it would end the scenario setup-failed", verb.text, st.Text)
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
		st.Sock = sp.socketArgs(&st, args)
	case wire.VerbSetopt:
		if need(2, 2) {
			st.Sock = sp.useSock(args[0])
			if o, ok := sp.option(args[1]); ok {
				st.Options = []wire.Option{o}
			}
		}
	case wire.VerbBind, wire.VerbConnect, wire.VerbSendto:
		if need(2, 2) {
			st.Sock = sp.useSock(args[0])
			st.Addr, st.Port = sp.endpoint(args[1])
		}
	case wire.VerbListen:
		if need(1, 1) {
			st.Sock = sp.useSock(args[0])
			sp.tcpSock(verb, st.Sock)
		}
	case wire.VerbAccept:
		if need(2, 2) {
			st.Sock = sp.useSock(args[0])
			sp.tcpSock(verb, st.Sock)
			info := sp.open[st.Sock]
			st.NewName = sp.newSock(args[1], info)
		}
	case wire.VerbClose:
		if need(1, 1) {
			st.Sock = sp.useSock(args[0])
			delete(sp.open, st.Sock)
		}
	case wire.VerbLocal, wire.VerbPeer, wire.VerbRecv:
		if need(1, 1) {
			st.Sock = sp.useSock(args[0])
		}
	case wire.VerbSend:
		if need(1, 2) {
			st.Sock = sp.useSock(args[0])
			st.N = 3 // "lab"
			if len(args) == 2 {
				v, err := strconv.Atoi(args[1].text)
				if err != nil || v < 1 || v > maxSend {
					sp.errAt(args[1].pos, "send: %q is not a byte count between 1 and %d", args[1].text, maxSend)
				}
				st.N = v
			}
		}
	case wire.VerbTimewait, wire.VerbWaitfree:
		if need(1, -1) {
			if verb.text == wire.VerbTimewait {
				sp.tcpOnly(verb)
			}
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
	case wire.VerbExit, wire.VerbKill:
		if !need(1, 2) || (verb.text == wire.VerbExit && !need(1, 1)) {
			break
		}
		st.Proc = sp.endProc(args[0])
		if verb.text == wire.VerbKill {
			st.Signal = "SIGKILL"
			if len(args) == 2 {
				if !slices.Contains(Signals, args[1].text) {
					sp.errAt(args[1].pos, "kill: unknown signal %q; expected one of: %s", args[1].text, strings.Join(Signals, ", "))
				}
				st.Signal = args[1].text
			}
		}
	case wire.VerbSleep:
		if need(1, 1) {
			d, err := time.ParseDuration(args[0].text)
			if err != nil || d < time.Millisecond || d > maxSleep {
				sp.errAt(args[0].pos, "sleep: %q is not a duration between 1ms and %s (e.g. 100ms, 2s)", args[0].text, maxSleep)
			}
			st.Wait = wire.Millis(d / time.Millisecond)
		}
	}
	return st, len(sp.problems) == before
}

// socketArgs parses the words after "socket S" into st and returns S.
func (sp *stepParser) socketArgs(st *wire.Step, args []token) string {
	info := sockInfo{proto: sp.proto}
	var procTok *token
	for i, a := range args[1:] {
		switch {
		case a.text == "ip6":
			st.IP6 = true
		case a.text == "tcp" || a.text == "udp":
			st.Proto, info.proto = a.text, a.text
		case a.text == "user=other":
			st.User = "other"
		case strings.HasPrefix(a.text, "user="):
			sp.errAt(a.pos, "%q: the only user is \"other\" (user=other)", a.text)
		case strings.HasPrefix(a.text, "proc="):
			st.Proc = strings.TrimPrefix(a.text, "proc=")
			procTok = &args[1+i]
			if !sockNameRE.MatchString(st.Proc) || st.Proc == otherProc {
				sp.errAt(a.pos, "%q: a process name is a letter, then letters, digits or _ (and not %q, the name of user=other's process)", a.text, otherProc)
			}
		default:
			if o, ok := sp.option(a); ok {
				st.Options = append(st.Options, o)
			}
		}
	}
	name := st.Proc
	if name == "" && st.User == "other" {
		name = otherProc
	}
	if name != "" {
		pos := args[0].pos
		if procTok != nil {
			pos = procTok.pos
		}
		switch user, seen := sp.procs[name]; {
		case sp.exited[name]:
			sp.errAt(pos, "process %s has exited; its sockets are gone and it takes no new ones", name)
		case seen && user != st.User:
			sp.errAt(pos, "process %s was started for another user; a process name stands for one process of one user", name)
		}
		sp.procs[name] = st.User
	}
	info.proc = name
	return sp.newSock(args[0], info)
}

// endProc checks the process an exit or kill step ends and closes its
// sockets for the steps after it.
func (sp *stepParser) endProc(t token) string {
	if _, ok := sp.procs[t.text]; !ok {
		sp.errAt(t.pos, "no process %q: a socket step names it first (socket S proc=%s, or user=other for %q)", t.text, t.text, otherProc)
		return t.text
	}
	if sp.exited[t.text] {
		sp.errAt(t.pos, "process %s has already exited", t.text)
	}
	sp.exited[t.text] = true
	for name, info := range sp.open {
		if info.proc == t.text {
			delete(sp.open, name)
		}
	}
	return t.text
}

func (sp *stepParser) tcpOnly(verb token) {
	if sp.proto == "udp" {
		sp.errAt(verb.pos, "%s is for tcp scenarios; this scenario's proto is udp", verb.text)
	}
}

// tcpSock checks a listen or accept step names a TCP socket.
func (sp *stepParser) tcpSock(verb token, sock string) {
	if info, ok := sp.open[sock]; ok && info.proto == "udp" {
		sp.errAt(verb.pos, "%s is for tcp sockets; socket %s is udp", verb.text, sock)
	}
}

func (sp *stepParser) newSock(t token, info sockInfo) string {
	if !sockNameRE.MatchString(t.text) {
		sp.errAt(t.pos, "%q is not a socket name (a letter, then letters, digits or _)", t.text)
		return t.text
	}
	if _, open := sp.open[t.text]; open {
		sp.errAt(t.pos, "socket %s already exists; close it first or use another name", t.text)
	}
	sp.open[t.text] = info
	return t.text
}

func (sp *stepParser) useSock(t token) string {
	if _, open := sp.open[t.text]; !open {
		sp.errAt(t.pos, "socket %q is used before a \"socket %s\" step creates it (or after it was closed, or its process exited)", t.text, t.text)
	}
	return t.text
}

// option parses OPTION or OPTION=V; V defaults to 1. SO_LINGER takes
// seconds or "off".
func (sp *stepParser) option(t token) (wire.Option, bool) {
	name, val, hasVal := strings.Cut(t.text, "=")
	if !slices.Contains(Options, name) {
		sp.errAt(t.pos, "unknown option %q; expected one of: %s", name, strings.Join(Options, ", "))
		return wire.Option{}, false
	}
	o := wire.Option{Name: name, Value: 1}
	if name == "SO_LINGER" {
		switch v, err := strconv.Atoi(val); {
		case !hasVal:
			sp.errAt(t.pos, "option SO_LINGER needs a value: SO_LINGER=SECONDS (lingering on, 0 to %d) or SO_LINGER=off", maxLinger)
			return o, false
		case val == "off":
			o.Value, o.Off = 0, true
		case err != nil || v < 0 || v > maxLinger:
			sp.errAt(t.pos, "option SO_LINGER: %q is not a number of seconds from 0 to %d, or off", val, maxLinger)
			return o, false
		default:
			o.Value = v
		}
		return o, true
	}
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
	case strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") && isIP6Literal(addr[1:len(addr)-1]):
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

// isIP6Literal reports whether s is written as an IPv6 address, the form a
// bracketed endpoint holds. That includes the IPv4-mapped form
// (::ffff:127.0.0.1), which net.ParseIP reads as an IPv4 address.
func isIP6Literal(s string) bool {
	return strings.Contains(s, ":") && net.ParseIP(s) != nil
}
