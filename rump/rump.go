// Package rump builds NetBSD's kernel network stack as rump kernel
// libraries: NetBSD's own socket, protocol-control-block, TCP, UDP and
// loopback code (sys/kern/uipc_socket*.c, sys/netinet/in_pcb.c, tcp_*.c,
// udp_usrreq.c, sys/netinet6/in6_pcb.c, ...) compiled to run inside a Linux
// process. lab's agent, built with -tags rump against them (Libs.GoEnv),
// makes its socket calls on that kernel.
//
// Build finds the sources (two archives beside lab's checkout, or git clones
// of the two public repositories at the pinned commits), builds only the
// kernel core and the networking components into lab's cache, keyed by a
// hash of the sources, the build flags and the recipe, and returns the
// cached build at once afterwards. A build runs in a temporary directory and
// is renamed into place, concurrent builds of one key queue on a lock, every
// step is reported with its time, and its output goes to a log that stays in
// the cache.
package rump

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// recipeVersion is part of every build's key. Bump it when the recipe below
// changes in a way its flags do not show, so cached builds are redone.
const recipeVersion = 2

// The sources lab builds from: NetBSD-current of 2016-08-02 ("NetBSD
// 7.99.34") as the rumpkernel project keeps it for rump builds, and the
// build tool for non-NetBSD hosts.
const (
	SrcNetBSDRepo   = "https://github.com/rumpkernel/src-netbsd"
	SrcNetBSDCommit = "82f3a6905f6a3a65ceb3a21046de62437f61e7dd"
	SrcNetBSDDate   = "2016-08-02"
	BuildrumpRepo   = "https://github.com/rumpkernel/buildrump.sh"
	BuildrumpCommit = "6cccd464a9675ce19eaca569b1c9c2837492038c"
)

// The archives Build looks for in each source dir.
const (
	SrcNetBSDArchive = "src-netbsd.tar.xz"
	BuildrumpArchive = "buildrump.sh.tar.xz"
)

// knownArchives are the SHA-256 of src-netbsd archives made from the pinned
// commit (../shared/netbsd-rump/README.md says how), so a build from one can
// say which commit it is.
var knownArchives = map[string]string{
	"76ab58fe2205f3c9410a401390f7440c8909b19a7404c0f8046fe16f6434c007": "src-netbsd " + SrcNetBSDCommit[:8] + ", " + SrcNetBSDDate,
}

// Config says where the sources are and where the build goes.
type Config struct {
	// Sources are directories to look in, in order, for SrcNetBSDArchive and
	// BuildrumpArchive (lab passes ../shared/netbsd-rump beside its checkout
	// and the lab.yaml field). When none has both, Build clones Repos.
	Sources []string
	// CacheDir is lab's cache; builds go to CacheDir/rump/<key>.
	CacheDir string
	// Repos are the repositories to clone when no source dir has the
	// archives; the zero value means the public ones at the pinned commits.
	Repos Repos
	// Jobs is how many compilations run at once; 0 means one per CPU.
	Jobs int
	// Log gets what Build does; nil discards it.
	Log hclog.Logger
	// Progress gets one line per build step with its time, for people; nil
	// discards them.
	Progress io.Writer
}

// Repos are git repositories and the commits to check out.
type Repos struct {
	SrcNetBSD, SrcNetBSDCommit string
	Buildrump, BuildrumpCommit string
}

func (r Repos) withDefaults() Repos {
	if r.SrcNetBSD == "" {
		r.SrcNetBSD, r.SrcNetBSDCommit = SrcNetBSDRepo, SrcNetBSDCommit
	}
	if r.Buildrump == "" {
		r.Buildrump, r.BuildrumpCommit = BuildrumpRepo, BuildrumpCommit
	}
	return r
}

