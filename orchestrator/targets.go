package orchestrator

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"lab/image"
	"lab/scenario"
)

// Target is one machine scenarios run on, as the targets file (lab.yaml)
// describes it.
type Target struct {
	Name     string `yaml:"name"`
	Provider string `yaml:"provider"` // local, qemu, ssh, vagrant, wine
	// OS and Arch are the target's GOOS and GOARCH, for cross-compiling the
	// agent; the local target and the Linux microVMs fill them in.
	OS   string `yaml:"os"`
	Arch string `yaml:"arch"`

	// Provider qemu: a microVM built from Debian packages ...
	Suite  string `yaml:"suite"`  // bullseye, bookworm, trixie, ...
	Kernel string `yaml:"kernel"` // the kernel package, e.g. linux-image-cloud-amd64
	// ... or a cloud image booted with a NoCloud seed lab generates.
	Disk string `yaml:"disk"`
	// KernelArgs are added to a microVM's kernel command line.
	KernelArgs string `yaml:"kernel_args"`

	// Provider ssh (and qemu disk images): how to log in.
	Host       string `yaml:"host"` // host or host:port
	User       string `yaml:"user"`
	Key        string `yaml:"key"`         // private key file, must be 0600
	KnownHosts string `yaml:"known_hosts"` // default ~/.ssh/known_hosts
	// Sudo runs the agent with sudo: only for disposable machines.
	Sudo bool `yaml:"sudo"`

	// Provider vagrant: the box, by default the one lab's lineup
	// (vagrant/Vagrantfile) names for a machine of the target's name;
	// vagrant_provider is libvirt (default) or virtualbox; keep leaves the
	// machine up after the run, and the next run reuses it.
	Box             string `yaml:"box"`
	BoxVersion      string `yaml:"box_version"`
	VagrantProvider string `yaml:"vagrant_provider"`
	Keep            bool   `yaml:"keep"`

	MemoryMB int `yaml:"memory_mb"`
	CPUs     int `yaml:"cpus"`
	// BootTimeout bounds boot and SSH readiness (default 60s; 180s for disk
	// images, which boot a full init under TCG).
	BootTimeout Duration `yaml:"boot_timeout"`

	Pos scenario.Pos `yaml:"-"`
}

// Duration is a time.Duration written like "90s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads "90s", "2m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q is not a positive duration (e.g. 90s)", n.Value)
	}
	*d = Duration(v)
	return nil
}

// DefaultTargets is what lab knows without a targets file: this machine and
// the Linux kernels of image.Defaults, one per Debian suite.
var DefaultTargets = defaultTargets()

func defaultTargets() []*Target {
	ts := []*Target{{Name: "local", Provider: "local"}}
	for _, s := range image.Defaults {
		ts = append(ts, &Target{Name: s.Name, Provider: "qemu", OS: "linux", Arch: s.Arch, Suite: s.Suite, Kernel: s.KernelPackage})
	}
	return ts
}

var targetFields = map[string]bool{}

func init() {
	for _, f := range []string{"name", "provider", "os", "arch", "suite", "kernel", "disk", "kernel_args", "host", "user", "key", "known_hosts", "sudo", "box", "box_version", "vagrant_provider", "keep", "memory_mb", "cpus", "boot_timeout"} {
		targetFields[f] = true
	}
}

// LoadTargets reads a targets file, checking every entry before anything
// runs and reporting all problems with file:line:col.
func LoadTargets(path string) ([]*Target, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading targets file: %w", err)
	}
	return ParseTargets(path, data)
}

// ParseTargets parses a targets file's contents.
func ParseTargets(file string, data []byte) ([]*Target, error) {
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
	var out []*Target
	names := map[string]scenario.Pos{}
	for _, n := range list.Content {
		if n.Kind != yaml.MappingNode {
			at(n, "target: expected a mapping")
			continue
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; !targetFields[k.Value] {
				at(k, "unknown field %q of a target", k.Value)
			}
		}
		t := &Target{Pos: scenario.Pos{File: file, Line: n.Line, Col: n.Column}}
		if err := n.Decode(t); err != nil {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, e := range te.Errors {
					at(n, "%s", e)
				}
			} else {
				at(n, "%v", err)
			}
			continue
		}
		if prev, dup := names[t.Name]; dup {
			at(n, "duplicate target name %q (first at %s)", t.Name, prev)
		}
		names[t.Name] = t.Pos
		for _, msg := range t.problems() {
			at(n, "target %q: %s", t.Name, msg)
		}
		out = append(out, t)
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return out, nil
}

var targetNameRE = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)

// problems checks a target's fields make sense for its provider.
func (t *Target) problems() []string {
	var p []string
	if !targetNameRE.MatchString(t.Name) || t.Name == "run" || t.Name == "report" {
		p = append(p, "\"name\" must be letters, digits, . _ or -, not start with . and not be \"run\" or \"report\" (it names the results file <name>.json beside run.json and report.json)")
	}
	switch t.Provider {
	case "local":
	case "qemu":
		if (t.Suite == "") == (t.Disk == "") {
			p = append(p, "a qemu target needs either \"suite\" and \"kernel\" (a microVM built from Debian packages) or \"disk\" (a qcow2 cloud image)")
		}
		if t.Suite != "" && t.Kernel == "" {
			p = append(p, "\"kernel\" (a Debian kernel package) is required with \"suite\"")
		}
		if t.Disk != "" && (t.OS == "" || t.User == "") {
			p = append(p, "a disk image target needs \"os\" (its GOOS) and \"user\" (the cloud image's default user)")
		}
	case "ssh":
		if t.Host == "" || t.User == "" || t.OS == "" || t.Arch == "" {
			p = append(p, "an ssh target needs \"host\", \"user\", \"os\" and \"arch\"")
		}
	case "vagrant":
		p = append(p, vagrantProblems(t)...)
	case "wine":
		if t.OS != "" && t.OS != "windows" {
			p = append(p, "a wine target runs the windows agent; leave \"os\" out or say windows")
		}
	case "":
		p = append(p, "\"provider\" is required: local, qemu, ssh, vagrant or wine")
	default:
		p = append(p, fmt.Sprintf("unknown provider %q; expected local, qemu, ssh, vagrant or wine", t.Provider))
	}
	if t.Suite != "" && t.OS == "" {
		t.OS = "linux"
	}
	if t.Provider == "qemu" && t.Arch == "" {
		t.Arch = "amd64"
	}
	return p
}

// Select picks the targets named in a comma-separated list, in that order.
func Select(all []*Target, names string) ([]*Target, error) {
	byName := map[string]*Target{}
	var known []string
	for _, t := range all {
		byName[t.Name] = t
		known = append(known, t.Name)
	}
	var out []*Target
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
func Shard(ts []*Target, spec string) ([]*Target, error) {
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

// ExpandHome replaces a leading ~/ with the user's home directory.
func ExpandHome(p string) string {
	if strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, p[2:])
		}
	}
	return p
}
