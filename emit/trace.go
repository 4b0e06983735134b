package emit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"lab/wire"
)

// WriteValues writes the line that names a trace's concrete ports and
// addresses: "values   P=40123 addr1=127.0.0.2".
func WriteValues(w io.Writer, ports map[string]int, addrs map[string]string) {
	var vals []string
	for k, v := range ports {
		vals = append(vals, fmt.Sprintf("%s=%d", k, v))
	}
	for k, v := range addrs {
		vals = append(vals, k+"="+v)
	}
	sort.Strings(vals)
	fmt.Fprintf(w, "values   %s\n", strings.Join(vals, " "))
}

// WriteStep writes step n of a trace as lab repro prints the agent's and the
// reproducers print their own: "step N: <text>: <result>", then the call as
// the OS saw it, the socket's family, the options set with their level, what
// the call returned, the socket's local address after it (the agent's only)
// and how long the step took, separated by two spaces.
func WriteStep(w io.Writer, n int, s wire.StepResult) {
	res := s.Result
	if s.Errno != 0 {
		res = fmt.Sprintf("%s (%d)", s.Result, s.Errno)
	}
	fmt.Fprintf(w, "step %d: %s: %s\n", n, s.Text, res)
	var what []string
	if s.Call != "" {
		what = append(what, s.Call)
	}
	if s.Family != "" {
		what = append(what, "family "+s.Family)
	}
	for _, opt := range s.Options {
		what = append(what, optionField(opt))
	}
	if s.Ret != nil {
		what = append(what, fmt.Sprintf("returned %d", *s.Ret))
	}
	if s.Local != "" {
		what = append(what, "local "+s.Local)
	}
	if s.Counts != nil {
		what = append(what, fmt.Sprintf("counts %v of %d", s.Counts, s.Sent))
	}
	if s.Bytes != 0 {
		what = append(what, fmt.Sprintf("%d bytes", s.Bytes))
	}
	if s.Waited != 0 {
		what = append(what, fmt.Sprintf("waited %dms", s.Waited))
	}
	what = append(what, fmt.Sprintf("%dµs", s.Micros))
	fmt.Fprintf(w, "        %s\n", strings.Join(what, "  "))
}

func optionField(o wire.SetOption) string {
	switch {
	case o.Name == "SO_LINGER" && o.Off:
		return fmt.Sprintf("setsockopt(%s, %s, {l_onoff 0, l_linger 0})", o.Level, o.Name)
	case o.Name == "SO_LINGER":
		return fmt.Sprintf("setsockopt(%s, %s, {l_onoff 1, l_linger %d})", o.Level, o.Name, o.Value)
	}
	return fmt.Sprintf("setsockopt(%s, %s, %d)", o.Level, o.Name, o.Value)
}

// Trace is a reproducer's output read back.
type Trace struct {
	Ports map[string]int // the ports it used, from its values line
	Steps []Step
}

// Step is one step of a reproducer's trace.
type Step struct {
	N int
	wire.StepResult
}

// Parse reads a trace WriteStep wrote; lines that are neither a step, the
// line under it, nor the values line are ignored.
func Parse(r io.Reader) (*Trace, error) {
	tr := &Trace{Ports: map[string]int{}}
	var last *Step // the step the next indented line describes
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		text := sc.Text()
		if rest, ok := strings.CutPrefix(text, "values "); ok {
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				if n, err := strconv.Atoi(v); err == nil {
					tr.Ports[k] = n
				}
			}
			last = nil
			continue
		}
		if rest, ok := strings.CutPrefix(text, "        "); ok && last != nil {
			parseDetail(&last.StepResult, rest)
			last = nil
			continue
		}
		last = nil
		s, ok := parseStep(text)
		if !ok {
			continue
		}
		tr.Steps = append(tr.Steps, s)
		last = &tr.Steps[len(tr.Steps)-1]
	}
	return tr, sc.Err()
}

// parseStep reads "step N: <text>: <result>".
func parseStep(line string) (Step, bool) {
	line, ok := strings.CutPrefix(line, "step ")
	if !ok {
		return Step{}, false
	}
	num, rest, ok := strings.Cut(line, ": ")
	if !ok {
		return Step{}, false
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return Step{}, false
	}
	i := strings.LastIndex(rest, ": ")
	if i < 0 {
		return Step{}, false
	}
	s := Step{N: n, StepResult: wire.StepResult{Text: rest[:i], Result: rest[i+2:]}}
	if name, errno, ok := strings.Cut(s.Result, " ("); ok {
		s.Result = name
		s.Errno, _ = strconv.Atoi(strings.TrimSuffix(errno, ")"))
	}
	return s, true
}

