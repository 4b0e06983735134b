// Package fstack builds F-Stack's libfstack.a, FreeBSD 13.0-stable's kernel
// TCP/IP and socket code as a user-space library on DPDK, into lab's cache,
// and says how to build lab's agent against it (build tag fstack, cgo).
//
// Libraries are cached under a directory named by a hash of every input (the
// F-Stack sources, lab's patches, the make flags, the host's DPDK and
// compiler, and a recipe version), so Build returns a cached library at once
// until one of them changes. A library is built in a temporary directory and
// renamed into place, and builds of one library queue on a lock, so an
// interrupted or concurrent build never leaves half a library.
package fstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"lab/internal/dpdk"
	"lab/internal/flock"
)

// Commit is the F-Stack commit lab builds (v1.25; its freebsd/sys/param.h
// says __FreeBSD_version 1300139), from Repository.
const (
	Commit     = "bfad7eec3ed71b1e2f9eb511a477e968a4e77edc"
	Repository = "https://github.com/F-Stack/f-stack.git"
)

// Archive is the file a source directory holds: the F-Stack tree at Commit
// without its bundled DPDK and apps, as one top-level directory f-stack/.
const Archive = "f-stack.tar.xz"

// Tags are the build tags of an agent built against the library.
const Tags = "fstack"

// PrefixEnv is the environment variable that gives an fstack agent run its
// DPDK file prefix (agent/ff_fstack.go reads it; without it each run makes
// its own). A provider that sets it can remove the run's DPDK state with
// RemoveRunState even after killing the agent with SIGKILL, which the
// agent's own supervisor cannot survive.
const PrefixEnv = "LAB_FSTACK_PREFIX"

// Kernel is what the fstack agent reports as its kernel release.
const Kernel = "FreeBSD 13.0-stable (F-Stack bfad7eec, user-space stack)"

// RemoveRunState removes what an fstack agent run with this file prefix
// left in DPDK's directories. F-Stack hands DPDK the prefix as
// container-<prefix> (dpdk_args_setup in lib/ff_config.c).
func RemoveRunState(prefix string) error { return dpdk.RemoveState("container-" + prefix) }

// RunLeftovers lists what that run left, for tests and checks.
func RunLeftovers(prefix string) []string { return dpdk.Leftovers("container-" + prefix) }

// recipeVersion is part of every library's hash. Bump it when the way the
// library is built changes in a way the other inputs do not capture.
// 2: the library keeps sys/sysctl.h beside it (headers).
const recipeVersion = 2

// The patches lab applies, in order, to the F-Stack tree (both are part of
// the hash). extraEAL lets DPDK's EAL take extra arguments from
// $FF_EXTRA_EAL (a null device instead of a NIC). freebsdPorts compiles
// FreeBSD's own choice of local ports for bind and connect instead of
// F-Stack's RSS variant, which defers bind(port 0) to connect.
var (
	//go:embed extra-eal.patch
	extraEAL []byte
	//go:embed freebsd-ports.patch
	freebsdPorts []byte
)

var patches = []struct {
	name string
	body []byte
}{{"extra-eal.patch", extraEAL}, {"freebsd-ports.patch", freebsdPorts}}

// makeArgs are the make variables of the build: no KNI; loopback input
// processed in ff_run()'s loop; a DPDK 23.11 function name spelt as Debian
// 12's DPDK 22.11 spells it.
var makeArgs = []string{"FF_KNI=", "FF_LOOPBACK_SUPPORT=1", "CONF_CFLAGS=-Drte_eth_bond_members_get=rte_eth_bond_slaves_get"}

// headers are the FreeBSD headers (under freebsd/ in the tree) a library
// keeps beside it: the agent's FreeBSD constants are checked against them.
var headers = []string{"sys/socket.h", "sys/sockio.h", "sys/ioccom.h", "sys/filio.h", "sys/poll.h", "sys/errno.h",
	"net/if.h", "netinet/in.h", "netinet6/in6.h", "sys/param.h", "sys/sysctl.h"}

// Config says where the sources are and where the library goes.
type Config struct {
	// Sources are directories that may hold Archive, tried in order (lab
	// passes ../shared/freebsd-fstack beside its checkout and the lab.yaml
	// field). When none does, the tree is cloned from GitURL at GitCommit.
	Sources   []string
	CacheDir  string
	Log       hclog.Logger // nil discards
	Progress  io.Writer    // one line per step; nil discards
	GitURL    string       // default Repository
	GitCommit string       // default Commit
	Jobs      int          // make -j; default the number of CPUs
}

