//go:build fstack

package agent

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"lab/internal/dpdk"
	"lab/wire"
)

// With F-Stack the agent is two processes. The one started (the
// supervisor) runs the same binary again as the F-Stack process and relays
// its results line by line, so whatever was measured before a crash is
// already out. When the F-Stack process ends, however it ends (exit, crash,
// killed as hung), the supervisor removes the DPDK state it left and, if it
// failed, says how on stderr after everything it printed there. A process
// cannot do that for itself once DPDK or F-Stack has crashed it.

// childEnv marks the F-Stack process.
const childEnv = "LAB_FSTACK_CHILD"

// resultsFD is the F-Stack process's descriptor for its results: F-Stack
// and DPDK print to standard output (every line of the ini, device
// notices), which goes to the supervisor's stderr instead.
const resultsFD = 3

// IsFStackChild reports whether this process is the F-Stack process a
// supervisor started. It then points os.Stdout at the results pipe, so that
// everything the agent writes there reaches the supervisor and nothing
// F-Stack prints can get mixed into the results.
func IsFStackChild() bool {
	if os.Getenv(childEnv) != "1" {
		return false
	}
	os.Stdout = os.NewFile(resultsFD, "results")
	return true
}

// dpdkPrefix is the prefix DPDK itself uses for a run whose ini says
// file_prefix=prefix: F-Stack passes --file-prefix=container-<prefix>
// (dpdk_args_setup in lib/ff_config.c).
func dpdkPrefix(prefix string) string { return "container-" + prefix }

// RemoveDPDKState removes what the F-Stack run with this file prefix left
// in DPDK's directories.
func RemoveDPDKState(prefix string) error { return dpdk.RemoveState(dpdkPrefix(prefix)) }

// DPDKLeftovers lists what the F-Stack run with this file prefix left, for
// tests that check nothing is.
func DPDKLeftovers(prefix string) []string { return dpdk.Leftovers(dpdkPrefix(prefix)) }

// silenceMargin is how long the supervisor lets the F-Stack process print
// nothing before it kills it as hung, on top of the longest scenario's
// deadline: start-up, a scenario's stragglers, the process's own hang check
// (which catches a stuck F-Stack thread; this catches a stuck process).
var silenceMargin = ffInitTimeout + stragglerWait + ffHangTimeout

// interruptGrace is how long the F-Stack process has to stop after the
// supervisor passed on SIGINT or SIGTERM; lab's local provider kills the
// supervisor 2 s after its own SIGINT.
const interruptGrace = time.Second

