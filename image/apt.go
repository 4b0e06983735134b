package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"lab/internal/output"

	"github.com/hashicorp/go-hclog"
)

// debianKeyring holds the keys Debian signs its archive with. Every source gets it as signed-by, so
// apt checks the Release files exactly as it does for the host's own sources; nothing is ever
// marked trusted.
const debianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// listsMaxAge is how long downloaded package lists are used before apt-get update runs again. Within
// it a cached image is found without touching the network.
const listsMaxAge = 24 * time.Hour

// ErrUnavailable means the Debian mirror could not be reached and no package lists were cached.
var ErrUnavailable = errors.New("package mirror unreachable")

// pkg is one Debian binary package at one version.
type pkg struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
}

func (p pkg) String() string { return p.Name + "=" + p.Version }

// debFile is the file name apt-get download gives the package (an epoch's colon becomes %3a).
func (p pkg) debFile() string {
	return fmt.Sprintf("%s_%s_%s.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a"), p.Arch)
}

// aptRepo is one Debian suite seen through apt with a private configuration: its own apt.conf,
// sources.list, lists, package cache and an empty dpkg status. APT_CONFIG points apt at that
// apt.conf, which replaces the host's /etc/apt/apt.conf{,.d} entirely, so the host's apt state
// is neither read nor changed and none of its hooks run.
type aptRepo struct {
	suite, arch, mirror string
	dir                 string // private apt configuration and state
	debDir              string // downloaded .debs of the suite, shared by all its images
	log                 hclog.Logger
}

func newAptRepo(cacheDir string, spec Spec, log hclog.Logger) *aptRepo {
	sum := sha256.Sum256([]byte(spec.Mirror))
	return &aptRepo{
		suite:  spec.Suite,
		arch:   spec.Arch,
		mirror: spec.Mirror,
		dir:    filepath.Join(cacheDir, "apt", fmt.Sprintf("%s-%s-%s", spec.Suite, spec.Arch, hex.EncodeToString(sum[:4]))),
		debDir: filepath.Join(cacheDir, "debs", spec.Suite+"-"+spec.Arch),
		log:    log,
	}
}

func (r *aptRepo) conf() string     { return filepath.Join(r.dir, "apt.conf") }
func (r *aptRepo) listsDir() string { return filepath.Join(r.dir, "state", "lists") }
func (r *aptRepo) lockPath() string { return filepath.Join(r.dir, "lab.lock") }

// setup writes the private configuration. It is rewritten on every build because it is cheap and
// keeps an old cache working after this file changes.
func (r *aptRepo) setup() error {
	if _, err := os.Stat(debianKeyring); err != nil {
		return fmt.Errorf("looking for Debian's archive keyring (apt-get install debian-archive-keyring): %w", err)
	}
	for _, d := range []string{
		filepath.Join(r.listsDir(), "partial"),
		filepath.Join(r.dir, "cache", "archives", "partial"),
		filepath.Join(r.dir, "parts"),
		filepath.Join(r.dir, "log"),
		r.debDir,
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// An empty dpkg status: apt resolves dependencies as for an empty system.
	if err := writeIfChanged(filepath.Join(r.dir, "state", "status"), ""); err != nil {
		return err
	}
	sources := fmt.Sprintf("deb [arch=%s signed-by=%s] %s %s main\n", r.arch, debianKeyring, r.mirror, r.suite)
	if err := writeIfChanged(filepath.Join(r.dir, "sources.list"), sources); err != nil {
		return err
	}
	return writeIfChanged(r.conf(), r.aptConf())
}

// writeIfChanged leaves an unchanged file alone: apt rebuilds its package cache whenever the
// status file or sources look newer than it, which would cost every cache hit a second.
func writeIfChanged(name, content string) error {
	if b, err := os.ReadFile(name); err == nil && string(b) == content {
		return nil
	}
	return os.WriteFile(name, []byte(content), 0o644)
}

func (r *aptRepo) aptConf() string {
	opts := [][2]string{
		{"Dir::Etc::Main", "/dev/null"},
		{"Dir::Etc::Parts", filepath.Join(r.dir, "parts")},
		{"Dir::Etc::SourceList", filepath.Join(r.dir, "sources.list")},
		{"Dir::Etc::SourceParts", "/dev/null"},
		{"Dir::Etc::Preferences", "/dev/null"},
		{"Dir::Etc::PreferencesParts", "/dev/null"},
		{"Dir::State", filepath.Join(r.dir, "state")},
		{"Dir::State::status", filepath.Join(r.dir, "state", "status")},
		{"Dir::Cache", filepath.Join(r.dir, "cache")},
		{"Dir::Log", filepath.Join(r.dir, "log")},
		{"APT::Architecture", r.arch},
		{"APT::Architectures", r.arch},
		{"APT::Install-Recommends", "false"},
		{"APT::Get::AllowUnauthenticated", "false"},
		{"Acquire::AllowInsecureRepositories", "false"},
		{"Acquire::Languages", "none"},
	}
	if os.Geteuid() == 0 {
		// As root apt drops to the _apt user to download, and _apt cannot write into a cache dir
		// owned by the caller. Downloads are checked against the signed index either way.
		opts = append(opts, [2]string{"APT::Sandbox::User", "root"})
	}
	var b strings.Builder
	for _, o := range opts {
		fmt.Fprintf(&b, "%s %q;\n", o[0], o[1])
	}
	return b.String()
}

// command runs an apt tool with the private configuration and returns its standard output.
func (r *aptRepo) command(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "APT_CONFIG="+r.conf(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", tool, args[0], ctx.Err())
		}
		return nil, fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, output.Tail(stderr.String(), 5))
	}
	return stdout.Bytes(), nil
}