// Lib is a built library. Paths are absolute.
type Lib struct {
	Dir      string // the cache directory holding everything below
	Archive  string // libfstack.a
	Include  string // F-Stack's API headers (ff_api.h ...)
	FreeBSD  string // FreeBSD's headers listed in headers, under their paths
	LDFLAGS  []string
	Log      string // the build's log
	Key      string // hex SHA-256 of every input
	Source   string // where the sources came from
	Commit   string // the F-Stack commit
	Built    time.Time
	Duration time.Duration // how long the build took
}

// StepError is a failed step of a build.
type StepError struct {
	Step string // sources, unpack, patch, make, install
	Log  string // the build log, kept
	Err  error
}

func (e *StepError) Error() string {
	if e.Log == "" {
		return fmt.Sprintf("building F-Stack: step %s: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("building F-Stack: step %s: %v (log: %s)", e.Step, e.Err, e.Log)
}

func (e *StepError) Unwrap() error { return e.Err }

// Need is something the host lacks, with the Debian package that has it.
type Need struct {
	What    string
	Package string
}

// MissingError lists everything the host lacks to build the library.
type MissingError []Need

func (m MissingError) Error() string {
	var parts, pkgs []string
	seen := map[string]bool{}
	for _, n := range m {
		parts = append(parts, n.What)
		if n.Package != "" && !seen[n.Package] {
			seen[n.Package] = true
			pkgs = append(pkgs, n.Package)
		}
	}
	s := "F-Stack cannot be built here: missing " + strings.Join(parts, "; ")
	if len(pkgs) > 0 {
		s += " (Debian: apt-get install --no-install-recommends " + strings.Join(pkgs, " ") + ")"
	}
	return s
}

// Packages are the Debian packages the build needs beyond Go: what
// scripts/setup installs for it.
var Packages = []string{"gcc", "make", "pkg-config", "libdpdk-dev", "libssl-dev", "libnuma-dev", "patch", "xz-utils", "git"}

// tool is a program the build runs, with the package that has it.
type tool struct{ name, pkg string }

var tools = []tool{{"gcc", "gcc"}, {"make", "make"}, {"pkg-config", "pkg-config"}, {"tar", "tar"}, {"xz", "xz-utils"}, {"patch", "patch"}}

// pcModules are the pkg-config modules the build links, with their packages.
var pcModules = []tool{{"libdpdk", "libdpdk-dev"}, {"libcrypto", "libssl-dev"}, {"numa", "libnuma-dev"}}

// Check names everything the host lacks to build the library, before
// anything runs: the tools, DPDK's, OpenSSL's and libnuma's development
// files, and the sources (a source directory with Archive, or git for the
// fallback clone). A nil error means Build can start; the clone may still
// find no network.
func Check(cfg Config) error {
	var missing MissingError
	if runtime.GOOS != "linux" {
		return MissingError{{What: "a Linux host (F-Stack runs on DPDK's Linux EAL), this is " + runtime.GOOS}}
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t.name); err != nil {
			missing = append(missing, Need{What: "the program " + t.name, Package: t.pkg})
		}
	}
	if _, err := exec.LookPath("pkg-config"); err == nil {
		for _, m := range pcModules {
			if exec.Command("pkg-config", "--exists", m.name).Run() != nil {
				missing = append(missing, Need{What: "pkg-config module " + m.name, Package: m.pkg})
			}
		}
	}
	if _, _, err := findSources(cfg.Sources); err != nil {
		if _, gitErr := exec.LookPath("git"); gitErr != nil {
			missing = append(missing, Need{What: "the F-Stack sources (" + err.Error() + ") and git to clone them", Package: "git"})
		}
	}
	if len(missing) > 0 {
		return missing
	}
	return nil
}

// findSources returns the first directory of dirs holding Archive.
func findSources(dirs []string) (dir, archive string, err error) {
	var tried []string
	for _, d := range dirs {
		if d == "" {
			continue
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			continue
		}
		p := filepath.Join(abs, Archive)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return abs, p, nil
		}
		tried = append(tried, p)
	}
	if len(tried) == 0 {
		return "", "", errors.New("no source directory given")
	}
	return "", "", fmt.Errorf("no %s", strings.Join(tried, ", no "))
}

