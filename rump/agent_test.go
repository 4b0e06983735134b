package rump_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lab/internal/testenv"
	"lab/rump"
	"lab/scenario"
	"lab/wire"
)

// The agent's rump backend, end to end: built with go build -tags rump
// against the libraries (Libs.GoEnv), fed the whole catalog on stdin as the
// orchestrator feeds it, as a process of its own.

var (
	agentOnce sync.Map // build tags -> *agentBuild
)

type agentBuild struct {
	once sync.Once
	path string
	err  error
}

// buildAgent builds cmd/lab-agent with the rump backend (and extra tags)
// into a temporary dir, once per test binary and tags.
func buildAgent(t testing.TB, tags string) string {
	t.Helper()
	l := buildLibs(t)
	v, _ := agentOnce.LoadOrStore(tags, &agentBuild{})
	ab := v.(*agentBuild)
	ab.once.Do(func() {
		dir, err := os.MkdirTemp("", "lab-agent-rump-")
		if err != nil {
			ab.err = err
			return
		}
		removeAtExit(dir)
		ab.path = filepath.Join(dir, "lab-agent")
		if tags == rump.Tags {
			ab.err = l.BuildAgent(context.Background(), "..", ab.path)
			return
		}
		cmd := exec.Command("go", "build", "-tags", tags, "-o", ab.path, "../cmd/lab-agent")
		cmd.Env = append(os.Environ(), l.GoEnv()...)
		if out, err := cmd.CombinedOutput(); err != nil {
			ab.err = fmt.Errorf("go build -tags %s ./cmd/lab-agent: %v\n%s", tags, err, out)
		}
	})
	if ab.err != nil {
		t.Fatal(ab.err)
	}
	return ab.path
}

// catalogRequest is the catalog as an agent request: all of it, or with
// fast the catalog a run without --only runs (no slow scenarios).
func catalogRequest(t testing.TB, fast bool) ([]byte, []wire.Scenario) {
	t.Helper()
	scs, err := scenario.ParseFile("../scenarios.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if fast {
		scs = scenario.Filter(scs, "")
	}
	ws := scenario.Wire(scs)
	req, err := json.Marshal(wire.Request{Scenarios: ws})
	if err != nil {
		t.Fatal(err)
	}
	return req, ws
}

// agentRun is what one run of the agent printed.
type agentRun struct {
	env     *wire.Env
	results map[string]*wire.Result
	order   []string
	done    *wire.Done
	stderr  string
	err     error // how the process ended
}

func runAgent(t testing.TB, bin string, req []byte, env ...string) *agentRun {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(req)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := &agentRun{results: map[string]*wire.Result{}}
	r.err = cmd.Run()
	r.stderr = stderr.String()
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var l wire.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("the agent printed a line that is not JSON (the rump kernel's console belongs on stderr): %q", sc.Text())
		}
		switch {
		case l.Env != nil:
			r.env = l.Env
		case l.Result != nil:
			r.results[l.Result.ID] = l.Result
			r.order = append(r.order, l.Result.ID)
		case l.Done != nil:
			r.done = l.Done
		}
	}
	return r
}

