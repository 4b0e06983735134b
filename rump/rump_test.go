package rump_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lab/internal/flock"
	"lab/internal/testenv"
	"lab/rump"
)

// cacheDir is lab's cache for these tests: $LAB_CACHE when set (CI sets it,
// so the libraries are built once per machine), else a temporary dir, in
// which every run builds them from nothing.
var cacheDir string

func TestMain(m *testing.M) {
	flag.Parse()
	cacheDir = os.Getenv("LAB_CACHE")
	temporary := cacheDir == ""
	if temporary {
		d, err := os.MkdirTemp("", "lab-rump-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cacheDir = d
	}
	code := m.Run()
	if temporary {
		os.RemoveAll(cacheDir)
	}
	atExit.Lock()
	for _, d := range atExit.dirs {
		os.RemoveAll(d)
	}
	atExit.Unlock()
	os.Exit(code)
}

// atExit are directories the tests made that outlive a single test (the
// agent builds they share), removed when the test binary ends.
var atExit struct {
	sync.Mutex
	dirs []string
}

func removeAtExit(dir string) {
	atExit.Lock()
	defer atExit.Unlock()
	atExit.dirs = append(atExit.dirs, dir)
}

// sharedSources is ../shared/netbsd-rump beside the checkout, where lab's
// CI and developers have the source archives.
func sharedSources(t testing.TB) string {
	t.Helper()
	checkout, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return rump.SharedSources(checkout)
}

// progressLog collects Build's progress lines and echoes them to the test
// log, so a cold build (minutes) shows what it is doing under -v.
type progressLog struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (p *progressLog) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.t.Log(strings.TrimRight(string(b), "\n"))
	return p.b.Write(b)
}

func (p *progressLog) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.String()
}

var (
	libsOnce sync.Once
	libs     *rump.Libs
	libsErr  error
)

// buildLibs builds the libraries from the shared sources into cacheDir
// once per test binary: for real, the first time on a machine.
func buildLibs(t testing.TB) *rump.Libs {
	t.Helper()
	testenv.NeedTools(t, "cc", "tar", "xz")
	libsOnce.Do(func() {
		p := &progressLog{t: t}
		start := time.Now()
		libs, libsErr = rump.Build(context.Background(), rump.Config{
			Sources: []string{sharedSources(t)}, CacheDir: cacheDir, Progress: p,
		})
		if libsErr == nil && p.String() != "" {
			t.Logf("cold build of the rump kernel libraries: %s", time.Since(start).Round(time.Second))
		}
	})
	if libsErr != nil {
		t.Fatalf("building the rump kernel libraries: %v", libsErr)
	}
	return libs
}

func TestBuildThenCacheHit(t *testing.T) {
	first := buildLibs(t)
	for _, f := range []string{"librump.so", "librumpnet_netinet.so", "librumpnet_netinet6.so", "librumpnet_config.so", "librumpuser.so"} {
		if _, err := os.Stat(filepath.Join(first.LibDir, f)); err != nil {
			t.Errorf("the build has no %s: %v", f, err)
		}
	}
	for _, f := range []string{"rump/rump.h", "rump/rump_syscalls.h", "rump/netconfig.h", "lab_rump.h"} {
		if _, err := os.Stat(filepath.Join(first.IncludeDir, f)); err != nil {
			t.Errorf("the build has no include/%s: %v", f, err)
		}
	}
	if _, err := os.Stat(first.BuildLog); err != nil {
		t.Errorf("the build log is not kept: %v", err)
	}
	const want = "NetBSD 7.99.34 (rump kernel, src-netbsd 82f3a690, 2016-08-02)"
	if first.Kernel != want {
		t.Errorf("Kernel = %q, want %q", first.Kernel, want)
	}

	var progress bytes.Buffer
	start := time.Now()
	again, err := rump.Build(context.Background(), rump.Config{Sources: []string{sharedSources(t)}, CacheDir: cacheDir, Progress: &progress})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if again.Dir != first.Dir || progress.Len() != 0 {
		t.Errorf("second Build: dir %s (first %s), progress %q: want the cached build, no step run", again.Dir, first.Dir, progress.String())
	}
	t.Logf("cache hit in %s (hashing the two archives included)", took.Round(time.Millisecond))
}

