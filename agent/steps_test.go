//go:build !rump && !fstack

package agent

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"lab/scenario"
	"lab/wire"
)

// parseSteps parses one scenario of the given proto and steps, as
// scenarios.yaml would hold it.
func parseSteps(t *testing.T, id, proto string, steps ...string) wire.Scenario {
	t.Helper()
	var b strings.Builder
	b.WriteString("scenarios:\n  - id: " + id + "\n    proto: " + proto + "\n    timeout: 5s\n    steps:\n")
	for _, st := range steps {
		b.WriteString("      - \"" + st + "\"\n")
	}
	scs, err := scenario.Parse("t.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("parsing %s: %v", id, err)
	}
	return scs[0].Scenario
}

// TestNewVerbsOnThisKernel pins what Linux was observed to do with the
// steps beyond bind and connect (6.18 on the development host): the agent
// must keep measuring it so.
func TestNewVerbsOnThisKernel(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the observed outcomes pinned here are Linux's")
	}
	listen := []string{"socket L", "bind L loop:P", "listen L"}
	tests := []struct {
		id, proto string
		steps     []string
		want      string
	}{
		{"udp sendto auto-binds the wildcard", "udp", []string{"socket A", "try local A", "sendto A loop:P", "local A"}, "unbound then any:ephemeral"},
		{"tcp connect auto-binds the route address", "tcp", append(listen, "socket A", "connect A loop:P", "try local A", "peer A"), "loop:ephemeral then loop:P"},
		{"connect replaces the wildcard", "tcp", append(listen, "socket A", "bind A any:Q", "try local A", "connect A loop:P", "local A"), "any:Q then loop:Q"},
		{"port 0 picks an ephemeral port", "tcp", []string{"socket A", "bind A addr1:0", "local A"}, "addr1:ephemeral"},
		{"not connected has no peer", "udp", []string{"socket A", "bind A addr1:P", "peer A"}, "none"},
		{"graceful close is eof after the data", "tcp", append(listen, "socket A", "connect A loop:P", "accept L S", "send A 10", "close A", "recv S"), "eof"},
		{"SO_LINGER=0 resets", "tcp", append(listen, "socket A SO_LINGER=0", "connect A loop:P", "accept L S", "close A", "recv S"), "ECONNRESET"},
		{"SO_LINGER=off closes gracefully", "tcp", append(listen, "socket A SO_LINGER=off", "connect A loop:P", "accept L S", "close A", "recv S"), "eof"},
		{"data that stays is data", "tcp", append(listen, "socket A", "connect A loop:P", "accept L S", "send A 100", "recv S"), "data"},
		{"nothing to read", "tcp", append(listen, "socket A", "connect A loop:P", "accept L S", "recv S"), "EAGAIN"},
		{"udp datagram", "udp", []string{"socket A", "bind A loop:P", "socket B", "sendto B loop:P", "recv A"}, "data"},
		{"exit resets with SO_LINGER=0", "tcp", append(listen, "socket A SO_LINGER=0 proc=two", "connect A loop:P", "accept L S", "exit two", "recv S"), "ECONNRESET"},
		{"a killed process socket closes gracefully", "tcp", append(listen, "socket A proc=two", "connect A loop:P", "accept L S", "kill two", "recv S"), "eof"},
		{"an exited process frees its port", "tcp", []string{"socket A proc=two", "bind A addr1:P", "socket B", "try bind B addr1:P", "exit two", "bind B addr1:P"}, "EADDRINUSE then ok"},
		{"same-user processes share a port", "udp", []string{"socket A SO_REUSEPORT", "bind A addr1:P", "socket B SO_REUSEPORT proc=two", "bind B addr1:P"}, "ok"},
		{"tcp and udp share a port", "tcp", []string{"socket A", "bind A addr1:P", "socket B udp", "bind B addr1:P"}, "ok"},
		{"fails then succeeds after close", "tcp", []string{"socket A", "bind A addr1:P", "socket B SO_REUSEPORT", "try bind B addr1:P", "close A", "bind B addr1:P"}, "EADDRINUSE then ok"},
		{"an abortive timewait leaves no entry", "tcp", []string{"timewait addr1:P SO_LINGER=0", "socket B", "bind B addr1:P"}, "ok"},
		{"waitfree on a free endpoint", "tcp", []string{"waitfree addr1:P"}, "0s"},
		{"spread over processes", "udp", []string{"socket A SO_REUSEPORT", "bind A loop:P", "socket B SO_REUSEPORT proc=two", "bind B loop:P", "spread 300 A,B"}, "even"},
	}
	var scs []wire.Scenario
	for _, tc := range tests {
		scs = append(scs, parseSteps(t, strings.NewReplacer(" ", "-", "=", "-").Replace(tc.id), tc.proto, tc.steps...))
	}
	_, res := runInProcess(t, scs)
	for i, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			r := res[scs[i].ID]
			if r.Outcome != tc.want {
				t.Errorf("outcome %q (%s), want %q; steps %+v", r.Outcome, r.Reason, tc.want, r.Steps)
			}
		})
	}
	// The steps' records: what send queued and recv read, the helper's
	// descriptor, and the process's end.
	g := res["graceful-close-is-eof-after-the-data"]
	if n := len(g.Steps); g.Steps[n-1].Bytes != 10 || g.Steps[n-3].Bytes != 10 {
		t.Errorf("send 10 then recv: bytes %d and %d, want 10 and 10", g.Steps[n-3].Bytes, g.Steps[n-1].Bytes)
	}
	e := res["exit-resets-with-SO_LINGER-0"].Steps
	if e[3].Ret == nil || *e[3].Ret <= 0 || !strings.Contains(e[6].Call, "exit status 0") {
		t.Errorf("socket in process two and its exit: ret %v, call %q", e[3].Ret, e[6].Call)
	}
	if k := res["a-killed-process-socket-closes-gracefully"].Steps[6].Call; !strings.Contains(k, "SIGKILL") || !strings.Contains(k, "killed") {
		t.Errorf("kill's call %q does not say the process died of SIGKILL", k)
	}
}