// TestAgentCatalog runs the whole catalog on the rump agent. Every scenario
// gets a result, and the outcomes chosen below are what NetBSD's source
// says (the file and the lines that decide are named with each; the docs,
// docs/netbsd-rump.md, explain them).
func TestAgentCatalog(t *testing.T) {
	bin := buildAgent(t, rump.Tags)
	req, scs := catalogRequest(t, false)
	start := time.Now()
	r := runAgent(t, bin, req)
	if r.err != nil {
		t.Fatalf("the agent failed: %v\n%s", r.err, r.stderr)
	}
	t.Logf("%d scenarios in %s", len(r.results), time.Since(start).Round(time.Millisecond))
	if r.env == nil || r.done == nil {
		t.Fatalf("env %v, done %v", r.env, r.done)
	}
	if r.env.OS != "netbsd" || r.env.Family != "bsd" || !strings.Contains(r.env.KernelRelease, "rump kernel, src-netbsd 82f3a690, 2016-08-02") {
		t.Errorf("env says os %q family %q kernel %q", r.env.OS, r.env.Family, r.env.KernelRelease)
	}
	if r.env.EphemeralPorts != "49152-65535" {
		t.Errorf("ephemeral ports %q (%s), want IPPORT_ANONMIN-IPPORT_ANONMAX", r.env.EphemeralPorts, r.env.EphemeralNote)
	}
	for _, sc := range scs {
		res := r.results[sc.ID]
		if res == nil {
			t.Errorf("%s: no result", sc.ID)
			continue
		}
		if res.Outcome == wire.Error || res.Outcome == wire.Timeout || res.Outcome == wire.Skipped {
			t.Errorf("%s: %s (%s)", sc.ID, res.Outcome, res.Reason)
		}
	}
	for _, c := range []struct{ id, want, why string }{
		{"bsd-table/row6/on", "ok", "in_pcbbind_port looks for wildcard matches only without SO_REUSEADDR/SO_REUSEPORT (in_pcb.c:334)"},
		{"bsd-table/row7/on", "ok", "as row 6"},
		{"bsd-table/row4/off", "EADDRINUSE", "the wildcard lookup finds any:P (in_pcb.c:385)"},
		{"bsd-table-udp/row6/on", "ok", "UDP binds through the same in_pcbbind_port"},
		{"reuseport/all-set/tcp", "ok", "reuseport & so_options of the bound socket (in_pcb.c:386)"},
		{"reuseport/first-lacks/udp", "EADDRINUSE", "the bound socket lacks SO_REUSEPORT (in_pcb.c:386)"},
		{"linux/reuseport-other-user/tcp", "EADDRINUSE", "uids differ on a specific address (in_pcb.c:362-375)"},
		{"linux/reuseport-other-user/udp", "EADDRINUSE", "as tcp"},
		{"multicast/reuseaddr-both", "ok", "SO_REUSEADDR counts as SO_REUSEPORT on multicast (in_pcb.c:309-319)"},
		{"multicast/reuseaddr-second-only", "EADDRINUSE", "the bound socket lacks both flags (in_pcb.c:386)"},
		{"ipv6/default-any6-then-v4-any/tcp", "ok", "sockets are IPV6_V6ONLY by default (ip6_v6only = 1)"},
		{"distribution/udp-reuseport", "single", "a unicast datagram goes to one socket (udp4_realinput)"},
		{"windows/exclusiveaddruse/plain-same", "unsupported", "NetBSD defines no SO_EXCLUSIVEADDRUSE"},
		{"reuseport-lb/both/udp", "unsupported", "NetBSD defines no SO_REUSEPORT_LB"},
		// The steps of issue 16.
		{"autobind/port0/tcp", "addr1:ephemeral", "in_pcbsetport picks from anonportmin..anonportmax"},
		{"autobind/tcp-connect", "unbound then loop:ephemeral", "in_pcbconnect binds the route's source address and an anonymous port"},
		{"linger/zero-resets", "ECONNRESET", "tcp_disconnect1 drops a socket with SO_LINGER and linger time 0 (tcp_usrreq.c:1261-1262)"},
		{"linger/process-dies/exit", "ECONNRESET", "the process's end closes through fd_free and soclose, the same tcp_disconnect1"},
		{"linger/process-dies/sigkill", "ECONNRESET", "a fatal signal's sigexit calls the same exit1"},
		{"linger/timeout-with-unsent-data", wire.SetupFailed, "soclose's linger wait fails with EWOULDBLOCK, which close returns (uipc_socket.c:761-765)"},
		{"timewait-length/client-side", "EADDRINUSE then 10s", "2 x net.inet.tcp.mslt.local for a peer on lo0's subnet (tcp_subr.c:2076-2078)"},
		{"connect/duplicate-5tuple-errno/tcp", "EADDRINUSE", "in_pcbconnect finds the 4-tuple (in_pcb.c:526-529)"},
		{"linux/reuseport-same-user-process/udp", "ok", "one uid: SO_REUSEPORT on both shares the port"},
		{"kernel/udp-hash2-wildcard/10-specific/any", wire.SetupFailed, "127.0.0.4 is not on lo0 (in_pcbbind_addr)"},
	} {
		if res := r.results[c.id]; res != nil && res.Outcome != c.want {
			t.Errorf("%s: %s, want %s: %s", c.id, res.Outcome, c.want, c.why)
		}
	}
	// docs/netbsd-rump.md explains, from NetBSD's source, every scenario
	// whose outcome differs from Linux 6.12's in results/reference.
	differ := testenv.Unexplained(t, "../docs/netbsd-rump.md", "../results/reference/linux-6.12.json", r.results)
	t.Logf("%d scenarios differ from Linux 6.12", differ)
	// A TIME_WAIT entry left by an accepted connection blocks no bind unless
	// its port is a multiple of 128 (see agent/backend_rump_test.go,
	// TestAcceptedTimeWaitHidesFromBind).
	for id, free := range map[string]string{"timewait/no-flag": "ok", "timewait/reuseaddr-old-only": "ok", "timewait/reuseport-new-only": "ok",
		"kernel/bind-timewait/loop": "ok", "kernel/bind-timewait/any": "ok", "timewait-length/server-side": "ok then 0s"} {
		res := r.results[id]
		if res == nil {
			continue
		}
		want := free
		if res.Ports["P"]%128 == 0 {
			if id == "timewait-length/server-side" {
				continue // blocked, for a length the scenario measures
			}
			want = "EADDRINUSE"
		}
		if res.Outcome != want {
			t.Errorf("%s: %s with P=%d, want %s", id, res.Outcome, res.Ports["P"], want)
		}
	}
}