// parseDetail reads the line under a step into s.
func parseDetail(s *wire.StepResult, line string) {
	for i, f := range strings.Split(strings.TrimSpace(line), "  ") {
		switch {
		case strings.HasPrefix(f, "family "):
			s.Family = strings.TrimPrefix(f, "family ")
		case strings.HasPrefix(f, "returned "):
			if n, err := strconv.Atoi(strings.TrimPrefix(f, "returned ")); err == nil {
				s.Ret = &n
			}
		case strings.HasPrefix(f, "local "):
			s.Local = strings.TrimPrefix(f, "local ")
		case strings.HasPrefix(f, "counts "):
		case strings.HasSuffix(f, "µs"):
			s.Micros, _ = strconv.ParseInt(strings.TrimSuffix(f, "µs"), 10, 64)
		case i == 0:
			s.Call = f
		case strings.HasPrefix(f, "setsockopt(") && strings.Count(f, ", ") == 2:
			args := strings.Split(strings.TrimSuffix(strings.TrimPrefix(f, "setsockopt("), ")"), ", ")
			v, _ := strconv.Atoi(args[2])
			s.Options = append(s.Options, wire.SetOption{Level: args[0], Name: args[1], Value: v})
		}
	}
}

// Compare checks a reproducer's trace against the agent's result res: every
// step the agent ran must have the same result and errno, the same call with
// the same arguments (family, address, port, options) and the same return
// value, and the reproducer must run no step more; nil when they match.
//
// What legitimately differs between two runs is not compared: descriptor
// numbers (socket and accept return whatever is free; only success is
// compared), a port the reproducer picked afresh (each trace's values line
// says what stands for P and Q, so ports are compared by name), the timing
// and the local address (the reproducers do not print it).
func Compare(res *wire.Result, tr *Trace) error {
	var errs []error
	for i, a := range res.Steps {
		if i >= len(tr.Steps) {
			errs = append(errs, fmt.Errorf("step %d (%s): agent %s, reproducer stopped before it", i+1, a.Text, a.Result))
			continue
		}
		g := tr.Steps[i].StepResult
		var diffs []string
		differ := func(what, agent, repro string) {
			diffs = append(diffs, fmt.Sprintf("%s: agent %s, reproducer %s", what, agent, repro))
		}
		if g.Result != a.Result {
			differ("result", a.Result, g.Result)
		} else if a.Errno != g.Errno {
			differ("errno", strconv.Itoa(a.Errno), strconv.Itoa(g.Errno))
		}
		if a.Call != "" && normCall(a.Call, res.Ports) != normCall(g.Call, tr.Ports) {
			differ("call", a.Call, g.Call)
		}
		if a.Family != "" && a.Family != g.Family {
			differ("family", a.Family, g.Family)
		}
		// An agent older than the recorded arguments has neither.
		if (a.Family != "" || a.Options != nil) && !slices.Equal(a.Options, g.Options) {
			differ("options", options(a.Options), options(g.Options))
		}
		if a.Ret != nil {
			switch {
			case g.Ret == nil:
				differ("returned", strconv.Itoa(*a.Ret), "nothing")
			case returnsDescriptor(a.Call) && (*a.Ret >= 0) != (*g.Ret >= 0),
				!returnsDescriptor(a.Call) && *a.Ret != *g.Ret:
				differ("returned", strconv.Itoa(*a.Ret), strconv.Itoa(*g.Ret))
			}
		}
		if diffs != nil {
			errs = append(errs, fmt.Errorf("step %d (%s): %s", i+1, a.Text, strings.Join(diffs, "; ")))
		}
	}
	for _, g := range tr.Steps[min(len(res.Steps), len(tr.Steps)):] {
		errs = append(errs, fmt.Errorf("step %d (%s): reproducer %s, agent stopped before it", g.N, g.Text, g.Result))
	}
	return errors.Join(errs...)
}

func options(os []wire.SetOption) string {
	if len(os) == 0 {
		return "none"
	}
	var f []string
	for _, o := range os {
		f = append(f, optionField(o))
	}
	return strings.Join(f, " ")
}

// returnsDescriptor says a step's call returns a new descriptor, whose
// number is the kernel's choice.
func returnsDescriptor(call string) bool {
	return strings.HasPrefix(call, "socket(") || strings.HasPrefix(call, "accept(")
}

var (
	// fdArg is a descriptor as a call's first argument: setsockopt(5, ...),
	// accept(5).
	fdArg = regexp.MustCompile(`\(\d+([,)])`)
	// fdRet is the descriptor socket or accept returned.
	fdRet = regexp.MustCompile(`((?:socket|accept)\([^)]*\)) = \d+`)
)

// normCall rewrites a call so that two runs' calls compare equal: a port
// that stands for a symbolic one (ports) becomes its name, and descriptor
// numbers (in the strace-style calls a timewait step lists) become "fd".
func normCall(call string, ports map[string]int) string {
	for sym, p := range ports {
		call = strings.ReplaceAll(call, fmt.Sprintf(":%d)", p), ":"+sym+")")
	}
	call = fdArg.ReplaceAllString(call, "(fd$1")
	return fdRet.ReplaceAllString(call, "$1 = fd")
}