// TestLingerCloseWaits checks a close with SO_LINGER on and data the peer
// has not taken blocks for the linger time, as a plain program's does,
// while the data still reaches the peer (Linux: the close goes on
// gracefully once the linger time is up).
func TestLingerCloseWaits(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the observed outcome pinned here is Linux's")
	}
	sc := parseSteps(t, "linger", "tcp", "socket L", "bind L loop:P", "listen L", "socket A SO_LINGER=1", "connect A loop:P",
		"accept L S", "send A 8000000", "close A", "recv S")
	_, res := runInProcess(t, []wire.Scenario{sc})
	r := res["linger"]
	if r.Outcome != "eof" {
		t.Fatalf("outcome %s (%s), want eof", r.Outcome, r.Reason)
	}
	sent, read := r.Steps[6].Bytes, r.Steps[8].Bytes
	if sent == 0 || sent >= 8000000 || read != sent {
		t.Errorf("send queued %d of 8000000 bytes, recv read %d; want part queued, all of it read", sent, read)
	}
	// The close waited for unsent data: at least most of the second.
	if us := r.Steps[7].Micros; us < 900_000 {
		t.Errorf("close with SO_LINGER=1 and unsent data returned after %d µs; want it to wait about 1 s", us)
	}
}

// TestSlowScenariosRunBeside checks a slow scenario runs beside the others:
// listed first, its result still comes after theirs.
func TestSlowScenariosRunBeside(t *testing.T) {
	slow := parseSteps(t, "slow", "tcp", "sleep 600ms")
	slow.Slow = true
	scs := []wire.Scenario{slow}
	for _, id := range []string{"fast1", "fast2", "fast3"} {
		scs = append(scs, parseSteps(t, id, "tcp", "sleep 100ms"))
	}
	var order []string
	err := Run(t.Context(), wire.Request{Scenarios: scs}, func(l wire.Line) error {
		if l.Result != nil {
			order = append(order, l.Result.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, " ") != "fast1 fast2 fast3 slow" {
		t.Errorf("results in order %v; want the slow scenario's last", order)
	}
}

// TestHelpersEndWithTheirScenario checks no helper process outlives its
// scenario, whether it exited, was killed or was left running.
func TestHelpersEndWithTheirScenario(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads this process's children from /proc")
	}
	scs := []wire.Scenario{
		parseSteps(t, "left", "udp", "socket A proc=two", "socket B proc=three", "bind B loop:P"),
		parseSteps(t, "ended", "udp", "socket A proc=two", "exit two", "socket B proc=three", "kill three SIGTERM"),
	}
	// A scenario whose deadline comes while its helper process starts.
	late := parseSteps(t, "late", "udp", "sleep 15ms", "socket A proc=two", "socket B proc=three")
	late.Timeout = 16
	_, res := runInProcess(t, append(scs, late))
	for _, sc := range scs {
		if r := res[sc.ID]; r.Outcome != wire.OK {
			t.Errorf("%s: %s (%s)", sc.ID, r.Outcome, r.Reason)
		}
	}
	if r := res["late"]; r.Outcome != wire.Timeout {
		t.Errorf("late: %s (%s), want timeout", r.Outcome, r.Reason)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		kids := children(t)
		if kids == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper processes still running after their scenarios: %s", kids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// children lists this process's child processes.
func children(t *testing.T) string {
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		if s := strings.TrimSpace(string(b)); s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

func TestWaitOutcome(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{1400 * time.Millisecond, "1s"},
		{9400 * time.Millisecond, "9s"},
		{60377 * time.Millisecond, "60s"},
		{62049 * time.Millisecond, "60s"},
		{121 * time.Second, "120s"},
		{29 * time.Second, "30s"},
	} {
		if got := waitOutcome(tc.d); got != tc.want {
			t.Errorf("waitOutcome(%s) = %s, want %s", tc.d, got, tc.want)
		}
	}
}
