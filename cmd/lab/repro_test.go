package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"lab/internal/testenv"
	"lab/target"
)

// builtLab is lab built once for the test binary: each test that runs lab
// as a separate process shares it (TestMain removes it).
var builtLab struct {
	once      sync.Once
	dir, path string
	err       error
}

// labBinary builds lab into a temporary directory, once, so tests can run
// it as a separate process that exits.
func labBinary(t *testing.T) string {
	t.Helper()
	builtLab.once.Do(func() {
		if builtLab.dir, builtLab.err = os.MkdirTemp("", "lab-test-bin-"); builtLab.err != nil {
			return
		}
		builtLab.path = filepath.Join(builtLab.dir, "lab")
		if out, err := exec.Command("go", "build", "-o", builtLab.path, ".").CombinedOutput(); err != nil {
			builtLab.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if builtLab.err != nil {
		t.Fatal(builtLab.err)
	}
	return builtLab.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtLab.dir != "" {
		os.RemoveAll(builtLab.dir)
	}
	os.Exit(code)
}

// runLab runs the lab binary in the source tree's root and returns its exit
// code, standard output and standard error.
func runLab(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func TestReproLocal(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the C reproducer is built with the host's cc on Linux")
	}
	bin := labBinary(t)
	out := t.TempDir()
	for _, lang := range []string{"c", "go"} {
		code, stdout, stderr := runLab(t, bin, nil, "repro", "--target", "local", "--scenario", "bsd-table/row1/off", "--emit", lang, "--out", out)
		if code != 0 || !strings.Contains(stdout, "reproducer matches the agent") || !strings.Contains(stdout, "step 4: bind B addr1:P: EADDRINUSE (98)") {
			t.Errorf("--emit %s: exit %d\nstdout:\n%s\nstderr:\n%s", lang, code, stdout, stderr)
		}
		checkTraceFile(t, stdout, "local")
		// The reproducer prints each call with its arguments as the agent
		// does, not only the result.
		repro := stdout[strings.Index(stdout, "reproducer's trace"):]
		for _, want := range []string{"bind(127.0.0.2:", "socket(inet, tcp)  family inet  returned ", "returned -1"} {
			if !strings.Contains(repro, want) {
				t.Errorf("--emit %s: the reproducer's trace has no %q:\n%s", lang, want, repro)
			}
		}
	}
	code, _, stderr := runLab(t, bin, nil, "repro", "--target", "local", "--scenario", "distribution/udp-reuseport", "--emit", "c", "--out", out)
	if code != exitUsage || !strings.Contains(stderr, "not supported by --emit") {
		t.Errorf("timewait with --emit: exit %d, stderr:\n%s", code, stderr)
	}
}

// checkTraceFile checks lab repro saved the trace it printed for target in
// the run's directory, and said where.
func checkTraceFile(t *testing.T, stdout, target string) {
	t.Helper()
	_, rest, ok := strings.Cut(stdout, "\ntrace: ")
	if !ok {
		t.Errorf("lab repro does not say where the trace is:\n%s", stdout)
		return
	}
	path, _, _ := strings.Cut(rest, "\n")
	if filepath.Base(path) != target+".trace.txt" {
		t.Errorf("trace saved as %s, want <run dir>/%s.trace.txt", path, target)
	}
	saved, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(saved) == 0 || !strings.HasPrefix(stdout, string(saved)) || !strings.Contains(string(saved), "\nstep 1: ") {
		t.Errorf("%s is not the trace lab repro printed:\n%s\nprinted:\n%s", path, saved, stdout)
	}
}

// shMachine runs commands with the local sh and the given PATH, standing
// in for a machine reached over SSH.
type shMachine struct{ path string }

func (shMachine) Upload(ctx context.Context, local string) (string, error) { return local, nil }

func (m shMachine) Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Env = append(os.Environ(), "PATH="+m.path)
	var stderr bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, &stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, stderr.Bytes())
	}
	return nil
}

func (shMachine) Close(context.Context) error { return nil }

