package rump

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"lab/internal/flock"
)

// components are the directories built after the tools, in buildrump.sh's
// order: the rump kernel core and hypercall library, the networking base,
// the net, netinet, netinet6 and local (AF_LOCAL) components, the rump
// headers, and brlib's libnetconfig (rump_pub_netconfig_*, which sets lo0's
// addresses). buildrump.sh's full build also makes every driver and file
// system, which sockets do not need and which takes far longer.
var components = []string{
	"src-netbsd/lib/librumpuser",
	"src-netbsd/lib/librump",
	"src-netbsd/lib/librumpnet",
	"src-netbsd/sys/rump/net/lib/libnet",
	"src-netbsd/sys/rump/net/lib/libnetinet",
	"src-netbsd/sys/rump/net/lib/libnetinet6",
	"src-netbsd/sys/rump/net/lib/liblocal",
	"src-netbsd/sys/rump/include",
	"buildrump.sh/brlib/libnetconfig",
}

// netbsdHeaderDirs are the directories of NetBSD headers copied into
// Libs.NetBSDInclude: where the agent's NetBSD constants come from.
var netbsdHeaderDirs = []string{"sys/sys", "sys/netinet", "sys/netinet6"}

// metaFile records a build in its dir; a dir without it is no build.
const metaFile = "lab-rump.json"

type meta struct {
	Kernel  string `json:"kernel"`
	Source  string `json:"source"`
	Key     string `json:"key"`
	Recipe  int    `json:"recipe"`
	Seconds int    `json:"build_seconds"`
}

// StepError is a build step that failed: which, and where its output is.
type StepError struct {
	Step string // e.g. "tools" or "component src-netbsd/lib/librump"
	Log  string // the build log
	Tail string // its last lines
	Err  error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("building rump kernel libraries: step %s failed: %v; build log: %s\n%s", e.Step, e.Err, e.Log, e.Tail)
}

func (e *StepError) Unwrap() error { return e.Err }

// Build returns the libraries built from the first source dir of cfg that
// holds both archives, else from clones of cfg.Repos; from the cache when
// they were built before. Cancelling ctx stops a build; nothing half-built
// is left in the cache.
func Build(ctx context.Context, cfg Config) (*Libs, error) {
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Jobs <= 0 {
		cfg.Jobs = runtime.NumCPU()
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("rump: no cache dir")
	}
	cacheDir, err := filepath.Abs(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("rump cache dir: %w", err)
	}
	root := filepath.Join(cacheDir, "rump")
	src, srcErr := findSources(cfg.Sources)
	if srcErr != nil {
		src = &sources{repos: cfg.Repos.withDefaults()}
	}
	key, err := src.key()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, key[:16])
	if libs, err := load(dir); err == nil {
		cfg.Log.Debug("using cached rump kernel libraries", "dir", dir)
		return libs, nil
	}
	if err := Check(cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("creating rump cache dir: %w", err)
	}
	// Builders of one key queue here; one that waited finds the build done.
	unlock, ok, err := flock.TryLock(dir + ".lock")
	if err != nil {
		return nil, err
	}
	if !ok {
		fmt.Fprintf(cfg.Progress, "rump: waiting for another build of %s\n", dir)
		if unlock, err = flock.Lock(ctx, dir+".lock"); err != nil {
			return nil, err
		}
	}
	defer unlock()
	if libs, err := load(dir); err == nil {
		return libs, nil
	}
	b := &builder{cfg: cfg, src: src, srcErr: srcErr, key: key, dir: dir, log: cfg.Log.With("rump", key[:16])}
	return b.build(ctx)
}

// cached says a build of key is in cacheDir.
func cached(cacheDir, key string) bool {
	if cacheDir == "" {
		return false
	}
	_, err := load(filepath.Join(cacheDir, "rump", key[:16]))
	return err == nil
}

// load reads the build in dir.
func load(dir string) (*Libs, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, metaFile), err)
	}
	return &Libs{
		Dir:           dir,
		LibDir:        filepath.Join(dir, "lib"),
		IncludeDir:    filepath.Join(dir, "include"),
		NetBSDInclude: filepath.Join(dir, "netbsd"),
		BuildLog:      filepath.Join(dir, "build.log"),
		Kernel:        m.Kernel,
		Source:        m.Source,
		Key:           m.Key,
	}, nil
}

// builder runs one build.
type builder struct {
	cfg    Config
	src    *sources
	srcErr error // why no source dir served, when cloning
	key    string
	dir    string
	log    hclog.Logger

	work    string // sources and objects; removed afterwards
	out     string // the build's dir until it is renamed to dir
	logPath string
	logFile *os.File
	steps   []step
	n       int // steps done
}

type step struct {
	name string
	run  func(ctx context.Context) error
}