// listsAge reports how old the suite's package lists are, or false if there are none.
func (r *aptRepo) listsAge() (time.Duration, bool) {
	matches, _ := filepath.Glob(filepath.Join(r.listsDir(), "*_InRelease"))
	var newest time.Time
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	if newest.IsZero() {
		return 0, false
	}
	return time.Since(newest), true
}

// refresh runs apt-get update when the lists are missing, older than listsMaxAge, or force is set.
// When the mirror cannot be reached but older lists exist, they are used with a warning so a
// machine that is offline can still find its cached images.
func (r *aptRepo) refresh(ctx context.Context, force bool) error {
	age, have := r.listsAge()
	if have && !force && age < listsMaxAge {
		return nil
	}
	r.log.Info("updating package lists", "suite", r.suite, "mirror", r.mirror)
	_, err := r.command(ctx, r.dir, "apt-get", "update", "--error-on=any", "-q")
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	if have {
		r.log.Warn("apt-get update failed; using older package lists", "suite", r.suite, "age", age.Round(time.Minute), "error", err)
		return nil
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// show returns the control fields of the candidate version of a package.
func (r *aptRepo) show(ctx context.Context, name string) (map[string]string, error) {
	out, err := r.command(ctx, r.dir, "apt-cache", "show", "--no-all-versions", name)
	if err != nil {
		return nil, fmt.Errorf("looking up %s in %s: %w", name, r.suite, err)
	}
	rec := parseControl(out)
	if rec["Package"] == "" || rec["Version"] == "" {
		return nil, fmt.Errorf("looking up %s in %s: no such package", name, r.suite)
	}
	return rec, nil
}

// kernelImageDep matches a dependency on a versioned kernel image package, which is how Debian's
// kernel metapackages (linux-image-cloud-amd64) point at the real one.
var kernelImageDep = regexp.MustCompile(`^linux-image-[0-9]`)

// resolveKernel follows metapackages to the package that holds the kernel itself.
func (r *aptRepo) resolveKernel(ctx context.Context, name string) (pkg, error) {
	m := r.loadMemo()
	if p, ok := m.Kernel[name]; ok {
		return p, nil
	}
	p, err := r.resolveKernelUncached(ctx, name)
	if err == nil {
		m.Kernel[name] = p
		r.saveMemo(m)
	}
	return p, err
}

func (r *aptRepo) resolveKernelUncached(ctx context.Context, name string) (pkg, error) {
	for range 4 {
		rec, err := r.show(ctx, name)
		if err != nil {
			return pkg{}, err
		}
		next := ""
		for _, d := range parseDepends(rec["Depends"]) {
			if kernelImageDep.MatchString(d) {
				next = d
				break
			}
		}
		if next == "" {
			return pkg{Name: rec["Package"], Version: rec["Version"], Arch: rec["Architecture"]}, nil
		}
		r.log.Debug("kernel metapackage", "package", name, "depends", next)
		name = next
	}
	return pkg{}, fmt.Errorf("resolving kernel package %s: metapackages nest too deep", name)
}

// closure returns the named packages and everything they depend on (no recommends), as apt
// resolves it against an empty system, so every library the guest's programs need is in it.
func (r *aptRepo) closure(ctx context.Context, names []string) ([]pkg, error) {
	m := r.loadMemo()
	key := strings.Join(names, " ")
	if pkgs, ok := m.Closure[key]; ok {
		return pkgs, nil
	}
	pkgs, err := r.closureUncached(ctx, names)
	if err == nil {
		m.Closure[key] = pkgs
		r.saveMemo(m)
	}
	return pkgs, err
}

func (r *aptRepo) closureUncached(ctx context.Context, names []string) ([]pkg, error) {
	args := append([]string{"install", "-s", "-q", "--no-install-recommends"}, names...)
	out, err := r.command(ctx, r.dir, "apt-get", args...)
	if err != nil {
		return nil, fmt.Errorf("resolving dependencies of %s in %s: %w", strings.Join(names, " "), r.suite, err)
	}
	pkgs := parseSimulation(out)
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("resolving dependencies of %s in %s: apt planned nothing", strings.Join(names, " "), r.suite)
	}
	return pkgs, nil
}

// memo keeps what apt resolved against one state of the package lists. Resolving takes apt about
// a second per suite; with the memo a cache hit costs a few stats.
type memo struct {
	Stamp   string           `json:"stamp"` // of the lists and configuration it was resolved against
	Kernel  map[string]pkg   `json:"kernel"`
	Closure map[string][]pkg `json:"closure"`
}

func (r *aptRepo) memoPath() string { return filepath.Join(r.dir, "resolved.json") }

// listsStamp changes whenever apt-get update changes the lists or the configuration changes.
func (r *aptRepo) listsStamp() string {
	h := sha256.New()
	conf, _ := os.ReadFile(r.conf())
	h.Write(conf)
	entries, _ := os.ReadDir(r.listsDir())
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			fmt.Fprintf(h, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// loadMemo returns the memo if it matches the current lists, else an empty one.
func (r *aptRepo) loadMemo() *memo {
	stamp := r.listsStamp()
	var m memo
	if b, err := os.ReadFile(r.memoPath()); err == nil && json.Unmarshal(b, &m) == nil && m.Stamp == stamp {
		return &m
	}
	return &memo{Stamp: stamp, Kernel: map[string]pkg{}, Closure: map[string][]pkg{}}
}

// saveMemo writes the memo atomically; failing to write it only costs time later.
func (r *aptRepo) saveMemo(m *memo) {
	b, err := json.Marshal(m)
	if err == nil {
		tmp := r.memoPath() + ".tmp"
		if err = os.WriteFile(tmp, b, 0o644); err == nil {
			err = os.Rename(tmp, r.memoPath())
		}
	}
	if err != nil {
		r.log.Warn("saving resolved packages", "error", err)
	}
}

// debPath is where a package's .deb is cached.
func (r *aptRepo) debPath(p pkg) string { return filepath.Join(r.debDir, p.debFile()) }

// download fetches the packages not yet cached with apt-get download, which checks each file
// against the signed index. Files land in a private temporary dir first and are renamed into the
// cache, so an interrupted download never leaves a partial .deb under a final name.
func (r *aptRepo) download(ctx context.Context, pkgs []pkg) error {
	var missing []pkg
	for _, p := range pkgs {
		if _, err := os.Stat(r.debPath(p)); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	r.removeStaleDownloads()
	tmp, err := os.MkdirTemp(r.debDir, ".download-")
	if err != nil {
		return fmt.Errorf("downloading packages: %w", err)
	}
	defer os.RemoveAll(tmp)
	args := []string{"download", "-q"}
	for _, p := range missing {
		args = append(args, p.String())
	}
	r.log.Info("downloading packages", "suite", r.suite, "count", len(missing))
	if _, err := r.command(ctx, tmp, "apt-get", args...); err != nil {
		return &downloadError{fmt.Errorf("downloading %d packages from %s: %w", len(missing), r.suite, err)}
	}
	for _, p := range missing {
		if err := os.Rename(filepath.Join(tmp, p.debFile()), r.debPath(p)); err != nil {
			return fmt.Errorf("caching %s: %w", p, err)
		}
	}
	return nil
}

// removeStaleDownloads deletes download dirs that a killed build left behind. The .deb cache is
// shared by every mirror of a suite, whose builds hold different locks, so only dirs older than
// any download could take are removed.
func (r *aptRepo) removeStaleDownloads() {
	matches, _ := filepath.Glob(filepath.Join(r.debDir, ".download-*"))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && time.Since(fi.ModTime()) > 24*time.Hour {
			os.RemoveAll(m)
		}
	}
}

// downloadError marks a failed download, which stale package lists can cause: the mirror has
// dropped the version the lists name. Build refreshes the lists once and tries again.
type downloadError struct{ err error }

func (e *downloadError) Error() string { return e.err.Error() }
func (e *downloadError) Unwrap() error { return e.err }

// parseControl returns the fields of the first paragraph of a Debian control file.
func parseControl(b []byte) map[string]string {
	rec := map[string]string{}
	key := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if len(rec) > 0 {
				return rec
			}
		case line[0] == ' ' || line[0] == '\t':
			if key != "" {
				rec[key] += "\n" + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			key = k
			rec[k] = strings.TrimSpace(v)
		}
	}
	return rec
}

// parseDepends returns the package names of a Depends field, taking the first of each set of
// alternatives and dropping version constraints and architecture qualifiers.
func parseDepends(field string) []string {
	var names []string
	for _, clause := range strings.Split(field, ",") {
		alt, _, _ := strings.Cut(clause, "|")
		fields := strings.Fields(alt)
		if len(fields) == 0 {
			continue
		}
		name, _, _ := strings.Cut(fields[0], ":")
		names = append(names, name)
	}
	return names
}

// instLine matches what apt-get -s prints for each package it would install, e.g.
// "Inst libc6 (2.36-9+deb12u9 Debian:12.9/stable [amd64])".
var instLine = regexp.MustCompile(`^Inst (\S+) (?:\[\S+\] )?\((\S+) .*\[(\S+)\]\)`)

// parseSimulation returns the packages an apt-get -s install would install, sorted by name.
func parseSimulation(b []byte) []pkg {
	var pkgs []pkg
	for _, line := range strings.Split(string(b), "\n") {
		if m := instLine.FindStringSubmatch(line); m != nil {
			pkgs = append(pkgs, pkg{Name: m[1], Version: m[2], Arch: m[3]})
		}
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	return pkgs
}
