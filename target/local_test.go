//go:build unix

package target

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// slowWriter takes its time over every write, as lab does when it makes
// each result durable before reading on.
// It has no ReadFrom, so io.Copy calls Write for every read.
type slowWriter struct {
	buf   bytes.Buffer
	delay time.Duration
}

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(w.delay)
	return w.buf.Write(p)
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProcessMachineReadsToEnd: a program that prints fast and exits while
// lab still reads slowly loses nothing (exec's WaitDelay used to cut such
// output 2 s after the exit and fail the target).
func TestProcessMachineReadsToEnd(t *testing.T) {
	// 170 kB: six writes of exec's 32 kB copy buffer. The program exits
	// once what is left fits the pipe (64 kB) and the copy buffer, three
	// writes, which take 3 s: longer than the old cut.
	const lines = 30000
	prog := script(t, "seq 1 "+strconv.Itoa(lines))
	w := &slowWriter{delay: time.Second}
	start := time.Now()
	if err := (&processMachine{}).Run(context.Background(), prog, strings.NewReader(""), w); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := strings.Split(strings.TrimSpace(w.buf.String()), "\n")
	if len(got) != lines || got[len(got)-1] != strconv.Itoa(lines) {
		t.Errorf("read %d lines (last %q) in %v; want all %d", len(got), got[len(got)-1], time.Since(start), lines)
	}

}

// TestProcessMachineInterrupt: a program that ignores SIGINT is killed
// interruptGrace after the context ends.
func TestProcessMachineInterrupt(t *testing.T) {
	prog := script(t, "trap '' INT\necho started\nexec sleep 60")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	var out bytes.Buffer
	err := (&processMachine{}).Run(ctx, prog, strings.NewReader(""), &out)
	took := time.Since(start)
	if err == nil || took > interruptGrace+3*time.Second || !strings.Contains(out.String(), "started") {
		t.Errorf("Run = %v after %v with %q; want it killed about %v after the interrupt", err, took, out.String(), interruptGrace)
	}
}
