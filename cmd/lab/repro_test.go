package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"lab/orchestrator"
)

// labBinary builds lab into a temporary directory, so tests can run it as a
// separate process that exits.
func labBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lab")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// lab runs the lab binary in the source tree's root and returns its exit
// code, standard output and standard error.
func lab(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
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
		code, stdout, stderr := lab(t, bin, nil, "repro", "--target", "local", "--scenario", "bsd-table/row1/off", "--emit", lang, "--out", out)
		if code != 0 || !strings.Contains(stdout, "reproducer matches the agent") || !strings.Contains(stdout, "step 4: bind B addr1:P: EADDRINUSE (98)") {
			t.Errorf("--emit %s: exit %d\nstdout:\n%s\nstderr:\n%s", lang, code, stdout, stderr)
		}
	}
	code, _, stderr := lab(t, bin, nil, "repro", "--target", "local", "--scenario", "distribution/udp-reuseport", "--emit", "c", "--out", out)
	if code != exitUsage || !strings.Contains(stderr, "not supported by --emit") {
		t.Errorf("timewait with --emit: exit %d, stderr:\n%s", code, stderr)
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
	if err := (orchestrator.QEMU{}).Check(&orchestrator.Target{Suite: "bookworm", Arch: runtime.GOARCH}); err != nil {
		t.Fatal(err)
	}
	cache := os.Getenv("LAB_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "lab-cache")
	}
	// The image cache is shared with lab run; the test starts and ends
	// without a kept linux-6.1 in it.
	const target = "linux-6.1"
	bin := labBinary(t)
	out := t.TempDir()
	t.Cleanup(func() {
		if k, err := orchestrator.LoadKept(cache, target); err == nil {
			k.Down()
		}
	})
	if k, err := orchestrator.LoadKept(cache, target); err == nil {
		k.Down()
	}

	code, stdout, stderr := lab(t, bin, nil, "repro", "--target", target, "--scenario", "bsd-table/row6/on", "--keep", "--emit", "c", "--out", out, "--cache", cache)
	if code != 0 || !strings.Contains(stdout, "reproducer matches the agent") {
		t.Fatalf("repro --keep --emit c: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	k, err := orchestrator.LoadKept(cache, target)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Alive() {
		t.Fatalf("the kept QEMU (pid %d) did not survive lab's exit", k.PID)
	}
	if !strings.Contains(stdout, "lab shell "+target) {
		t.Errorf("repro --keep does not say how to reach the guest:\n%s", stdout)
	}

	code, stdout, stderr = lab(t, bin, nil, "shell", "--cache", cache, target, "uname", "-r")
	if code != 0 || !strings.Contains(stdout, "6.1") {
		t.Errorf("lab shell uname -r: exit %d: %s %s", code, stdout, stderr)
	}

	code, stdout, stderr = lab(t, bin, nil, "repro", "--target", target, "--scenario", "ipv6/v6only1-any6-then-v4-any/tcp", "--keep", "--emit", "go", "--out", out, "--cache", cache)
	if code != 0 || !strings.Contains(stdout, "reproducer matches the agent") || !strings.Contains(stderr, "reusing kept guest") {
		t.Fatalf("second repro --keep --emit go: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	k2, err := orchestrator.LoadKept(cache, target)
	if err != nil || k2.PID != k.PID {
		t.Errorf("the second repro did not reuse the kept guest: %+v %v", k2, err)
	}

	// The emitter's samples, in the kept guest, which a repro without
	// --keep reuses too (and leaves running): every reproducer matches.
	for _, id := range []string{"bsd-table/row1/off", "timewait/reuseaddr-both", "reuseport/all-set/tcp", "linux/udp-reuseaddr/both", "ipv6/v6only1-any6-then-v4-any/tcp"} {
		for _, lang := range []string{"c", "go"} {
			code, stdout, stderr := lab(t, bin, nil, "repro", "--target", target, "--scenario", id, "--emit", lang, "--out", out, "--cache", cache)
			if code != 0 || !strings.Contains(stdout, "reproducer matches the agent") || !strings.Contains(stderr, "reusing kept guest") {
				t.Errorf("%s --emit %s in the guest: exit %d\nstdout:\n%s\nstderr:\n%s", id, lang, code, stdout, stderr)
			}
		}
	}
	if !k.Alive() {
		t.Fatalf("a repro without --keep stopped the kept guest (pid %d)", k.PID)
	}

	code, stdout, stderr = lab(t, bin, nil, "down", "--cache", cache, target)
	if code != 0 || !strings.Contains(stdout, "stopped "+target) {
		t.Errorf("lab down: exit %d: %s %s", code, stdout, stderr)
	}
	if k.Alive() {
		t.Errorf("QEMU pid %d survived lab down", k.PID)
	}
	if pids := withArg(k.Marker); len(pids) > 0 {
		t.Errorf("QEMU processes with %q survived lab down: %v", k.Marker, pids)
	}
	if _, err := os.Stat(orchestrator.KeptFile(cache, target)); !os.IsNotExist(err) {
		t.Errorf("lab down left its state: %v", err)
	}
}

// withArg lists the processes with arg on their command line.
func withArg(arg string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, a := range bytes.Split(b, []byte{0}) {
			if string(a) == arg {
				out = append(out, filepath.Base(filepath.Dir(f)))
			}
		}
	}
	return out
}