// Build returns the library for cfg from the cache, building it first if no
// library with the same inputs is there. Cancelling ctx stops the build.
func Build(ctx context.Context, cfg Config) (*Lib, error) {
	b, err := newBuilder(cfg)
	if err != nil {
		return nil, err
	}
	return b.build(ctx)
}

// builder is one Build.
type builder struct {
	cfg      Config
	log      hclog.Logger
	progress io.Writer
	root     string // CacheDir/fstack
	logPath  string
	logFile  *os.File
}

func newBuilder(cfg Config) (*builder, error) {
	if err := Check(cfg); err != nil {
		return nil, err
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("building F-Stack: no cache directory")
	}
	cache, err := filepath.Abs(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("F-Stack cache dir: %w", err)
	}
	if cfg.GitURL == "" {
		cfg.GitURL = Repository
	}
	if cfg.GitCommit == "" {
		cfg.GitCommit = Commit
	}
	if cfg.Jobs <= 0 {
		cfg.Jobs = runtime.NumCPU()
	}
	b := &builder{cfg: cfg, log: cfg.Log, progress: cfg.Progress, root: filepath.Join(cache, "fstack")}
	if b.log == nil {
		b.log = hclog.NewNullLogger()
	}
	if b.progress == nil {
		b.progress = io.Discard
	}
	return b, nil
}

func (b *builder) step(format string, args ...any) {
	fmt.Fprintf(b.progress, "freebsd-fstack: "+format+"\n", args...)
	b.log.Info(fmt.Sprintf(format, args...))
	if b.logFile != nil {
		fmt.Fprintf(b.logFile, "==> "+format+"\n", args...)
	}
}

// source is where the tree comes from: an archive, or a clone made into
// the build's work directory.
type source struct {
	dir     string // the source directory, "" for a clone
	archive string
	sum     string // the archive's SHA-256, or "git:<commit>"
	desc    string
}

func (b *builder) build(ctx context.Context) (*Lib, error) {
	if err := os.MkdirAll(b.root, 0o755); err != nil {
		return nil, fmt.Errorf("creating F-Stack cache: %w", err)
	}
	src, err := b.locate(ctx)
	if err != nil {
		return nil, err
	}
	key, err := b.key(ctx, src)
	if err != nil {
		return nil, &StepError{Step: "sources", Err: err}
	}
	final := filepath.Join(b.root, key[:16])
	if lib, err := load(final); err == nil {
		b.step("cached: %s", final)
		return lib, nil
	}
	unlock, err := flock.Lock(ctx, final+".lock")
	if err != nil {
		return nil, fmt.Errorf("building F-Stack: %w", err)
	}
	defer unlock()
	if lib, err := load(final); err == nil { // another process built it meanwhile
		b.step("cached: %s (built by another process)", final)
		return lib, nil
	}
	return b.make(ctx, src, key, final)
}

// locate finds the sources: the first source directory with Archive, else
// a clone, checked here only for git and left to make.
func (b *builder) locate(ctx context.Context) (*source, error) {
	dir, archive, err := findSources(b.cfg.Sources)
	if err == nil {
		sum, err := fileSHA256(archive)
		if err != nil {
			return nil, &StepError{Step: "sources", Err: err}
		}
		b.step("sources: %s", archive)
		return &source{dir: dir, archive: archive, sum: sum, desc: archive}, nil
	}
	b.step("sources: %v; will clone %s at %s", err, b.cfg.GitURL, short(b.cfg.GitCommit))
	return &source{sum: "git:" + b.cfg.GitCommit, desc: b.cfg.GitURL + "@" + b.cfg.GitCommit}, nil
}

// key hashes every input of the build.
func (b *builder) key(ctx context.Context, src *source) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "recipe %d\nsource %s\n", recipeVersion, src.sum)
	for _, p := range patches {
		s := sha256.Sum256(p.body)
		fmt.Fprintf(h, "patch %s %x\n", p.name, s)
	}
	fmt.Fprintf(h, "make %q\n", makeArgs)
	dpdk, err := output(ctx, "pkg-config", "--modversion", "libdpdk")
	if err != nil {
		return "", fmt.Errorf("asking pkg-config for DPDK's version: %w", err)
	}
	cc, err := output(ctx, "gcc", "--version")
	if err != nil {
		return "", fmt.Errorf("asking gcc for its version: %w", err)
	}
	cc, _, _ = strings.Cut(cc, "\n")
	fmt.Fprintf(h, "dpdk %s\ncc %s\narch %s\n", dpdk, cc, runtime.GOARCH)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// make builds the library into a temporary directory beside final and