func TestHasCC(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no cc here")
	}
	for _, tc := range []struct {
		name, path string
		want       bool
	}{
		{"cc on PATH", filepath.Dir(cc), true},
		{"no cc", t.TempDir(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hasCC(context.Background(), shMachine{tc.path})
			if err != nil || got != tc.want {
				t.Errorf("hasCC = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestBuildScript runs the script that builds a reproducer on the target
// here, as runProgram runs it there: the program's output is the script's,
// cflags reach cc, a program cc refuses fails the script, and nothing is
// left in the temporary directory.
func TestBuildScript(t *testing.T) {
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no cc here")
	}
	const src = `#include <stdio.h>
int main(void)
{
#ifdef LAB_FRESH_PORTS
	printf("fresh\n");
#endif
	printf("step 1: it's 'quoted' $HOME \\ ok\n");
	return 0;
}
`
	for _, tc := range []struct {
		name   string
		src    string
		cflags []string
		want   string // the output; "" for a failure
	}{
		{"plain", src, nil, "step 1: it's 'quoted' $HOME \\ ok\n"},
		{"fresh ports", src, []string{"-DLAB_FRESH_PORTS"}, "fresh\nstep 1: it's 'quoted' $HOME \\ ok\n"},
		{"does not compile", "int main(void) { return x; }\n", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			script := filepath.Join(t.TempDir(), "repro-c.sh")
			os.WriteFile(script, buildScript([]byte(tc.src), tc.cflags), 0o755)
			t.Setenv("TMPDIR", tmp)
			out, err := runProgram(context.Background(), shMachine{os.Getenv("PATH")}, script)
			if tc.want == "" {
				if err == nil {
					t.Errorf("a program cc refuses ran: %q", out)
				}
			} else if err != nil || string(out) != tc.want {
				t.Errorf("got %q, %v; want %q", out, err, tc.want)
			}
			if left, _ := os.ReadDir(tmp); len(left) > 0 {
				t.Errorf("the script left %v in TMPDIR", left)
			}
		})
	}
}

// startSSHD starts a private OpenSSH server on 127.0.0.1
// (testenv.StartSSHD) with a /tmp of its own, standing in for a host lab
// reaches over SSH, and returns it and a targets file naming it "ssh-host".
func startSSHD(t *testing.T) (s *testenv.SSHD, targets string) {
	t.Helper()
	s = testenv.StartSSHDWith(t, testenv.SSHDOptions{PrivateTmp: true})
	dir := t.TempDir()
	u, _ := user.Current()
	targets = filepath.Join(dir, "targets.yaml")
	os.WriteFile(targets, []byte(fmt.Sprintf(`targets:
  - name: ssh-host
    provider: ssh
    host: %s
    user: %s
    key: %s
    known_hosts: %s
    os: linux
    arch: %s
`, s.Addr, u.Username, s.Key, s.KnownHosts, runtime.GOARCH)), 0o644)
	return s, targets
}

// TestReproSSHRemoteCC: on a host reached over SSH that has cc, the C
// reproducer is uploaded as source, built there and run, and its trace
// matches the agent's; nothing is left on the host.
func TestReproSSHRemoteCC(t *testing.T) {
	s, targets := startSSHD(t)
	if _, err := exec.LookPath("cc"); err != nil {
		t.Fatal("no cc on the SSH host (Debian: apt-get install gcc libc6-dev)")
	}
	bin := labBinary(t)
	out := t.TempDir()
	// timewait/reuseaddr-both is built with fresh ports (-DLAB_FRESH_PORTS).
	for _, id := range []string{"bsd-table/row1/off", "timewait/reuseaddr-both"} {
		code, stdout, stderr := runLab(t, bin, nil, "repro", "--file", targets, "--target", "ssh-host", "--scenario", id, "--emit", "c", "--out", out)
		if code != 0 || !strings.Contains(stdout, "with cc on ssh-host") || !strings.Contains(stdout, "reproducer matches the agent") {
			t.Errorf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", id, code, stdout, stderr)
		}
		checkTraceFile(t, stdout, "ssh-host")
	}
	if left := s.Tmp(t); len(left) != 0 {
		t.Errorf("lab left %v in the host's /tmp", left)
	}
}

// TestReproKeepDown keeps a linux-6.1 microVM with lab repro --keep, checks
// it outlived the lab process and runs both reproducers in it, reuses it,
// and checks lab down leaves no QEMU behind.
func TestReproKeepDown(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a microVM")
	}
	if runtime.GOOS != "linux" {
		t.Skip("kept guests are a Linux-host feature")
	}
	specs, err := target.Select(target.Defaults(), "linux-6.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := target.Check(specs[0], target.Env{CacheDir: cacheDirForTest()}); err != nil {
		t.Fatal(err)
	}
	cache := os.Getenv("LAB_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "lab-cache")
	}
	// The image cache is shared with lab run; the test starts and ends
	// without a kept linux-6.1 in it.
	const name = "linux-6.1"
	bin := labBinary(t)
	out := t.TempDir()
	t.Cleanup(func() {
		if k, err := target.LoadKept(cache, name); err == nil {
			k.Down()
		}
	})
	if k, err := target.LoadKept(cache, name); err == nil {
		k.Down()
	}

	code, stdout, stderr := runLab(t, bin, nil, "repro", "--target", name, "--scenario", "bsd-table/row6/on", "--keep", "--emit", "c", "--out", out, "--cache", cache)
	if code != 0 || !strings.Contains(stdout, "reproducer matches the agent") {
		t.Fatalf("repro --keep --emit c: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	k, err := target.LoadKept(cache, name)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Alive() {
		t.Fatalf("the kept QEMU (pid %d) did not survive lab's exit", k.PID)
	}
	if !strings.Contains(stdout, "lab shell "+name) {
		t.Errorf("repro --keep does not say how to reach the guest:\n%s", stdout)
	}

	code, stdout, stderr = runLab(t, bin, nil, "shell", "--cache", cache, name, "uname", "-r")
	if code != 0 || !strings.Contains(stdout, "6.1") {
		t.Errorf("lab shell uname -r: exit %d: %s %s", code, stdout, stderr)
	}
	// The agent in the guest's initramfs is recorded, so that later runs
	// with the same agent build run it instead of uploading another.
	if len(k.Preloaded) != 1 {
		t.Errorf("kept guest records preloaded agents %v; want the one in its initramfs", k.Preloaded)
	}
	for local, there := range k.Preloaded {
		code, stdout, stderr = runLab(t, bin, nil, "shell", "--cache", cache, name, "test", "-x", there, "&&", "echo", "present")
		if _, err := os.Stat(local); err != nil || code != 0 || !strings.Contains(stdout, "present") {
			t.Errorf("preloaded agent %s -> %s: build %v; in the guest: exit %d %s %s", local, there, err, code, stdout, stderr)
		}
	}

	code, stdout, stderr = runLab(t, bin, nil, "repro", "--target", name, "--scenario", "ipv6/v6only1-any6-then-v4-any/tcp", "--keep", "--emit", "go", "--out", out, "--cache", cache)
	if code != 0 || !strings.Contains(stdout, "reproducer matches the agent") || !strings.Contains(stderr, "reusing kept guest") {
		t.Fatalf("second repro --keep --emit go: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	k2, err := target.LoadKept(cache, name)
	if err != nil || k2.PID != k.PID {
		t.Errorf("the second repro did not reuse the kept guest: %+v %v", k2, err)
	}

	// The emitter's samples, in the kept guest, which a repro without
	// --keep reuses too (and leaves running): every reproducer matches.
	for _, id := range []string{"bsd-table/row1/off", "timewait/reuseaddr-both", "reuseport/all-set/tcp", "linux/udp-reuseaddr/both", "ipv6/v6only1-any6-then-v4-any/tcp"} {
		for _, lang := range []string{"c", "go"} {
			code, stdout, stderr := runLab(t, bin, nil, "repro", "--target", name, "--scenario", id, "--emit", lang, "--out", out, "--cache", cache)
			if code != 0 || !strings.Contains(stdout, "reproducer matches the agent") || !strings.Contains(stderr, "reusing kept guest") {
				t.Errorf("%s --emit %s in the guest: exit %d\nstdout:\n%s\nstderr:\n%s", id, lang, code, stdout, stderr)
			}
		}
	}
	if !k.Alive() {
		t.Fatalf("a repro without --keep stopped the kept guest (pid %d)", k.PID)
	}

	code, stdout, stderr = runLab(t, bin, nil, "down", "--cache", cache, name)
	if code != 0 || !strings.Contains(stdout, "stopped "+name) {
		t.Errorf("lab down: exit %d: %s %s", code, stdout, stderr)
	}
	if k.Alive() {
		t.Errorf("QEMU pid %d survived lab down", k.PID)
	}
	if pids := withArg(k.Marker); len(pids) > 0 {
		t.Errorf("QEMU processes with %q survived lab down: %v", k.Marker, pids)
	}
	if _, err := os.Stat(target.KeptFile(cache, name)); !os.IsNotExist(err) {
		t.Errorf("lab down left its state: %v", err)
	}
}

// withArg lists the processes with arg on their command line.
func withArg(arg string) []string {
	return testenv.Processes("cmdline", func(b []byte) bool { return testenv.HasField(b, arg) })
}

// TestReproReconnects: lab repro reaches a host over SSH through a proxy
// that cuts its first connection in the middle of the agent's upload. lab
// reconnects, as lab run does, and the repro completes. (Before the target
// package, lab repro wrapped the machine in a type that hid its Reconnect,
// and this failed with exit 3.)
func TestReproReconnects(t *testing.T) {
	s := testenv.StartSSHDWith(t, testenv.SSHDOptions{PrivateTmp: true})
	px := startCutProxy(t, s.Addr, 256<<10)
	dir := t.TempDir()
	known := filepath.Join(dir, "known_hosts")
	_, port, _ := net.SplitHostPort(px)
	os.WriteFile(known, []byte("[127.0.0.1]:"+port+" "+s.HostPub), 0o644)
	u, _ := user.Current()
	targets := filepath.Join(dir, "targets.yaml")
	os.WriteFile(targets, []byte(fmt.Sprintf("targets:\n  - {name: ssh-host, provider: ssh, host: %q, user: %s, key: %s, known_hosts: %s, os: linux, arch: %s}\n",
		px, u.Username, s.Key, known, runtime.GOARCH)), 0o644)
	code, stdout, stderr := runLab(t, labBinary(t), nil, "repro", "--file", targets, "--target", "ssh-host", "--scenario", "bsd-table/row1/off", "--out", t.TempDir())
	if code != 0 || !strings.Contains(stderr, "connection lost; reconnecting") || !strings.Contains(stdout, "outcome  EADDRINUSE") {
		t.Errorf("exit %d; want 0 after a reconnect\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// The cut upload's partial agent is removed once lab reconnects, and
	// the agent after its run.
	if left := s.Tmp(t); len(left) != 0 {
		t.Errorf("lab left %v in the host's /tmp", left)
	}
}

// startCutProxy forwards 127.0.0.1:random to addr and cuts the first
// connection once cut bytes went from client to server; later connections
// pass untouched. It returns the proxy's address.
func startCutProxy(t *testing.T, addr string, cut int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for first := true; ; first = false {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			limit := int64(-1)
			if first {
				limit = cut
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				defer up.Close()
				go io.Copy(c, up)
				if limit < 0 {
					io.Copy(up, c)
					return
				}
				io.CopyN(up, c, limit) // then both ends close: the cut
			}()
		}
	}()
	return ln.Addr().String()
}

// TestReproUserSpaceStacks: lab repro on netbsd-rump prints the trace and
// writes C against the rump API that builds against the same libraries and
// matches the agent; a Go reproducer, which cannot reach a kernel linked
// into the agent, is refused on both in-process kernels.
func TestReproUserSpaceStacks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the rump kernel and F-Stack on first use")
	}
	bin := labBinary(t)
	out := t.TempDir()
	code, stdout, stderr := runLab(t, bin, nil, "repro", "--cache", cacheDirForTest(), "--target", "netbsd-rump", "--scenario", "bsd-table/row6/on", "--emit", "c", "--out", out)
	if code != 0 || !strings.Contains(stdout, "reproducer matches the agent") || !strings.Contains(stdout, "outcome  ok") {
		t.Errorf("netbsd-rump --emit c: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	checkTraceFile(t, stdout, "netbsd-rump")
	for _, tg := range []string{"netbsd-rump", "freebsd-fstack"} {
		code, _, stderr := runLab(t, bin, nil, "repro", "--cache", cacheDirForTest(), "--target", tg, "--scenario", "bsd-table/row1/off", "--emit", "go", "--out", out)
		if code != exitUsage || !strings.Contains(stderr, "runs inside the agent's process") {
			t.Errorf("%s --emit go: exit %d, want %d saying why\n%s", tg, code, exitUsage, stderr)
		}
	}
}