// TestCheckNamesMissingCompiler hides the C compiler with PATH.
func TestCheckNamesMissingCompiler(t *testing.T) {
	bin := t.TempDir()
	for _, tool := range []string{"tar", "xz", "ar", "nm", "objcopy", "git"} {
		if p, err := exec.LookPath(tool); err == nil {
			os.Symlink(p, filepath.Join(bin, tool))
		}
	}
	t.Setenv("PATH", bin)
	err := rump.Check(rump.Config{Sources: []string{sharedSources(t)}, CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "a C compiler") || !strings.Contains(err.Error(), "cc is not on PATH") {
		t.Fatalf("Check without cc on PATH: %v, want it to name the C compiler", err)
	}
	_, err = rump.Build(context.Background(), rump.Config{Sources: []string{sharedSources(t)}, CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "cc is not on PATH") {
		t.Fatalf("Build without cc on PATH: %v, want Check's error before anything runs", err)
	}
}

// TestBrokenArchiveNamesStep builds from a truncated src-netbsd archive: the
// build fails at its unpack step, names it and the log, and leaves nothing
// in the cache but that log.
func TestBrokenArchiveNamesStep(t *testing.T) {
	testenv.NeedTools(t, "cc", "tar", "xz")
	src := t.TempDir()
	whole, err := os.ReadFile(filepath.Join(sharedSources(t), rump.SrcNetBSDArchive))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, rump.SrcNetBSDArchive), whole[:len(whole)/3], 0o644)
	br, _ := os.ReadFile(filepath.Join(sharedSources(t), rump.BuildrumpArchive))
	os.WriteFile(filepath.Join(src, rump.BuildrumpArchive), br, 0o644)
	cache := t.TempDir()
	var progress bytes.Buffer
	_, err = rump.Build(context.Background(), rump.Config{Sources: []string{src}, CacheDir: cache, Progress: &progress})
	var se *rump.StepError
	if !errors.As(err, &se) {
		t.Fatalf("Build from a truncated archive: %v, want a *rump.StepError", err)
	}
	if !strings.Contains(se.Step, "unpack "+rump.SrcNetBSDArchive) {
		t.Errorf("failed step %q, want the unpack of %s", se.Step, rump.SrcNetBSDArchive)
	}
	if !strings.Contains(err.Error(), se.Log) {
		t.Errorf("the error does not name the log %s: %v", se.Log, err)
	}
	log, rerr := os.ReadFile(se.Log)
	if rerr != nil || !bytes.Contains(log, []byte("xz")) && !bytes.Contains(log, []byte("Unexpected EOF")) {
		t.Errorf("the log %s does not hold tar's complaint (%v):\n%s", se.Log, rerr, log)
	}
	left, _ := filepath.Glob(filepath.Join(cache, "rump", "*"))
	for _, l := range left {
		if l != se.Log && !strings.HasSuffix(l, ".lock") {
			t.Errorf("a failed build left %s in the cache", l)
		}
	}
	t.Logf("error: %v", err)
}

// TestNoSourcesGitUnreachable: no source dir holds the archives and the
// repositories do not answer (a port nothing listens on): one error that says
// both were tried.
func TestNoSourcesGitUnreachable(t *testing.T) {
	testenv.NeedTools(t, "cc", "git")
	empty := t.TempDir()
	start := time.Now()
	_, err := rump.Build(context.Background(), rump.Config{
		Sources:  []string{empty},
		CacheDir: t.TempDir(),
		Repos: rump.Repos{
			SrcNetBSD: "http://127.0.0.1:1/rumpkernel/src-netbsd", SrcNetBSDCommit: rump.SrcNetBSDCommit,
			Buildrump: "http://127.0.0.1:1/rumpkernel/buildrump.sh", BuildrumpCommit: rump.BuildrumpCommit,
		},
		Progress: io.Discard,
	})
	if err == nil {
		t.Fatal("Build with no sources and no reachable repository succeeded")
	}
	for _, want := range []string{empty, rump.SrcNetBSDArchive, "http://127.0.0.1:1/rumpkernel/src-netbsd", "git fetch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not mention %q: %v", want, err)
		}
	}
	t.Logf("failed in %s: %v", time.Since(start).Round(time.Millisecond), err)
}

// TestConcurrentBuildQueues: a Build that finds another build of its key
// running waits for it and then takes what it built. The test holds the lock
// itself and, while Build waits, puts a finished build (a copy of the real
// one) where the key's build goes.
func TestConcurrentBuildQueues(t *testing.T) {
	real := buildLibs(t)
	src := t.TempDir()
	whole, err := os.ReadFile(filepath.Join(sharedSources(t), rump.SrcNetBSDArchive))
	if err != nil {
		t.Fatal(err)
	}
	// Sources of their own, so the key is theirs: a broken archive, which a
	// build that did not wait would fail on.
	os.WriteFile(filepath.Join(src, rump.SrcNetBSDArchive), whole[:len(whole)/10], 0o644)
	br, _ := os.ReadFile(filepath.Join(sharedSources(t), rump.BuildrumpArchive))
	os.WriteFile(filepath.Join(src, rump.BuildrumpArchive), br, 0o644)
	cache := t.TempDir()
	cfg := rump.Config{Sources: []string{src}, CacheDir: cache}
	_, err = rump.Build(context.Background(), cfg)
	var se *rump.StepError
	if !errors.As(err, &se) {
		t.Fatalf("first build: %v", err)
	}
	dir := strings.TrimSuffix(se.Log, ".build.log")

	unlock, err := flock.Lock(context.Background(), dir+".lock")
	if err != nil {
		t.Fatal(err)
	}
	progress := &progressLog{t: t}
	cfg.Progress = progress
	type result struct {
		libs *rump.Libs
		err  error
	}
	done := make(chan result, 1)
	go func() {
		l, err := rump.Build(context.Background(), cfg)
		done <- result{l, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(progress.String(), "waiting for another build"); {
		if time.Now().After(deadline) {
			unlock()
			t.Fatalf("Build did not wait for the lock; progress %q", progress.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, err := exec.Command("cp", "-a", real.Dir, dir).CombinedOutput(); err != nil {
		unlock()
		t.Fatalf("cp: %v %s", err, out)
	}
	unlock()
	r := <-done
	if r.err != nil {
		t.Fatalf("Build after the wait: %v", r.err)
	}
	if r.libs.Dir != dir || strings.Contains(progress.String(), "[1/") {
		t.Errorf("Build after the wait: dir %s (want %s), progress %q: want the other build's, no step run", r.libs.Dir, dir, progress.String())
	}
}