// renames it into place.
func (b *builder) make(ctx context.Context, src *source, key, final string) (lib *Lib, err error) {
	start := time.Now()
	b.logPath = final + ".log"
	if b.logFile, err = os.Create(b.logPath); err != nil {
		return nil, fmt.Errorf("building F-Stack: creating log: %w", err)
	}
	defer func() {
		b.logFile.Close()
		b.logFile = nil
		if err == nil {
			os.Remove(b.logPath) // kept in the library's directory
		}
	}()
	work, err := os.MkdirTemp(b.root, "tmp-"+key[:16]+"-")
	if err != nil {
		return nil, fmt.Errorf("building F-Stack: %w", err)
	}
	defer os.RemoveAll(work)
	fail := func(step string, err error) (*Lib, error) {
		fmt.Fprintf(b.logFile, "==> step %s failed: %v\n", step, err)
		return nil, &StepError{Step: step, Log: b.logPath, Err: err}
	}

	tree := filepath.Join(work, "f-stack")
	if src.archive != "" {
		b.step("unpack %s", filepath.Base(src.archive))
		if err := b.run(ctx, work, "tar", "-xJf", src.archive); err != nil {
			return fail("unpack", fmt.Errorf("%s is damaged or not an xz tar archive: %w", src.archive, err))
		}
		if fi, err := os.Stat(filepath.Join(tree, "lib", "Makefile")); err != nil || !fi.Mode().IsRegular() {
			return fail("unpack", fmt.Errorf("%s holds no f-stack/lib/Makefile", src.archive))
		}
	} else {
		b.step("clone %s at %s", b.cfg.GitURL, short(b.cfg.GitCommit))
		if err := b.clone(ctx, tree); err != nil {
			return fail("clone", fmt.Errorf("no source directory has %s (%v), and cloning %s failed: %w", Archive, b.cfg.Sources, b.cfg.GitURL, err))
		}
	}
	b.step("patch: %s", patchNames())
	for _, p := range patches {
		pf := filepath.Join(work, p.name)
		if err := os.WriteFile(pf, p.body, 0o644); err != nil {
			return fail("patch", err)
		}
		if err := b.run(ctx, tree, "patch", "-p1", "--forward", "--batch", "-i", pf); err != nil {
			return fail("patch", fmt.Errorf("%s does not apply: %w", p.name, err))
		}
	}
	b.step("make -j%d in lib/ (1-2.5 min on 2 cores)", b.cfg.Jobs)
	args := append([]string{"-j", fmt.Sprint(b.cfg.Jobs)}, makeArgs...)
	if err := b.run(ctx, filepath.Join(tree, "lib"), "make", args...); err != nil {
		return fail("make", err)
	}
	b.step("install into %s", final)
	out := filepath.Join(work, "out")
	if err := b.install(ctx, tree, out); err != nil {
		return fail("install", err)
	}
	commit := b.cfg.GitCommit
	if src.archive != "" {
		commit = Commit // what the archive is declared to be
	}
	m := manifest{Key: key, Source: src.desc, Commit: commit, Built: time.Now().UTC(), Duration: time.Since(start)}
	if err := writeJSON(filepath.Join(out, "manifest.json"), m); err != nil {
		return fail("install", err)
	}
	b.logFile.Sync()
	if err := copyFile(b.logPath, filepath.Join(out, "build.log")); err != nil {
		return fail("install", err)
	}
	if err := os.Rename(out, final); err != nil {
		return fail("install", err)
	}
	b.step("built in %s", time.Since(start).Round(time.Second))
	return load(final)
}

// clone fetches the tree at the pinned commit, and nothing else.
func (b *builder) clone(ctx context.Context, tree string) error {
	env := []string{"GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false"}
	steps := []struct {
		what string
		args []string
	}{
		{"git init", []string{"init", "-q", tree}},
		{"git fetch", []string{"-C", tree, "fetch", "-q", "--depth", "1", b.cfg.GitURL, b.cfg.GitCommit}},
		{"git checkout", []string{"-C", tree, "checkout", "-q", "FETCH_HEAD"}},
	}
	for _, st := range steps {
		fmt.Fprintf(b.logFile, "$ git %s\n", strings.Join(st.args, " "))
		cmd := exec.CommandContext(ctx, "git", st.args...)
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stdout = b.logFile
		cmd.Stderr = io.MultiWriter(b.logFile, &stderr)
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w: %s", st.what, err, strings.TrimSpace(stderr.String()))
		}
	}
	head, err := output(ctx, "git", "-C", tree, "rev-parse", "HEAD")
	if err != nil {
		return err
	}
	if head != b.cfg.GitCommit {
		return fmt.Errorf("checked out %s, want %s", head, b.cfg.GitCommit)
	}
	return nil
}

