package scenario

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"lab/wire"
)

// DefaultTimeout is a scenario's deadline when it sets none. Every catalog
// scenario finishes in milliseconds; the deadline only turns a hang into
// outcome "timeout".
const DefaultTimeout = 3 * time.Second

// Problem is one thing wrong with a scenarios file.
type Problem struct {
	Pos Pos
	Msg string
}

func (p Problem) Error() string { return p.Pos.String() + ": " + p.Msg }

// Problems is every problem found in a file; Parse reports them all at once
// so a user fixes a file in one pass.
type Problems []Problem

func (ps Problems) Error() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// ParseFile reads and parses a scenarios file.
func ParseFile(path string) ([]Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading scenarios: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a scenarios file's contents; file names it in errors. The
// returned error, if any, is a Problems listing every problem found.
func Parse(file string, data []byte) ([]Scenario, error) {
	p := &parser{file: file, ids: map[string]Pos{}}
	out := p.parse(data)
	if len(p.problems) > 0 {
		return nil, p.problems.sorted()
	}
	return out, nil
}

// sorted returns ps in file order (line, then column), dropping exact
// repeats. Checks run in passes (duplicate keys over the whole file first)
// and a matrix checks its template once per row, so the order found is not
// the order a reader fixes them in.
func (ps Problems) sorted() Problems {
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b Problem) int {
		if c := strings.Compare(a.Pos.File, b.Pos.File); c != 0 {
			return c
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		return a.Pos.Col - b.Pos.Col
	})
	return slices.Compact(out)
}

// parse parses data into p, returning the scenarios found; the caller
// checks p.problems.
func (p *parser) parse(data []byte) []Scenario {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.errAt(Pos{File: p.file, Line: yamlErrLine(err), Col: 1}, "invalid YAML: %v", err)
		return nil
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.errAt(Pos{p.file, 1, 1}, "empty file; expected a mapping with key \"scenarios\"")
		return nil
	}
	p.duplicateKeys(&doc)
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.errf(root, "expected a mapping with key \"scenarios\", found %s", kindName(root))
		return nil
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "scenarios" {
			p.errf(k, "unknown top-level field %q; expected \"scenarios\"", k.Value)
			continue
		}
		list = v
	}
	if list == nil {
		if len(p.problems) == 0 {
			p.errf(root, "missing top-level field \"scenarios\"")
		}
		return nil
	}
	if list.Kind != yaml.SequenceNode {
		p.errf(list, "field \"scenarios\": expected a list, found %s", kindName(list))
		return nil
	}
	var out []Scenario
	for _, n := range list.Content {
		out = append(out, p.scenarioOrMatrix(n)...)
	}
	return out
}

// duplicateKeys reports a key given twice in one mapping: YAML decoders
// silently keep the last, which would hide a typo'd scenario.
func (p *parser) duplicateKeys(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if first, dup := seen[k.Value]; dup {
				p.errf(k, "field %q given twice (first at %s)", k.Value, p.pos(first))
			}
			seen[k.Value] = k
		}
	}
	for _, c := range n.Content {
		p.duplicateKeys(c)
	}
}

type parser struct {
	file     string
	problems Problems
	ids      map[string]Pos
}

func (p *parser) pos(n *yaml.Node) Pos { return Pos{p.file, n.Line, n.Column} }

func (p *parser) errf(n *yaml.Node, format string, args ...any) {
	p.errAt(p.pos(n), format, args...)
}

func (p *parser) errAt(pos Pos, format string, args ...any) {
	p.problems = append(p.problems, Problem{pos, fmt.Sprintf(format, args...)})
}

var scenarioFields = []string{"id", "title", "source", "proto", "timeout", "steps", "expect", "note", "matrix"}

// scenarioOrMatrix parses one list entry, expanding its matrix if it has one.
func (p *parser) scenarioOrMatrix(n *yaml.Node) []Scenario {
	if n.Kind != yaml.MappingNode {
		p.errf(n, "scenario: expected a mapping, found %s", kindName(n))
		return nil
	}
	var matrix *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "matrix" {
			matrix = n.Content[i+1]
		}
	}
	if matrix == nil {
		if s, ok := p.scenario(n, nil); ok {
			return []Scenario{s}
		}
		return nil
	}
	rows := p.matrixRows(matrix)
	if len(rows) == 0 {
		p.errf(matrix, "matrix: empty; it must give at least one set of variables")
	}
	var out []Scenario
	for _, vars := range rows {
		if s, ok := p.scenario(substitute(n, vars), vars); ok {
			out = append(out, s)
		}
	}
	return out
}

