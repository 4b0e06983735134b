package fstack

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lab/internal/flock"
)

// sharedSources is where lab's CI and developers have the F-Stack sources:
// ../shared/freebsd-fstack beside the checkout ($LAB_FSTACK_SOURCES wins).
func sharedSources() []string {
	if d := os.Getenv("LAB_FSTACK_SOURCES"); d != "" {
		return []string{d}
	}
	return []string{"../../shared/freebsd-fstack"}
}

func cacheDir(t testing.TB) string {
	if d := os.Getenv("LAB_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "lab-cache")
}

var (
	libOnce  sync.Once
	libBuilt *Lib
	libErr   error
	libLog   bytes.Buffer
)

// testLib builds (or finds in LAB_CACHE) the library from the shared
// sources, once per test binary. It skips only where the host lacks what
// Check names (scripts/setup installs it).
func testLib(t testing.TB) *Lib {
	t.Helper()
	cfg := Config{Sources: sharedSources(), CacheDir: cacheDir(t), Progress: &libLog}
	if err := Check(cfg); err != nil {
		t.Skip(err)
	}
	libOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		libBuilt, libErr = Build(ctx, cfg)
	})
	if libErr != nil {
		t.Fatalf("%v\n%s", libErr, libLog.String())
	}
	return libBuilt
}

func TestCheckNamesWhatIsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no tools at all
	err := Check(Config{Sources: []string{t.TempDir()}})
	var missing MissingError
	if !errors.As(err, &missing) {
		t.Fatalf("Check with an empty PATH: %v, want a MissingError", err)
	}
	msg := err.Error()
	for _, want := range []string{"the program gcc", "the program make", "the program pkg-config", "the program patch",
		"F-Stack sources", "git", "apt-get install", "xz-utils"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not name %q: %s", want, msg)
		}
	}
}

func TestCheckNamesMissingLibraries(t *testing.T) {
	if _, err := exec.LookPath("pkg-config"); err != nil {
		t.Skip("needs pkg-config")
	}
	// pkg-config that finds no module: every library is missing.
	t.Setenv("PKG_CONFIG_LIBDIR", t.TempDir())
	t.Setenv("PKG_CONFIG_PATH", "")
	err := Check(Config{Sources: sharedSources()})
	for _, want := range []string{"libdpdk-dev", "libssl-dev", "libnuma-dev"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check without pkg-config modules: %v, want it to name %s", err, want)
		}
	}
}

func TestBuildFailsBeforeAnythingRunsWhenToolsAreMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	cache := t.TempDir()
	_, err := Build(context.Background(), Config{Sources: sharedSources(), CacheDir: cache})
	var missing MissingError
	if !errors.As(err, &missing) {
		t.Fatalf("Build: %v, want a MissingError", err)
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 0 {
		t.Errorf("Build wrote %v to the cache before failing", ents)
	}
}

// needTools skips a test that runs the build's first steps where the host
// lacks what Check names.
func needTools(t *testing.T, cfg Config) {
	t.Helper()
	if err := Check(cfg); err != nil {
		t.Skip(err)
	}
}

func TestDamagedArchiveNamesTheStepAndKeepsTheLog(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, Archive), []byte("not an xz archive\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Sources: []string{src}, CacheDir: t.TempDir()}
	needTools(t, cfg)
	var progress bytes.Buffer
	cfg.Progress = &progress
	_, err := Build(context.Background(), cfg)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "unpack" {
		t.Fatalf("Build with a damaged archive: %v, want a failure of step unpack", err)
	}
	if !strings.Contains(err.Error(), "step unpack") || !strings.Contains(err.Error(), se.Log) {
		t.Errorf("the error does not name the step and the log: %v", err)
	}
	log, rerr := os.ReadFile(se.Log)
	if rerr != nil || !bytes.Contains(log, []byte("step unpack failed")) || !bytes.Contains(log, []byte("tar")) {
		t.Errorf("log %s: %v\n%s", se.Log, rerr, log)
	}
	if !strings.Contains(progress.String(), "unpack") {
		t.Errorf("progress did not show the step:\n%s", progress.String())
	}
	// Nothing half-built is left where a library would be.
	ents, _ := filepath.Glob(filepath.Join(cfg.CacheDir, "fstack", "*"))
	for _, e := range ents {
		if fi, _ := os.Stat(e); fi.IsDir() {
			t.Errorf("left %s behind", e)
		}
	}
}

func TestNoSourcesAndNoNetworkSaysBothWereTried(t *testing.T) {
	// A repository URL nothing answers on, as on a machine without
	// internet.
	cfg := Config{Sources: []string{t.TempDir()}, CacheDir: t.TempDir(), GitURL: "http://127.0.0.1:1/F-Stack/f-stack.git"}
	needTools(t, cfg)
	_, err := Build(context.Background(), cfg)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "clone" {
		t.Fatalf("Build: %v, want a failure of step clone", err)
	}
	msg := err.Error()
	for _, want := range []string{"no source directory has " + Archive, cfg.Sources[0], "cloning " + cfg.GitURL, "127.0.0.1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q: %s", want, msg)
		}
	}
}