func (b *builder) build(ctx context.Context) (*Libs, error) {
	start := time.Now()
	root := filepath.Dir(b.dir)
	removeDebris(b.dir)
	var err error
	if b.out, err = os.MkdirTemp(root, ".build-"+filepath.Base(b.dir)+"-"); err != nil {
		return nil, fmt.Errorf("creating rump build dir: %w", err)
	}
	defer os.RemoveAll(b.out) // after the rename, nothing is there
	b.work = filepath.Join(b.out, "work")
	if err := os.Mkdir(b.work, 0o755); err != nil {
		return nil, fmt.Errorf("creating rump build dir: %w", err)
	}
	// The log lives beside the build until it succeeds, so that a failed
	// build's log outlives its work dir.
	b.logPath = b.dir + ".build.log"
	if b.logFile, err = os.Create(b.logPath); err != nil {
		return nil, fmt.Errorf("creating rump build log: %w", err)
	}
	defer b.logFile.Close()

	b.plan()
	fmt.Fprintf(b.cfg.Progress, "rump: building NetBSD's network stack as rump kernel libraries (%s, %d steps, about 10 minutes on 2 cores); log: %s\n",
		b.src.describe(), len(b.steps), b.logPath)
	b.log.Info("building rump kernel libraries", "source", b.src.describe(), "log", b.logPath)
	for _, s := range b.steps {
		t := time.Now()
		fmt.Fprintf(b.logFile, "\n==> lab: step %d/%d: %s\n", b.n+1, len(b.steps), s.name)
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", err, ctx.Err())
			}
			return nil, &StepError{Step: fmt.Sprintf("%d/%d (%s)", b.n+1, len(b.steps), s.name), Log: b.logPath, Tail: tail(b.logPath, 8), Err: err}
		}
		b.n++
		fmt.Fprintf(b.cfg.Progress, "rump: [%d/%d] %-45s %6.1fs\n", b.n, len(b.steps), s.name, time.Since(t).Seconds())
	}
	kernel, err := kernelName(filepath.Join(b.work, "src-netbsd", "sys", "sys", "param.h"), b.src.describe())
	if err != nil {
		return nil, err
	}
	m := meta{Kernel: kernel, Source: b.src.describe(), Key: b.key, Recipe: recipeVersion, Seconds: int(time.Since(start).Seconds())}
	if err := b.finish(m); err != nil {
		return nil, err
	}
	libs, err := load(b.dir)
	if err != nil {
		return nil, fmt.Errorf("reading the rump build: %w", err)
	}
	fmt.Fprintf(b.cfg.Progress, "rump: built %s in %s: %s\n", kernel, time.Since(start).Round(time.Second), b.dir)
	b.log.Info("rump kernel libraries built", "kernel", kernel, "dir", b.dir, "took", time.Since(start).Round(time.Second))
	return libs, nil
}

// plan lists the recipe's steps: what build.sh in ../shared/netbsd-rump
// does, one named step per command.
func (b *builder) plan() {
	if b.src.srcArchive != "" {
		b.add("unpack "+SrcNetBSDArchive, func(ctx context.Context) error {
			return b.run(ctx, b.work, nil, "tar", "-C", b.work, "-xJf", b.src.srcArchive)
		})
		b.add("unpack "+BuildrumpArchive, func(ctx context.Context) error {
			return b.run(ctx, b.work, nil, "tar", "-C", b.work, "-xJf", b.src.brArchive)
		})
	} else {
		r := b.src.repos
		b.add("clone "+r.SrcNetBSD, func(ctx context.Context) error { return b.clone(ctx, r.SrcNetBSD, r.SrcNetBSDCommit, "src-netbsd") })
		b.add("clone "+r.Buildrump, func(ctx context.Context) error { return b.clone(ctx, r.Buildrump, r.BuildrumpCommit, "buildrump.sh") })
	}
	jobs := strconv.Itoa(b.cfg.Jobs)
	obj := filepath.Join(b.work, "obj")
	b.add("tools (nbmake, toolchain wrappers)", func(ctx context.Context) error {
		args := []string{"./buildrump.sh", "-s", filepath.Join(b.work, "src-netbsd"), "-o", obj, "-d", filepath.Join(b.work, "dest"), "-j", jobs, "-qq"}
		args = append(args, buildFlags[1:]...)
		args = append(args, "tools")
		return b.run(ctx, filepath.Join(b.work, "buildrump.sh"), []string{buildFlags[0]}, args[0], args[1:]...)
	})
	rumpmake := filepath.Join(obj, "tooldir", "bin", "brrumpmake")
	for _, pass := range []string{"obj", "includes"} {
		b.add(pass+" (every component)", func(ctx context.Context) error {
			for _, c := range components {
				if err := b.run(ctx, filepath.Join(b.work, c), nil, rumpmake, pass); err != nil {
					return fmt.Errorf("%s: %w", c, err)
				}
			}
			return nil
		})
	}
	for _, c := range components {
		b.add(strings.TrimPrefix(strings.TrimPrefix(c, "src-netbsd/"), "buildrump.sh/"), func(ctx context.Context) error {
			if err := b.run(ctx, filepath.Join(b.work, c), nil, rumpmake, "-j", jobs, "dependall"); err != nil {
				return err
			}
			return b.run(ctx, filepath.Join(b.work, c), nil, rumpmake, "install")
		})
	}
}