// TestAgentPanicKeepsResults: the rump kernel panics in the third scenario
// (the fault-test build panics it on a bind to LAB_RUMP_PANIC_ON_BIND). The
// agent dies, the results of the first two are on stdout, and the panic
// message is on stderr.
func TestAgentPanicKeepsResults(t *testing.T) {
	bin := buildAgent(t, rump.Tags+",rumpfault")
	scs, err := scenario.Parse("fault.yaml", []byte(`
scenarios:
  - {id: first, title: t, source: s, proto: tcp, steps: [socket A, bind A addr1:P, socket B, bind B addr1:P]}
  - {id: second, title: t, source: s, proto: udp, steps: [socket A SO_REUSEADDR, bind A any:P, socket B SO_REUSEADDR, bind B addr1:P]}
  - {id: panics, title: t, source: s, proto: tcp, steps: [socket A, "bind A 127.0.0.1:40999"]}
  - {id: never, title: t, source: s, proto: tcp, steps: [socket A, bind A addr1:P]}
`))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(wire.Request{Scenarios: scenario.Wire(scs)})
	r := runAgent(t, bin, req, "LAB_RUMP_PANIC_ON_BIND=127.0.0.1:40999")
	if r.err == nil {
		t.Fatalf("the agent survived a rump kernel panic; stderr:\n%s", r.stderr)
	}
	if strings.Join(r.order, ",") != "first,second" {
		t.Errorf("results on stdout: %v, want first and second", r.order)
	}
	if res := r.results["first"]; res == nil || res.Outcome != "EADDRINUSE" {
		t.Errorf("first: %+v", res)
	}
	if r.done != nil {
		t.Errorf("a Done line after a panic: %+v", r.done)
	}
	if !strings.Contains(r.stderr, "panic: lwp") || !strings.Contains(r.stderr, "already running") {
		t.Errorf("stderr does not hold the panic message:\n%s", r.stderr)
	}
	t.Logf("the agent ended with %v; stderr begins:\n%s", r.err, head(r.stderr, 6))
}

func head(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// TestAgentBackend runs the agent package's own rump tests (the backend's
// unit tests and the check of its constants against NetBSD's headers) and
// go vet with the rump tags: they need the cgo flags of the libraries built
// here to compile at all.
func TestAgentBackend(t *testing.T) {
	l := buildLibs(t)
	env := append(os.Environ(), l.GoEnv()...)
	env = append(env, "LAB_RUMP_DIR="+l.Dir)
	vet := exec.Command("go", "vet", "-tags", rump.Tags, "../agent", "../cmd/lab-agent")
	vet.Env = env
	if out, err := vet.CombinedOutput(); err != nil {
		t.Errorf("go vet -tags rump: %v\n%s", err, out)
	}
	vet = exec.Command("go", "vet", "-tags", rump.Tags+",rumpfault", "../agent")
	vet.Env = env
	if out, err := vet.CombinedOutput(); err != nil {
		t.Errorf("go vet -tags rump,rumpfault: %v\n%s", err, out)
	}
	args := []string{"test", "-tags", rump.Tags, "-count=1"}
	if testing.Verbose() {
		args = append(args, "-v")
	}
	test := exec.Command("go", append(args, "../agent")...)
	test.Env = env
	out, err := test.CombinedOutput()
	t.Logf("go test -tags rump ./agent:\n%s", out)
	if err != nil {
		t.Errorf("go test -tags rump ./agent: %v", err)
	}
}

// BenchmarkCatalogRump runs the catalog a run without --only runs (the slow
// scenarios left out) on the rump agent, a process
// started per run as the provider starts it (boot included), against the
// ordinary agent on this machine's kernel measured the same way in the same
// run.
func BenchmarkCatalogRump(b *testing.B) {
	bin := buildAgent(b, rump.Tags)
	local := filepath.Join(b.TempDir(), "lab-agent-local")
	build := exec.Command("go", "build", "-o", local, "../cmd/lab-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the ordinary agent: %v\n%s", err, out)
	}
	req, scs := catalogRequest(b, true)
	measure := func(bin string) time.Duration {
		start := time.Now()
		r := runAgent(b, bin, req)
		took := time.Since(start)
		if r.err != nil || len(r.results) != len(scs) {
			b.Fatalf("%s: %v, %d results of %d\n%s", bin, r.err, len(r.results), len(scs), r.stderr)
		}
		return took
	}
	var rumpTotal, localTotal time.Duration
	for b.Loop() {
		rumpTotal += measure(bin)
		b.StopTimer()
		localTotal += measure(local)
		b.StartTimer()
	}
	n := time.Duration(b.N)
	fmt.Printf("catalog of %d scenarios: rump agent %s per run (target at most 1s), local agent %s, ratio %.2f\n",
		len(scs), (rumpTotal / n).Round(time.Millisecond), (localTotal / n).Round(time.Millisecond), float64(rumpTotal)/float64(localTotal))
}