// install copies the library, its API headers, FreeBSD's headers the agent
// needs, and the link flags into out.
func (b *builder) install(ctx context.Context, tree, out string) error {
	lib := filepath.Join(tree, "lib")
	for _, d := range []string{"include", "freebsd"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(filepath.Join(lib, "libfstack.a"), filepath.Join(out, "libfstack.a")); err != nil {
		return err
	}
	for _, h := range []string{"ff_api.h", "ff_event.h", "ff_errno.h", "ff_epoll.h"} {
		if err := copyFile(filepath.Join(lib, h), filepath.Join(out, "include", h)); err != nil {
			return err
		}
	}
	for _, h := range headers {
		dst := filepath.Join(out, "freebsd", h)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := copyFile(filepath.Join(tree, "freebsd", h), dst); err != nil {
			return err
		}
	}
	libs, err := output(ctx, "pkg-config", "--libs", "libdpdk")
	if err != nil {
		return fmt.Errorf("pkg-config --libs libdpdk: %w", err)
	}
	// The libraries libfstack.a needs after it; load puts -L<dir>
	// -lfstack first. No --whole-archive: Go passes CGO_LDFLAGS once per
	// cgo package, and the archive's FreeBSD part is one relocatable object
	// (libfstack.ro, with every SYSINIT) that the first reference pulls in
	// whole.
	flags := append(strings.Fields(libs), "-lrte_net_bond", "-lrt", "-lm", "-ldl", "-lcrypto", "-pthread", "-lnuma")
	return os.WriteFile(filepath.Join(out, "LDFLAGS"), []byte(strings.Join(flags, " ")+"\n"), 0o644)
}

// manifest records a build in its directory.
type manifest struct {
	Key      string        `json:"key"`
	Source   string        `json:"source"`
	Commit   string        `json:"commit"`
	Built    time.Time     `json:"built"`
	Duration time.Duration `json:"duration_ns"`
}

// load reads the library in dir, which must be complete.
func load(dir string) (*Lib, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	flags, err := os.ReadFile(filepath.Join(dir, "LDFLAGS"))
	if err != nil {
		return nil, err
	}
	lib := &Lib{
		Dir: dir, Archive: filepath.Join(dir, "libfstack.a"), Include: filepath.Join(dir, "include"),
		FreeBSD: filepath.Join(dir, "freebsd"), Log: filepath.Join(dir, "build.log"),
		Key: m.Key, Source: m.Source, Commit: m.Commit, Built: m.Built, Duration: m.Duration,
	}
	lib.LDFLAGS = append([]string{"-L" + dir, "-lfstack"}, strings.Fields(string(flags))...)
	for _, p := range []string{lib.Archive, filepath.Join(lib.Include, "ff_api.h")} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	return lib, nil
}

// AgentEnv is the environment to add to go build's for an agent linked
// against lib: cgo on, F-Stack's headers and the link flags. Build with
// -tags Tags for this host's GOOS and GOARCH (linux only).
func (lib *Lib) AgentEnv() []string {
	return []string{
		"CGO_ENABLED=1",
		"GOOS=linux",
		"GOARCH=" + runtime.GOARCH,
		"CGO_CFLAGS=-O2 -g -I" + lib.Include,
		"CGO_LDFLAGS=" + strings.Join(lib.LDFLAGS, " "),
	}
}

// BuildAgent builds lab's agent from the lab source tree src against lib
// into out.
func (lib *Lib) BuildAgent(ctx context.Context, src, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", Tags, "-trimpath", "-o", out, "./cmd/lab-agent")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), lib.AgentEnv()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build -tags %s ./cmd/lab-agent against %s: %w: %s", Tags, lib.Dir, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// run runs a build command in dir with its output going to the log.
func (b *builder) run(ctx context.Context, dir, name string, args ...string) error {
	fmt.Fprintf(b.logFile, "$ (cd %s && %s %s)\n", dir, name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = b.logFile, b.logFile
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func patchNames() string {
	var names []string
	for _, p := range patches {
		names = append(names, p.name)
	}
	return strings.Join(names, ", ")
}

func short(commit string) string {
	if len(commit) > 8 {
		return commit[:8]
	}
	return commit
}