// Supervise runs the agent's request (read from stdin) in an F-Stack
// process and relays its results to stdout, then removes the DPDK state
// the process left. It returns the exit code: 2 for a request it cannot
// read, else the F-Stack process's, or 1 when that process was killed by a
// signal or as hung.
func Supervise(stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "lab-agent: "+format+"\n", args...)
		return 1
	}
	req, err := ReadRequest(stdin)
	if err != nil {
		fail("reading request from stdin: %v", err)
		return 2 // bad input, as the agent's main says it
	}
	// The supervisor shapes the output, as it writes it; the F-Stack
	// process writes each line plain, at once, so that a crash of it loses
	// nothing the relay could not send.
	out := NewOutput(stdout, req.Output)
	child := req
	child.Output = wire.Output{}
	raw, err := json.Marshal(child)
	if err != nil {
		return fail("encoding the F-Stack process's request: %v", err)
	}
	silence := silenceMargin
	var longest time.Duration
	for _, sc := range req.Scenarios {
		longest = max(longest, sc.Timeout.Duration(), 3*time.Second)
	}
	silence += longest

	prefix := os.Getenv(PrefixEnv)
	if prefix == "" {
		b := make([]byte, 4)
		rand.Read(b)
		prefix = fmt.Sprintf("lab%d-%s", os.Getpid(), hex.EncodeToString(b))
	}
	exe, err := os.Executable()
	if err != nil {
		return fail("finding the agent's own binary: %v", err)
	}
	confDir, err := os.MkdirTemp("", "lab-fstack-")
	if err != nil {
		return fail("creating the F-Stack config dir: %v", err)
	}
	defer os.RemoveAll(confDir)
	resR, resW, err := os.Pipe()
	if err != nil {
		return fail("creating the results pipe: %v", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail("creating the stderr pipe: %v", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1", PrefixEnv+"="+prefix, confDirEnv+"="+confDir)
	cmd.Stdin = bytes.NewReader(raw)
	cmd.Stdout, cmd.Stderr = errW, errW
	cmd.ExtraFiles = []*os.File{resW} // fd 3
	// The F-Stack process dies with the supervisor, so nothing can keep
	// running unsupervised.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fail("starting the F-Stack process: %v", err)
	}
	resW.Close()
	errW.Close()
	defer RemoveDPDKState(prefix)

	var mu sync.Mutex
	last := time.Now()
	results := 0
	relayed := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(resR, 1<<16)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 && line[len(line)-1] == '\n' {
				if bytes.HasPrefix(line, []byte(`{"result"`)) {
					mu.Lock()
					results++
					mu.Unlock()
				}
				if werr := out.EmitLine(line, bytes.HasPrefix(line, []byte(`{"done"`))); werr != nil {
					relayed <- werr
					return
				}
				mu.Lock()
				last = time.Now()
				mu.Unlock()
			}
			if err != nil {
				relayed <- nil // a partial last line is a crash's, not a result
				return
			}
		}
	}()
	// What the F-Stack process prints (DPDK's and F-Stack's start-up notes,
	// a crash's report) is kept and shown only when it fails: a run that
	// works prints nothing but its results.
	kept := &keptOutput{head: 8 << 10, tail: 56 << 10}
	copied := make(chan struct{})
	go func() {
		io.Copy(kept, errR)
		close(copied)
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	var why string // how the supervisor ended the process, if it did
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var waitErr error
loop:
	for {
		select {
		case waitErr = <-waited:
			break loop
		case s := <-sigs:
			cmd.Process.Signal(s)
			why = fmt.Sprintf("stopped on %v", s)
			select {
			case waitErr = <-waited:
			case <-time.After(interruptGrace):
				cmd.Process.Kill()
				waitErr = <-waited
				why = fmt.Sprintf("it did not stop within %s of %v", interruptGrace, s)
			}
			break loop
		case <-tick.C:
			mu.Lock()
			quiet := time.Since(last)
			mu.Unlock()
			if quiet > silence {
				cmd.Process.Kill()
				waitErr = <-waited
				why = fmt.Sprintf("killed as hung: it printed no result for %s", quiet.Round(time.Second))
				break loop
			}
		}
	}
	relayErr := <-relayed
	if err := out.Close(); relayErr == nil {
		relayErr = err
	}
	<-copied
	cleanErr := RemoveDPDKState(prefix)
	mu.Lock()
	n := results
	mu.Unlock()
	if cleanErr != nil {
		fmt.Fprintf(stderr, "lab-agent: %v\n", cleanErr)
	}
	if relayErr != nil {
		return fail("writing results: %v", relayErr)
	}
	if waitErr == nil && why == "" {
		return 0
	}
	var exit *exec.ExitError
	status := fmt.Sprint(waitErr)
	code := 1
	if errors.As(waitErr, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			status = "killed by signal " + ws.Signal().String()
		} else {
			status, code = fmt.Sprintf("exit status %d", exit.ExitCode()), exit.ExitCode()
		}
	}
	if why != "" {
		status += "; " + why
	}
	msg := fmt.Sprintf("the F-Stack process failed (%s) after %d results; its DPDK state (prefix %s) was removed", status, n, dpdkPrefix(prefix))
	if t := strings.TrimSpace(kept.telling()); t != "" {
		msg += ": " + t
	}
	stderr.Write(kept.bytes())
	fail("%s", msg)
	return max(code, 1)
}

// keptOutput keeps the first head and the last tail bytes written to it:
// DPDK's start-up notes and the end of a crash's report.
type keptOutput struct {
	mu         sync.Mutex
	head, tail int
	first      []byte
	last       []byte
	dropped    int
}

func (k *keptOutput) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := len(p)
	if room := k.head - len(k.first); room > 0 {
		take := min(room, len(p))
		k.first = append(k.first, p[:take]...)
		p = p[take:]
	}
	k.last = append(k.last, p...)
	if over := len(k.last) - k.tail; over > 0 {
		k.dropped += over
		k.last = append([]byte(nil), k.last[over:]...)
	}
	return n, nil
}

// bytes is what was kept, with a note where the middle was dropped.
func (k *keptOutput) bytes() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := append([]byte(nil), k.first...)
	if k.dropped > 0 {
		out = append(out, fmt.Sprintf("\n[... %d bytes ...]\n", k.dropped)...)
	}
	return append(out, k.last...)
}

// telling is the line that best says why the process failed: the agent's
// own diagnosis, a Go crash's first line (the goroutine dumps follow it), a
// DPDK or F-Stack error, else the last line printed.
func (k *keptOutput) telling() string {
	lines := strings.Split(string(k.bytes()), "\n")
	for _, prefix := range []string{"lab-agent:", "SIGSEGV", "SIGABRT", "SIGBUS", "[signal ", "fatal error:", "panic:", "EAL: Error", "EAL: FATAL", "PANIC"} {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.TrimSpace(lines[i]) != "" {
			return lines[i]
		}
	}
	return ""
}