// maxMatrixRows bounds the scenarios one matrix makes: combinations grow
// tenfold with each variable of ten values, and a mistyped matrix should be
// an error at its line, not a parser that runs for minutes.
const maxMatrixRows = 10000

// matrixRows turns a matrix into the list of variable sets it stands for:
// either a list of rows, or a mapping of variables to lists whose every
// combination is taken (in the order written, the last variable fastest).
func (p *parser) matrixRows(m *yaml.Node) []map[string]string {
	switch m.Kind {
	case yaml.SequenceNode:
		var rows []map[string]string
		for _, row := range m.Content {
			if row.Kind != yaml.MappingNode {
				p.errf(row, "matrix row: expected a mapping of variables, found %s", kindName(row))
				continue
			}
			vars := map[string]string{}
			for i := 0; i+1 < len(row.Content); i += 2 {
				k, v := row.Content[i], row.Content[i+1]
				if v.Kind != yaml.ScalarNode {
					p.errf(v, "matrix variable %q: expected a scalar, found %s", k.Value, kindName(v))
					continue
				}
				vars[k.Value] = v.Value
			}
			rows = append(rows, vars)
		}
		return rows
	case yaml.MappingNode:
		rows := []map[string]string{{}}
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			if v.Kind != yaml.SequenceNode {
				p.errf(v, "matrix variable %q: expected a list of values, found %s", k.Value, kindName(v))
				continue
			}
			if n := len(rows) * len(v.Content); n > maxMatrixRows {
				p.errf(m, "matrix: %d combinations, more than the %d one matrix may make; split it or list its rows", n, maxMatrixRows)
				return nil
			}
			var next []map[string]string
			for _, r := range rows {
				for _, val := range v.Content {
					if val.Kind != yaml.ScalarNode {
						p.errf(val, "matrix variable %q: expected a scalar, found %s", k.Value, kindName(val))
						continue
					}
					nr := make(map[string]string, len(r)+1)
					for a, b := range r {
						nr[a] = b
					}
					nr[k.Value] = val.Value
					next = append(next, nr)
				}
			}
			rows = next
		}
		return rows
	}
	p.errf(m, "matrix: expected a list of rows or a mapping of variables to lists, found %s", kindName(m))
	return nil
}

var varRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// substitute returns a deep copy of n with ${var} replaced in every scalar.
// Positions are kept, so errors point at the template line. Unknown
// variables are left in place and reported by the field checks.
func substitute(n *yaml.Node, vars map[string]string) *yaml.Node {
	c := *n
	if n.Kind == yaml.ScalarNode && varRE.MatchString(n.Value) {
		// Columns of words after a substitution no longer match the
		// template; this style tells tokens to point at the step instead.
		c.Style |= substituted
		c.Value = varRE.ReplaceAllStringFunc(n.Value, func(m string) string {
			if v, ok := vars[m[2:len(m)-1]]; ok {
				return v
			}
			return m
		})
	}
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, ch := range n.Content {
		c.Content[i] = substitute(ch, vars)
	}
	return &c
}