// Libs is a finished build. Paths are absolute.
type Libs struct {
	Dir        string // the build's cache dir, holding everything below
	LibDir     string // librump*.so and .a
	IncludeDir string // rump/*.h and lab_rump.h, for -I
	// NetBSDInclude holds the NetBSD headers the agent's constants come
	// from (sys/socket.h, sys/errno.h, netinet/in.h, netinet6/in6.h, ...),
	// copied from the sources, for the test that checks them.
	NetBSDInclude string
	BuildLog      string // what the build printed
	// Kernel says what was built, e.g. "NetBSD 7.99.34 (rump kernel,
	// src-netbsd 82f3a690, 2016-08-02)".
	Kernel string
	// Source names the sources: "src-netbsd 82f3a690, 2016-08-02".
	Source string
	Key    string // hex SHA-256 of the sources, flags and recipe
}

// Tags are the build tags of the agent's rump backend.
const Tags = "rump"

// GoEnv is the environment to build lab's agent against the libraries,
// added to the go command's: go build -tags rump ./cmd/lab-agent. The agent
// finds the libraries at run time through the rpath set here, so it runs
// with no LD_LIBRARY_PATH, as long as Dir stays in place.
func (l *Libs) GoEnv() []string {
	return []string{
		"CGO_ENABLED=1",
		"CGO_CFLAGS=-I" + quoteFlag(l.IncludeDir),
		"CGO_LDFLAGS=-L" + quoteFlag(l.LibDir) + " -Wl,-rpath," + quoteFlag(l.LibDir),
	}
}

// BuildAgent builds lab's agent from the source tree src with the rump
// backend against the libraries into out: go build -tags rump with GoEnv.
// The binary finds the libraries through its rpath, so it runs with no
// LD_LIBRARY_PATH while Dir is in place.
func (l *Libs) BuildAgent(ctx context.Context, src, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", Tags, "-o", out, "./cmd/lab-agent")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), l.GoEnv()...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -tags %s ./cmd/lab-agent against %s: %w: %s", Tags, l.Dir, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// CCFlags are the C compiler's flags for a program against the libraries
// (with emit.RumpLinkFlags after them), such as lab repro --emit c's: the
// include and library dirs, and the rpath that finds the libraries at run
// time.
func (l *Libs) CCFlags() []string {
	return []string{"-I" + l.IncludeDir, "-L" + l.LibDir, "-Wl,-rpath," + l.LibDir}
}

// quoteFlag quotes a path for a CGO_*FLAGS value, which the go command
// splits at spaces unless quoted.
func quoteFlag(s string) string {
	if strings.ContainsAny(s, " \t'\"") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}

// The tools a build runs: buildrump.sh's mandatory ones (a C compiler, ar,
// nm, objcopy) and what unpacks the archives or clones the repositories.
// make is not needed: buildrump.sh builds NetBSD's own make (nbmake) first.
var (
	compilerTools = []tool{{"cc", "a C compiler (Debian: apt-get install gcc libc6-dev)"}}
	buildTools    = []tool{
		{"ar", "ar (Debian: apt-get install binutils)"},
		{"nm", "nm (Debian: apt-get install binutils)"},
		{"objcopy", "objcopy (Debian: apt-get install binutils)"},
	}
	archiveTools = []tool{{"tar", "tar"}, {"xz", "xz (Debian: apt-get install xz-utils)"}}
	gitTools     = []tool{{"git", "git (Debian: apt-get install git)"}}
)

type tool struct{ name, what string }

// Check says what this host lacks to build the libraries and the agent
// against them, every missing thing at once, without building or fetching
// anything; nil when nothing is missing. A C compiler is always needed (cgo
// builds the agent with it); the build tools and sources only when the
// cache has no build of the sources found.
func Check(cfg Config) error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("rump kernel libraries are built and run on Linux hosts, not %s", runtime.GOOS)
	}
	var errs []error
	errs = append(errs, missing(compilerTools)...)
	src, err := findSources(cfg.Sources)
	if err == nil {
		if key, err := src.key(); err == nil && cached(cfg.CacheDir, key) {
			return errors.Join(errs...)
		}
		errs = append(errs, missing(buildTools)...)
		errs = append(errs, missing(archiveTools)...)
		return errors.Join(errs...)
	}
	errs = append(errs, missing(buildTools)...)
	if m := missing(gitTools); m != nil {
		errs = append(errs, fmt.Errorf("no NetBSD rump sources: %w, and git, to clone %s and %s, is not installed",
			err, cfg.Repos.withDefaults().SrcNetBSD, cfg.Repos.withDefaults().Buildrump))
	}
	return errors.Join(errs...)
}

