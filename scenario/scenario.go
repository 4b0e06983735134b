// Package scenario reads scenarios.yaml: the scripts of socket calls lab runs
// on every target, and what each documented source claims they do per OS.
//
// Parsing rejects bad input before anything runs, naming the file, line,
// column and field of every problem at once.
package scenario

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"lab/wire"
)

// Scenario is one scenario after matrix expansion.
type Scenario struct {
	wire.Scenario
	Title  string
	Source string
	Note   string
	// Expect maps a documented source ("answer") to its claims, keyed by OS
	// family or OS with an optional kernel version bound ("linux<3.9").
	Expect map[string]map[string]string
	// Vars are the matrix variables this scenario was expanded with.
	Vars map[string]string
	Pos  Pos
}

// Pos is a place in a scenarios file.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

// Target identifies the machine a claim is looked up for.
type Target struct {
	OS            string // GOOS: linux, freebsd, darwin, windows, illumos, ...
	KernelRelease string // e.g. "6.1.0-28-cloud-amd64", "14.1-RELEASE"
}

// Claim returns what source claims this scenario does on t, and the
// expectation key that matched. The most specific key wins: an OS with a
// version bound, then the OS, then the family with a version bound, then the
// family.
func (s *Scenario) Claim(source string, t Target) (outcome, key string, ok bool) {
	claims := s.Expect[source]
	if len(claims) == 0 {
		return "", "", false
	}
	fam := wire.Family(t.OS)
	best := -1
	for k, v := range claims {
		name, bound, _ := splitKey(k)
		rank := -1
		switch {
		case name == t.OS && bound != "":
			rank = 3
		case name == t.OS:
			rank = 2
		case name == fam && bound != "":
			rank = 1
		case name == fam:
			rank = 0
		}
		if rank < 0 || (bound != "" && !versionMatches(bound, t.KernelRelease)) {
			continue
		}
		if rank > best || (rank == best && k < key) {
			best, outcome, key = rank, v, k
		}
	}
	return outcome, key, best >= 0
}

// Sources lists the documented sources any scenario has claims from, sorted.
func Sources(scs []Scenario) []string {
	seen := map[string]bool{}
	for _, s := range scs {
		for src := range s.Expect {
			seen[src] = true
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// OSes lists the operating systems (GOOS values) an expectation may name:
// those wire.Family puts in the answer's families. Their families may be
// named too (see Families).
var OSes = []string{"android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "linux", "netbsd", "openbsd", "solaris", "windows"}

// Families lists the OS families an expectation may name: wire.Family of
// each of OSes.
var Families = families()

func families() []string {
	var out []string
	for _, goos := range OSes {
		if f := wire.Family(goos); !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// knownKeyName reports whether name, an expectation key without its
// version bound, is an OS or OS family lab knows. Any lowercase word would
// parse, so without this a typo ("lnux") would be a claim no target matches.
func knownKeyName(name string) bool {
	return slices.Contains(Families, name) || slices.Contains(OSes, name)
}

var keyRE = regexp.MustCompile(`^([a-z0-9]+)(?:(<|>=)([0-9]+(?:\.[0-9]+)?))?$`)

// splitKey splits "linux<3.9" into "linux" and "<3.9".
func splitKey(k string) (name, bound string, ok bool) {
	m := keyRE.FindStringSubmatch(k)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2] + m[3], true
}

// versionMatches reports whether the kernel release satisfies bound
// ("<3.9" or ">=3.9"). An unparsable release matches no bound.
func versionMatches(bound, release string) bool {
	op, want := bound[:1], bound[1:]
	if strings.HasPrefix(bound, ">=") {
		op, want = ">=", bound[2:]
	}
	have, ok := majorMinor(release)
	w, ok2 := majorMinor(want)
	if !ok || !ok2 {
		return false
	}
	less := have[0] < w[0] || (have[0] == w[0] && have[1] < w[1])
	if op == "<" {
		return less
	}
	return !less
}

var versionRE = regexp.MustCompile(`^(\d+)(?:\.(\d+))?`)

func majorMinor(s string) ([2]int, bool) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return [2]int{}, false
	}
	maj, _ := strconv.Atoi(m[1])
	min, _ := strconv.Atoi(m[2]) // "" -> 0
	return [2]int{maj, min}, true
}

// Match reports whether id matches the glob pattern, where * matches any run
// of characters including "/", ? one character, and a pattern without glob
// characters must equal id or be a prefix of it ending at a "/".
func Match(pattern, id string) bool {
	if !strings.ContainsAny(pattern, "*?") {
		return id == pattern || strings.HasPrefix(id, strings.TrimSuffix(pattern, "/")+"/")
	}
	var b strings.Builder
	b.WriteString("^")
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String()).MatchString(id)
}

// Filter returns the scenarios whose id matches any of the comma-separated
// glob patterns. An empty pattern keeps every scenario but the slow ones
// (TIME_WAIT lengths take a minute each), so a plain run stays fast; a
// pattern keeps whatever it matches, slow or not ("*" is the whole catalog).
func Filter(scs []Scenario, patterns string) []Scenario {
	return Select(scs, patterns, false)
}

// Select is Filter with the slow scenarios kept as well when slow is true,
// whatever the patterns: a --slow flag adds them to the run (an empty
// pattern with slow keeps everything).
func Select(scs []Scenario, patterns string, slow bool) []Scenario {
	if strings.TrimSpace(patterns) == "" {
		var out []Scenario
		for _, s := range scs {
			if slow || !s.Slow {
				out = append(out, s)
			}
		}
		return out
	}
	var out []Scenario
	for _, s := range scs {
		if slow && s.Slow {
			out = append(out, s)
			continue
		}
		for _, p := range strings.Split(patterns, ",") {
			if p = strings.TrimSpace(p); p != "" && Match(p, s.ID) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// Wire returns the scenarios in the form the agent takes.
func Wire(scs []Scenario) []wire.Scenario {
	out := make([]wire.Scenario, len(scs))
	for i, s := range scs {
		out[i] = s.Scenario
	}
	return out
}