// substituted marks a scalar whose ${var}s were replaced. yaml.v3 does not
// use this bit of Style.
const substituted yaml.Style = 1 << 7

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9/._-]*$`)

// scenario parses one scenario mapping (already matrix-substituted).
func (p *parser) scenario(n *yaml.Node, vars map[string]string) (Scenario, bool) {
	before := len(p.problems)
	s := Scenario{Pos: p.pos(n), Vars: vars}
	s.Timeout = wire.Millis(DefaultTimeout / time.Millisecond)
	var stepsNode *yaml.Node
	var idNode *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "id":
			s.ID, idNode = p.str(k.Value, v), v
		case "title":
			s.Title = p.str(k.Value, v)
		case "source":
			s.Source = p.str(k.Value, v)
		case "note":
			s.Note = p.str(k.Value, v)
		case "proto":
			s.Proto = p.str(k.Value, v)
			if s.Proto != "tcp" && s.Proto != "udp" {
				p.errf(v, "field \"proto\": %q is not a protocol; expected tcp or udp", s.Proto)
			}
		case "timeout":
			d, err := time.ParseDuration(p.str(k.Value, v))
			if err != nil || d < time.Millisecond {
				p.errf(v, "field \"timeout\": %q is not a duration of at least 1ms (e.g. 2s, 500ms)", v.Value)
			}
			s.Timeout = wire.Millis(d / time.Millisecond)
		case "steps":
			stepsNode = v
		case "expect":
			s.Expect = p.expect(v)
		case "matrix":
		default:
			p.errf(k, "unknown field %q; expected one of %s", k.Value, strings.Join(scenarioFields, ", "))
		}
	}
	switch {
	case idNode == nil:
		p.errf(n, "scenario has no \"id\"")
	case !idRE.MatchString(s.ID):
		p.errf(idNode, "field \"id\": %q is not a valid id (letters, digits, / . _ -%s)", s.ID, unknownVarHint(s.ID))
	default:
		if prev, dup := p.ids[s.ID]; dup {
			p.errf(idNode, "field \"id\": duplicate id %q (first defined at %s)", s.ID, prev)
		} else {
			p.ids[s.ID] = p.pos(idNode)
		}
	}
	if s.Proto == "" {
		p.errf(n, "scenario %q has no \"proto\"; expected tcp or udp", s.ID)
	}
	if stepsNode == nil {
		p.errf(n, "scenario %q has no \"steps\"", s.ID)
	} else {
		s.Steps = p.steps(stepsNode, s.Proto)
	}
	for _, f := range []string{s.Title, s.Source, s.Note} {
		if m := varRE.FindString(f); m != "" {
			p.errf(n, "scenario %q uses matrix variable %s, which its matrix does not define", s.ID, m)
		}
	}
	return s, len(p.problems) == before
}

func unknownVarHint(s string) string {
	if m := varRE.FindString(s); m != "" {
		return "; " + m + " is not a variable of this scenario's matrix"
	}
	return ""
}

func (p *parser) str(field string, v *yaml.Node) string {
	if v.Kind != yaml.ScalarNode {
		p.errf(v, "field %q: expected a string, found %s", field, kindName(v))
		return ""
	}
	return v.Value
}

var expectKeyHint = "an OS family (" + strings.Join(Families, ", ") + ") or OS (" + strings.Join(OSes, ", ") + "), optionally with a version bound like linux<3.9 or linux>=3.9"

// expect parses expect: {source: {key: outcome}}.
func (p *parser) expect(n *yaml.Node) map[string]map[string]string {
	if n.Kind != yaml.MappingNode {
		p.errf(n, "field \"expect\": expected a mapping of sources (e.g. answer) to claims, found %s", kindName(n))
		return nil
	}
	out := map[string]map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		src, claims := n.Content[i], n.Content[i+1]
		if claims.Kind != yaml.MappingNode {
			p.errf(claims, "expect.%s: expected a mapping of OS to outcome, found %s", src.Value, kindName(claims))
			continue
		}
		m := map[string]string{}
		for j := 0; j+1 < len(claims.Content); j += 2 {
			k, v := claims.Content[j], claims.Content[j+1]
			name, _, ok := splitKey(k.Value)
			if !ok {
				p.errf(k, "expect.%s: %q is not a valid key; expected %s%s", src.Value, k.Value, expectKeyHint, unknownVarHint(k.Value))
				continue
			}
			if !knownKeyName(name) {
				p.errf(k, "expect.%s: %q is not an OS family or OS lab knows; expected %s", src.Value, name, expectKeyHint)
				continue
			}
			if !ValidOutcome(v.Value) {
				p.errf(v, "expect.%s.%s: %q is not an outcome; expected ok, an errno name like EADDRINUSE, unsupported, or for spread even, single, uneven, none%s", src.Value, k.Value, v.Value, unknownVarHint(v.Value))
				continue
			}
			m[k.Value] = v.Value
		}
		out[src.Value] = m
	}
	return out
}

var errnoRE = regexp.MustCompile(`^E[A-Z0-9]+$`)

// ValidOutcome reports whether o is something a scenario can end with.
func ValidOutcome(o string) bool {
	switch o {
	case wire.OK, wire.Unsupported, wire.SetupFailed, wire.Timeout, wire.Skipped,
		wire.SpreadEven, wire.SpreadSingle, wire.SpreadUneven, wire.SpreadNone:
		return true
	}
	return errnoRE.MatchString(o)
}

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

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		err = errors.New(te.Errors[0])
	}
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 1
}