// TestCloneFallbackBuildsThePinnedCommit clones a local repository holding
// the files lab's patches touch, taken from the real archive: the clone,
// the checkout of the pinned commit and both patches must work, and the
// build then fails at make (the tree has no Makefile), naming that step.
func TestCloneFallbackBuildsThePinnedCommit(t *testing.T) {
	srcs := sharedSources()
	dir, archive, err := findSources(srcs)
	if err != nil {
		t.Skipf("needs the F-Stack archive: %v", err)
	}
	_ = dir
	repo := t.TempDir()
	files := []string{"f-stack/lib/ff_config.c", "f-stack/freebsd/netinet/in_pcb.c", "f-stack/freebsd/netinet/tcp_usrreq.c"}
	unpacked := t.TempDir()
	if out, err := exec.Command("tar", append([]string{"-C", unpacked, "-xJf", archive}, files...)...).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.email=lab@example.org", "-c", "user.name=lab"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	for _, f := range files {
		dst := filepath.Join(repo, strings.TrimPrefix(f, "f-stack/"))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		b, err := os.ReadFile(filepath.Join(unpacked, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(dst, b, 0o644)
	}
	git("add", ".")
	git("commit", "-q", "-m", "pinned")
	pinned := git("rev-parse", "HEAD")
	os.WriteFile(filepath.Join(repo, "later"), []byte("x"), 0o644)
	git("add", ".")
	git("commit", "-q", "-m", "a later commit the build must not use")

	cfg := Config{Sources: []string{t.TempDir()}, CacheDir: t.TempDir(), GitURL: "file://" + repo, GitCommit: pinned}
	needTools(t, cfg)
	var progress bytes.Buffer
	cfg.Progress = &progress
	_, err = Build(context.Background(), cfg)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "make" {
		t.Fatalf("Build from the clone: %v, want it to get to make and fail there\n%s", err, progress.String())
	}
	log, _ := os.ReadFile(se.Log)
	for _, want := range []string{"patch -p1", "extra-eal.patch", "freebsd-ports.patch", "make -j"} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("the log does not show %q:\n%s", want, log)
		}
	}
	if !strings.Contains(progress.String(), "clone file://"+repo) {
		t.Errorf("progress:\n%s", progress.String())
	}

	// A commit the repository lacks fails the clone step.
	cfg.GitCommit = strings.Repeat("0", 40)
	if _, err := Build(context.Background(), cfg); !errors.As(err, &se) || se.Step != "clone" {
		t.Errorf("Build of a missing commit: %v, want a failure of step clone", err)
	}
}

// TestCachedLibraryComesBackAtOnce: a second Build with the same inputs is
// a cache hit, and a changed input (another source directory with another
// archive) is not.
func TestCachedLibraryComesBackAtOnce(t *testing.T) {
	lib := testLib(t)
	var progress bytes.Buffer
	start := time.Now()
	again, err := Build(context.Background(), Config{Sources: sharedSources(), CacheDir: cacheDir(t), Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a cached build took %s", d)
	}
	if again.Dir != lib.Dir || again.Key != lib.Key || !strings.Contains(progress.String(), "cached: "+lib.Dir) {
		t.Errorf("second build %+v, progress %q; want the cached %s", again, progress.String(), lib.Dir)
	}
	for _, p := range []string{lib.Archive, lib.Log, filepath.Join(lib.Include, "ff_api.h"), filepath.Join(lib.FreeBSD, "sys/socket.h")} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	if lib.Commit != Commit || len(lib.LDFLAGS) < 3 || lib.LDFLAGS[0] != "-L"+lib.Dir {
		t.Errorf("lib %+v", lib)
	}

	// The same archive under another name in another directory hashes the
	// same: the key is the content's.
	other := t.TempDir()
	if err := os.Symlink(mustAbs(t, filepath.Join(sharedSources()[0], Archive)), filepath.Join(other, Archive)); err != nil {
		t.Fatal(err)
	}
	b, _ := newBuilder(Config{Sources: []string{other}, CacheDir: cacheDir(t)})
	src, err := b.locate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if key, _ := b.key(context.Background(), src); key != lib.Key {
		t.Errorf("the same archive elsewhere hashes to %s, not %s", key, lib.Key)
	}
	// A clone of the pinned commit is another input.
	if key, _ := b.key(context.Background(), &source{sum: "git:" + Commit}); key == lib.Key {
		t.Error("a clone hashes like the archive")
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestConcurrentBuildWaitsForTheOther: while another process builds a
// library (holds its lock), Build waits, and then returns what that process
// built instead of building it again.
func TestConcurrentBuildWaitsForTheOther(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, Archive), []byte("stands for an archive being built\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Sources: []string{src}, CacheDir: t.TempDir()}
	needTools(t, cfg)
	b, err := newBuilder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(b.root, 0o755)
	s, err := b.locate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	key, err := b.key(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(b.root, key[:16])
	unlock, err := flock.Lock(context.Background(), final+".lock") // the other process
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	cfg.Progress = &progress
	type built struct {
		lib *Lib
		err error
	}
	done := make(chan built, 1)
	go func() { l, err := Build(context.Background(), cfg); done <- built{l, err} }()
	select {
	case r := <-done:
		t.Fatalf("Build returned while another build held the lock: %+v %v", r.lib, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	// The other process finishes: a complete library appears, then the lock
	// is released.
	os.MkdirAll(filepath.Join(final, "include"), 0o755)
	os.WriteFile(filepath.Join(final, "libfstack.a"), []byte("!<arch>\n"), 0o644)
	os.WriteFile(filepath.Join(final, "include", "ff_api.h"), nil, 0o644)
	os.WriteFile(filepath.Join(final, "LDFLAGS"), []byte("-lrte_eal\n"), 0o644)
	writeJSON(filepath.Join(final, "manifest.json"), manifest{Key: key, Commit: Commit})
	unlock()
	select {
	case r := <-done:
		if r.err != nil || r.lib.Dir != final {
			t.Fatalf("Build: %+v %v, want the library the other process built", r.lib, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Build did not return after the lock was released")
	}
	if !strings.Contains(progress.String(), "built by another process") {
		t.Errorf("progress:\n%s", progress.String())
	}
}
