package scenario

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
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

var scenarioFields = []string{"id", "title", "source", "proto", "timeout", "slow", "steps", "expect", "note", "matrix"}

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
		case "slow":
			switch p.str(k.Value, v) {
			case "true":
				s.Slow = true
			case "false":
			default:
				p.errf(v, "field \"slow\": %q is not true or false", v.Value)
			}
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
			if msg := claimProblem(v.Value); msg != "" {
				if strings.ContainsAny(v.Value, "|!") || strings.Contains(v.Value, wire.Then) {
					msg += fmt.Sprintf(" (in claim %q)", v.Value)
				}
				p.errf(v, "expect.%s.%s: %s%s", src.Value, k.Value, msg, unknownVarHint(v.Value))
				continue
			}
			m[k.Value] = v.Value
		}
		out[src.Value] = m
	}
	return out
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