func (b *builder) add(name string, run func(ctx context.Context) error) {
	b.steps = append(b.steps, step{name, run})
}

// clone fetches one commit of url into work/name (a shallow fetch of just
// that commit, which GitHub serves).
func (b *builder) clone(ctx context.Context, url, commit, name string) error {
	dir := filepath.Join(b.work, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	env := []string{"GIT_TERMINAL_PROMPT=0"}
	for _, args := range [][]string{
		{"init", "-q"},
		{"fetch", "-q", "--depth", "1", url, commit},
		{"checkout", "-q", "FETCH_HEAD"},
	} {
		if err := b.run(ctx, dir, env, "git", args...); err != nil {
			if b.srcErr != nil {
				return fmt.Errorf("no NetBSD rump sources: %v, and fetching %s from %s failed: %w", b.srcErr, commit, url, err)
			}
			return err
		}
	}
	return nil
}

// run runs a command in dir with its output in the build log.
func (b *builder) run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	fmt.Fprintf(b.logFile, "==> lab: (cd %s && %s %s)\n", dir, name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = b.logFile, b.logFile
	killGroup(cmd) // make's children go too
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// finish puts the libraries, headers and log into the build's dir and
// renames it into place.
func (b *builder) finish(m meta) error {
	stage := filepath.Join(b.work, "obj", "dest.stage", "usr")
	final := filepath.Join(b.out, "final")
	for _, d := range []string{"lib", "include", "netbsd"} {
		if err := os.MkdirAll(filepath.Join(final, d), 0o755); err != nil {
			return err
		}
	}
	libs, err := filepath.Glob(filepath.Join(stage, "lib", "librump*"))
	if err != nil || len(libs) == 0 {
		return fmt.Errorf("the build installed no librump* into %s", filepath.Join(stage, "lib"))
	}
	for _, l := range libs {
		if err := copyPath(l, filepath.Join(final, "lib", filepath.Base(l))); err != nil {
			return err
		}
	}
	if err := copyTree(filepath.Join(stage, "include", "rump"), filepath.Join(final, "include", "rump"), ""); err != nil {
		return err
	}
	for _, d := range netbsdHeaderDirs {
		if err := copyTree(filepath.Join(b.work, "src-netbsd", d), filepath.Join(final, "netbsd", strings.TrimPrefix(d, "sys/")), ".h"); err != nil {
			return err
		}
	}
	// lab_rump.h tells the agent, built against these libraries, what they
	// are, so its environment can say so.
	h := fmt.Sprintf("/* Written by lab's package rump: what these libraries were built from. */\n#define LAB_RUMP_SOURCE %q\n#define LAB_RUMP_KERNEL %q\n", m.Source, m.Kernel)
	if err := os.WriteFile(filepath.Join(final, "include", "lab_rump.h"), []byte(h), 0o644); err != nil {
		return err
	}
	j, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(final, metaFile), append(j, '\n'), 0o644); err != nil {
		return err
	}
	b.logFile.Close()
	if err := os.Rename(b.logPath, filepath.Join(final, "build.log")); err != nil {
		return err
	}
	if err := os.Rename(final, b.dir); err != nil {
		return fmt.Errorf("putting the rump build in place: %w", err)
	}
	return nil
}

var netbsdVersion = regexp.MustCompile(`(?m)^#define\s+__NetBSD_Version__\s+(\d+)`)

// kernelName reads the kernel's version from the sources' sys/param.h
// (__NetBSD_Version__ is MMmmrrpp00: 799003400 is 7.99.34).
func kernelName(paramH, source string) (string, error) {
	b, err := os.ReadFile(paramH)
	if err != nil {
		return "", fmt.Errorf("reading the kernel's version: %w", err)
	}
	m := netbsdVersion.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s defines no __NetBSD_Version__", paramH)
	}
	v, _ := strconv.Atoi(string(m[1]))
	major, minor, patch := v/100000000, v/1000000%100, v/100%100
	return fmt.Sprintf("NetBSD %d.%d.%d (rump kernel, %s)", major, minor, patch, source), nil
}

// removeDebris deletes the work dirs of builds of dir that were killed
// before they could clean up; only holders of dir's lock make them.
func removeDebris(dir string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".build-"+filepath.Base(dir)+"-*"))
	for _, m := range matches {
		os.RemoveAll(m)
	}
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// copyPath copies a file or symlink.
func copyPath(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm()|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}

// copyTree copies the files of dir src (one level) whose names end in
// suffix into dst.
func copyTree(src, dst, suffix string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		if err := copyPath(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