func missing(tools []tool) []error {
	var errs []error
	for _, t := range tools {
		if _, err := exec.LookPath(t.name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s is not on PATH", t.what, t.name))
		}
	}
	return errs
}

// sources are the two source trees, as archives or as repositories to clone.
type sources struct {
	srcArchive, brArchive string // paths, when from archives
	srcSum, brSum         string // their SHA-256
	repos                 Repos  // when cloned
}

// findSources looks for both archives in each dir in turn.
func findSources(dirs []string) (*sources, error) {
	var tried []string
	for _, d := range dirs {
		if d == "" {
			continue
		}
		src, br := filepath.Join(d, SrcNetBSDArchive), filepath.Join(d, BuildrumpArchive)
		_, err1 := os.Stat(src)
		_, err2 := os.Stat(br)
		if err1 == nil && err2 == nil {
			abs, err := filepath.Abs(d)
			if err != nil {
				return nil, fmt.Errorf("source dir %s: %w", d, err)
			}
			return &sources{srcArchive: filepath.Join(abs, SrcNetBSDArchive), brArchive: filepath.Join(abs, BuildrumpArchive)}, nil
		}
		tried = append(tried, d)
	}
	if len(tried) == 0 {
		return nil, errors.New("no source dir given")
	}
	return nil, fmt.Errorf("none of %s holds both %s and %s", strings.Join(tried, ", "), SrcNetBSDArchive, BuildrumpArchive)
}

// buildFlags are the recipe's flags, part of the key: GCC 10 and later
// default to -fno-common, which this 2016 tree needs for its host tools and
// its kernel code, and its warnings must not be errors.
var buildFlags = []string{
	"HOST_CFLAGS=-O -fcommon",
	"-r", "-F", "CWARNFLAGS=-Wno-error", "-F", "CFLAGS=-fcommon -Wno-error",
}

// key hashes the sources, the flags, the components and the recipe version.
func (s *sources) key() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "lab rump recipe %d\n", recipeVersion)
	for _, f := range buildFlags {
		fmt.Fprintf(h, "flag %s\n", f)
	}
	for _, c := range components {
		fmt.Fprintf(h, "component %s\n", c)
	}
	if s.srcArchive != "" {
		if s.srcSum == "" {
			var err error
			if s.srcSum, err = fileSum(s.srcArchive); err != nil {
				return "", err
			}
			if s.brSum, err = fileSum(s.brArchive); err != nil {
				return "", err
			}
		}
		fmt.Fprintf(h, "archive %s\narchive %s\n", s.srcSum, s.brSum)
	} else {
		// A commit names its tree, wherever it is cloned from.
		fmt.Fprintf(h, "commit %s\ncommit %s\n", s.repos.SrcNetBSDCommit, s.repos.BuildrumpCommit)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// describe names the sources for Libs.Source.
func (s *sources) describe() string {
	if s.srcArchive == "" {
		c := s.repos.SrcNetBSDCommit
		if c == SrcNetBSDCommit {
			return "src-netbsd " + c[:8] + ", " + SrcNetBSDDate
		}
		return "src-netbsd " + c[:min(8, len(c))] + " from " + s.repos.SrcNetBSD
	}
	if d, ok := knownArchives[s.srcSum]; ok {
		return d
	}
	return "src-netbsd archive sha256 " + s.srcSum[:12]
}

func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hashing the sources: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SharedSources is where lab's CI and developers keep the source archives:
// shared/netbsd-rump beside the checkout.
func SharedSources(checkout string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(checkout)), "shared", "netbsd-rump")
}
