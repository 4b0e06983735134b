package target

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"lab"

	"gopkg.in/yaml.v3"

	"lab/scenario"
)

// Spec is one machine scenarios run on, as the targets file (lab.yaml)
// describes it: the fields every target has, and its provider's own
// settings in Config.
type Spec struct {
	Name     string
	Provider string
	// OS and Arch are the target's GOOS and GOARCH, for building the agent;
	// providers that know them (local, the Linux microVMs) fill them in.
	OS, Arch string
	// Keep leaves the machine running after the run for later runs to reuse
	// (lab run --keep, or keep: true), where its provider can (Keeper).
	Keep bool
	// Config is the provider's own settings (NewConfig's type).
	Config Config
	// Pos is where the entry starts in the targets file.
	Pos scenario.Pos
}

// common is the part of an entry every target has.
type common struct {
	Name     string `yaml:"name"`
	Provider string `yaml:"provider"`
	OS       string `yaml:"os"`
	Arch     string `yaml:"arch"`
	Keep     bool   `yaml:"keep"`
}

// duration is a time.Duration written like "90s" in YAML.
type duration time.Duration

// UnmarshalYAML reads "90s", "2m".
func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q is not a positive duration (e.g. 90s)", n.Value)
	}
	*d = duration(v)
	return nil
}

// Defaults are the targets lab carries (lab.Targets, the repository's
// lab.yaml), for when there is no targets file: this machine, the Linux
// microVMs of image.Defaults, and the documented other kinds. Each call
// returns new values, so a caller may change them.
func Defaults() []Spec {
	ts, err := Parse("(built-in) lab.yaml", lab.Targets)
	if err != nil {
		panic("lab's built-in lab.yaml does not parse: " + err.Error()) // TestDefaults keeps it from happening
	}
	return ts
}

// Load reads a targets file, checking every entry before anything runs and
// reporting all problems with file:line:col.
func Load(path string) ([]Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading targets file: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a targets file's contents.
func Parse(file string, data []byte) ([]Spec, error) {
	var probs scenario.Problems
	at := func(n *yaml.Node, format string, args ...any) {
		probs = append(probs, scenario.Problem{Pos: scenario.Pos{File: file, Line: n.Line, Col: n.Column}, Msg: fmt.Sprintf(format, args...)})
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: invalid YAML: %w", file, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:1:1: expected a mapping with key \"targets\"", file)
	}
	root := doc.Content[0]
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "targets" {
			list = root.Content[i+1]
		} else {
			at(root.Content[i], "unknown top-level field %q; expected \"targets\"", root.Content[i].Value)
		}
	}
	if list == nil || list.Kind != yaml.SequenceNode {
		at(root, "expected \"targets\": a list of targets")
		return nil, probs
	}
	var out []Spec
	names := map[string]scenario.Pos{}
	for _, n := range list.Content {
		if n.Kind != yaml.MappingNode {
			at(n, "target: expected a mapping")
			continue
		}
		var c common
		decodeErrs := decode(n, &c)
		p, known := Lookup(c.Provider)
		var cfg Config
		if known {
			cfg = p.NewConfig()
			decodeErrs = append(decodeErrs, decode(n, cfg)...)
			fields := fieldNames(cfg)
			for i := 0; i+1 < len(n.Content); i += 2 {
				if k := n.Content[i]; !fields[k.Value] {
					at(k, "unknown field %q of a target of provider %s (its fields: %s)", k.Value, c.Provider, strings.Join(sortedKeys(fields), ", "))
				}
			}
		}
		if len(decodeErrs) > 0 {
			for _, e := range decodeErrs {
				at(n, "%s", e)
			}
			continue
		}
		s := Spec{Name: c.Name, Provider: c.Provider, OS: c.OS, Arch: c.Arch, Keep: c.Keep, Config: cfg, Pos: scenario.Pos{File: file, Line: n.Line, Col: n.Column}}
		if prev, dup := names[s.Name]; dup {
			at(n, "duplicate target name %q (first at %s)", s.Name, prev)
		}
		names[s.Name] = s.Pos
		for _, msg := range s.problems() {
			at(n, "target %q: %s", s.Name, msg)
		}
		out = append(out, s)
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return out, nil
}

// decode decodes n into v, returning each field it could not read.
func decode(n *yaml.Node, v any) []string {
	err := n.Decode(v)
	if err == nil {
		return nil
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return te.Errors
	}
	return []string{err.Error()}
}

// fieldNames is the set of lab.yaml fields a target with cfg may have:
// the common ones and cfg's yaml tags.
func fieldNames(cfg Config) map[string]bool {
	fields := map[string]bool{}
	for _, c := range []any{common{}, cfg} {
		t := reflect.TypeOf(c)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		for i := 0; i < t.NumField(); i++ {
			if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
				fields[name] = true
			}
		}
	}
	return fields
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var targetNameRE = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)

// problems checks the common fields and lets the provider check its own.
func (s *Spec) problems() []string {
	var p []string
	if !targetNameRE.MatchString(s.Name) || s.Name == "run" || s.Name == "report" {
		p = append(p, "\"name\" must be letters, digits, . _ or -, not start with . and not be \"run\" or \"report\" (it names the results file <name>.json beside run.json and report.json)")
	}
	known := strings.Join(providerNames(), ", ")
	switch {
	case s.Provider == "":
		return append(p, "\"provider\" is required: one of "+known)
	case s.Config == nil:
		return append(p, fmt.Sprintf("unknown provider %q; expected one of %s", s.Provider, known))
	}
	p = append(p, s.Config.Validate(s)...)
	if s.Keep {
		if err := CanKeep(*s); err != nil {
			p = append(p, "keep: "+err.Error())
		}
	}
	return p
}

// Select picks the targets named in a comma-separated list, in that order.
func Select(all []Spec, names string) ([]Spec, error) {
	byName := map[string]Spec{}
	var known []string
	for _, t := range all {
		byName[t.Name] = t
		known = append(known, t.Name)
	}
	var out []Spec
	chosen := map[string]bool{}
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		t, ok := byName[n]
		if chosen[n] {
			continue // a target named twice runs once: both would write one file
		}
		chosen[n] = true
		if !ok {
			return nil, fmt.Errorf("unknown target %q; the targets file defines: %s", n, strings.Join(known, ", "))
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no targets selected; the targets file defines: %s", strings.Join(known, ", "))
	}
	return out, nil
}

// Shard picks slice i of n (1-based; spec "i/n") of the selected targets:
// contiguous and as even as can be, so the same spec always picks the same
// targets and merging shards 1/n ... n/n in order restores the selection's
// order. A shard with no target is an error: the matrix has more shards than
// targets.
func Shard(ts []Spec, spec string) ([]Spec, error) {
	is, ns, ok := strings.Cut(spec, "/")
	i, err1 := strconv.Atoi(is)
	n, err2 := strconv.Atoi(ns)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 1 || i > n {
		return nil, fmt.Errorf("bad shard %q: want i/n with 1 <= i <= n, e.g. 2/4", spec)
	}
	if len(ts) < n {
		return nil, fmt.Errorf("shard %s: %d targets cannot be split into %d shards", spec, len(ts), n)
	}
	return ts[(i-1)*len(ts)/n : i*len(ts)/n], nil
}

// Describe says in a few words what s is: its provider and settings.
func (s Spec) Describe() string {
	if d := s.Config.Describe(); d != "" {
		return s.Provider + " (" + d + ")"
	}
	return s.Provider
}

// expandHome replaces a leading ~/ with the user's home directory.
func expandHome(p string) string {
	if strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, p[2:])
		}
	}
	return p
}
