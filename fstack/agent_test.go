package fstack

// Tests of lab's agent built against the library (build tag fstack): its
// backend's own tests, the whole catalog end to end through the binary, and
// crashes and hangs of the F-Stack process. They build the library through
// Build into LAB_CACHE, so they work on a machine that has only the sources.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"lab/internal/testenv"
	"lab/scenario"
	"lab/wire"
)

// labSource is lab's module root, which the agent is built from.
const labSource = ".."

var (
	agentsMu sync.Mutex
	agents   = map[string]string{} // tags -> binary
	binDir   string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lab-fstack-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agentBinary builds the agent with tags against the library, once per
// tags in this test binary; tags "" is the ordinary static agent.
func agentBinary(t testing.TB, tags string) string {
	t.Helper()
	var lib *Lib
	if tags != "" {
		lib = testLib(t)
	}
	agentsMu.Lock()
	defer agentsMu.Unlock()
	if bin, ok := agents[tags]; ok {
		return bin
	}
	bin := filepath.Join(binDir, fmt.Sprintf("lab-agent-%d", len(agents)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var err error
	if lib == nil {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/lab-agent")
		cmd.Dir = labSource
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, e := cmd.CombinedOutput(); e != nil {
			err = fmt.Errorf("%v: %s", e, out)
		}
	} else if tags == Tags {
		err = lib.BuildAgent(ctx, labSource, bin)
	} else {
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", tags, "-o", bin, "./cmd/lab-agent")
		cmd.Dir = labSource
		cmd.Env = append(os.Environ(), lib.AgentEnv()...)
		if out, e := cmd.CombinedOutput(); e != nil {
			err = fmt.Errorf("%v: %s", e, out)
		}
	}
	if err != nil {
		t.Fatalf("building the agent with tags %q: %v", tags, err)
	}
	agents[tags] = bin
	return bin
}

// agentRun is what one run of an agent binary printed.
type agentRun struct {
	env     *wire.Env
	results map[string]*wire.Result
	order   []string
	done    *wire.Done
	stderr  string
	err     error // the process's
	elapsed time.Duration
}

// runAgent feeds req to bin on stdin, as a provider does, with extra
// environment variables.
func runAgent(t testing.TB, bin string, req wire.Request, env ...string) *agentRun {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = bytes.NewReader(body)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	r := &agentRun{results: map[string]*wire.Result{}}
	r.err = cmd.Run()
	r.elapsed = time.Since(start)
	r.stderr = stderr.String()
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		var l wire.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("agent printed a line that is not JSON: %q (%v)", sc.Text(), err)
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

func catalog(t testing.TB) []wire.Scenario {
	t.Helper()
	scs, err := scenario.ParseFile(filepath.Join(labSource, "scenarios.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return scenario.Wire(scs)
}

// checkNoDPDKState fails the test if the run with this file prefix left
// anything in DPDK's directories.
func checkNoDPDKState(t *testing.T, prefix string) {
	t.Helper()
	if left := RunLeftovers(prefix); len(left) > 0 {
		t.Errorf("DPDK state left behind: %v", left)
		RemoveRunState(prefix)
	}
}

// privateTmp is a $TMPDIR for one agent run and the environment variable
// that gives it to the agent, whose supervisor makes its per-run config
// directory there (lab-fstack-*). checkTmpEmpty then sees only that run's
// leftovers: other packages' tests run F-Stack agents at the same time and
// write into the machine's /tmp.
func privateTmp(t *testing.T) (dir, env string) {
	dir = t.TempDir()
	return dir, "TMPDIR=" + dir
}

// checkTmpEmpty fails the test if a run left anything in its $TMPDIR.
func checkTmpEmpty(t *testing.T, dir string) {
	t.Helper()
	for _, name := range testenv.Left(t, dir) {
		t.Errorf("the run left %s in its $TMPDIR", name)
	}
}

func testPrefix(t *testing.T) string {
	return fmt.Sprintf("labtest%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
}

// TestAgentBackend runs go vet with the fstack tags (and the fault build's)
// and the agent package's own F-Stack tests (the backend unit tests and the
// constants-against-headers test) built against the library, with the
// library's FreeBSD headers.
func TestAgentBackend(t *testing.T) {
	lib := testLib(t)
	for _, tags := range []string{Tags, Tags + " fstackfault"} {
		vet := exec.Command("go", "vet", "-tags", tags, "./agent", "./cmd/lab-agent")
		vet.Dir = labSource
		vet.Env = append(os.Environ(), lib.AgentEnv()...)
		if out, err := vet.CombinedOutput(); err != nil {
			t.Errorf("go vet -tags %q: %v\n%s", tags, err, out)
		}
	}
	cmd := exec.Command("go", "test", "-tags", Tags, "-count=1", "-v", "./agent")
	cmd.Dir = labSource
	cmd.Env = append(os.Environ(), lib.AgentEnv()...)
	cmd.Env = append(cmd.Env, "LAB_FSTACK_HEADERS="+lib.FreeBSD)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test -tags %s ./agent: %v\n%s", Tags, err, out)
	}
	for _, want := range []string{"--- PASS: TestFreeBSDConstants", "--- PASS: TestCallsOnFStack", "--- PASS: TestSockaddrLayout"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("%s is missing from the output:\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte("--- SKIP")) {
		t.Errorf("a backend test was skipped:\n%s", out)
	}
}

// freebsdOutcomes are outcomes the catalog must have on FreeBSD 13's
// stack, each from what FreeBSD's source in the F-Stack tree decides
// (freebsd/netinet/in_pcb.c unless named).
var freebsdOutcomes = map[string]string{
	// in_pcbbind_setup: with SO_REUSEADDR B looks up addr1:P without
	// INPLOOKUP_WILDCARD, and in_pcblookup_local then finds only a socket
	// bound to exactly addr1, not A on the wildcard. Linux refuses it.
	"bsd-table/row6/on": "ok",
	"bsd-table/row7/on": "ok",
	// The same address twice: found, and SO_REUSEADDR is not SO_REUSEPORT.
	"bsd-table/row1/on": "EADDRINUSE",
	// A TIME_WAIT entry is connected; without INPLOOKUP_WILDCARD
	// in_pcblookup_local looks only at sockets with no foreign address.
	"timewait/reuseaddr-new-only": "ok",
	"timewait/no-flag":            "EADDRINUSE",
	// in_pcbconnect_setup: the 4-tuple exists (in_pcblookup_hash_locked),
	// EADDRINUSE; Linux says EADDRNOTAVAIL.
	"connect/duplicate-5tuple/tcp": "EADDRINUSE",
	// SO_REUSEPORT_LB: in_pcblookup_lbgroup picks il_inp[hash % count].
	"distribution/reuseport-lb/udp": "even",
	"distribution/reuseport-lb/tcp": "even",
	"reuseport-lb/first-plain":      "EADDRINUSE",
	// Plain SO_REUSEPORT does not balance: in_pcblookup_hash_locked
	// returns the first exact match of the hash chain, and
	// in_pcbinshash_internal inserts at its head: the last bound socket.
	"distribution/udp-reuseport": "single",
	"distribution/tcp-reuseport": "single",
	// netinet6/in6_proto.c: net.inet6.ip6.v6only defaults to 1, so :: does
	// not cover 0.0.0.0.
	"ipv6/default-any6-then-v4-any/tcp": "ok",
	// F-Stack grants every privilege: not measurable.
	"linux/reuseport-other-user/tcp": wire.Skipped,
	"linux/reuseport-other-user/udp": wire.Skipped,
	// Options FreeBSD lacks.
	"windows/exclusiveaddruse/plain-same":    wire.Unsupported,
	"solaris/exclbind/any-then-specific/tcp": wire.Unsupported,
	// The steps of issue 16. in_pcb_lport picks from portrange.first..last.
	"autobind/port0/tcp":   "addr1:ephemeral",
	"autobind/tcp-connect": "unbound then loop:ephemeral",
	// tcp_disconnect drops a socket with SO_LINGER and a time of 0.
	"linger/zero-resets": "ECONNRESET",
	// 2 x net.inet.tcp.msl (30 s, TCPTV_MSL in netinet/tcp_timer.h).
	"timewait-length/server-side":        "EADDRINUSE then 60s",
	"timewait-length/client-side":        "EADDRINUSE then 60s",
	"connect/duplicate-5tuple-errno/tcp": "EADDRINUSE",
	// F-Stack is one process, and cannot wait out a linger time.
	"linger/process-dies/exit":              wire.Skipped,
	"linux/reuseport-same-user-process/tcp": wire.Skipped,
	"linger/timeout-with-unsent-data":       wire.Skipped,
	// Only lo0's own addresses are local (ifa_ifwithaddr in in_pcbbind_setup).
	"kernel/udp-hash2-wildcard/10-specific/any": wire.SetupFailed,
}

// TestAgentRunsTheCatalog feeds the whole catalog to the fstack agent
// binary as a provider would and checks every scenario gets a result, the
// environment says what the target is, FreeBSD's own errno numbers are
// reported, the outcomes FreeBSD's source decides, and that the run left
// no DPDK state.
func TestAgentRunsTheCatalog(t *testing.T) {
	bin := agentBinary(t, Tags)
	scs := catalog(t)
	prefix := testPrefix(t)
	tmp, tmpEnv := privateTmp(t)
	r := runAgent(t, bin, wire.Request{Scenarios: scs}, PrefixEnv+"="+prefix, tmpEnv)
	if r.err != nil {
		t.Fatalf("agent: %v\n%s", r.err, r.stderr)
	}
	checkNoDPDKState(t, prefix)
	checkTmpEmpty(t, tmp)
	if r.stderr != "" {
		t.Errorf("a run that works printed on stderr:\n%s", r.stderr)
	}
	if r.env == nil || r.env.OS != "freebsd" || r.env.Family != "bsd" || r.env.KernelRelease != Kernel {
		t.Errorf("environment %+v", r.env)
	}
	if r.done == nil || r.done.Scenarios != len(scs) {
		t.Errorf("done line %+v for %d scenarios", r.done, len(scs))
	}
	// Slow scenarios run beside the others, their results come when they
	// end; the others' come in order.
	var inOrder, slow []string
	for _, sc := range scs {
		if sc.Slow {
			slow = append(slow, sc.ID)
		} else {
			inOrder = append(inOrder, sc.ID)
		}
	}
	var order []string
	for _, id := range r.order {
		if !slices.Contains(slow, id) {
			order = append(order, id)
		}
	}
	if !slices.Equal(order, inOrder) {
		t.Errorf("the results of scenarios that are not slow come in order %v, want %v", order, inOrder)
	}
	for _, sc := range scs {
		res := r.results[sc.ID]
		if res == nil {
			t.Errorf("%s: no result", sc.ID)
			continue
		}
		if res.Outcome == wire.Error || res.Outcome == wire.Timeout {
			t.Errorf("%s: %s (%s)", sc.ID, res.Outcome, res.Reason)
		}
		for _, st := range res.Steps {
			if st.Result == "EADDRINUSE" && st.Errno != 48 {
				t.Errorf("%s: %s: EADDRINUSE with errno %d, want FreeBSD's 48", sc.ID, st.Text, st.Errno)
			}
		}
	}
	for id, want := range freebsdOutcomes {
		if res := r.results[id]; res != nil && res.Outcome != want {
			t.Errorf("%s: %s (%s), want %s", id, res.Outcome, res.Reason, want)
		}
	}
	if res := r.results["linux/reuseport-other-user/tcp"]; res != nil && res.Reason != "not supported on this target: F-Stack grants every privilege" {
		t.Errorf("skip reason %q", res.Reason)
	}
	if r.env != nil && r.env.EphemeralPorts != "10000-65535" {
		t.Errorf("ephemeral ports %q (%s), want IPPORT_EPHEMERALFIRST-LAST", r.env.EphemeralPorts, r.env.EphemeralNote)
	}
	// docs/freebsd-fstack.md explains, from FreeBSD's source, every
	// scenario whose outcome differs from Linux 6.12's in results/reference.
	differ := testenv.Unexplained(t, filepath.Join(labSource, "docs/freebsd-fstack.md"), filepath.Join(labSource, "results/reference/linux-6.12.json"), r.results)
	t.Logf("%d scenarios differ from Linux 6.12", differ)
	// Nor may the two BSD columns disagree unexplained: the doc's last
	// section explains each difference from both kernels' sources.
	differBSD := testenv.Unexplained(t, filepath.Join(labSource, "docs/freebsd-fstack.md"), filepath.Join(labSource, "results/reference/netbsd-rump.json"), r.results)
	t.Logf("%d scenarios differ from NetBSD's rump kernel", differBSD)
	t.Logf("%d scenarios in %s (agent's own count %.2f s)", len(r.results), r.elapsed.Round(time.Millisecond), float64(r.done.Micros)/1e6)
}

// TestAgentFaults crashes or hangs the F-Stack process (the fault build:
// a bind to port faultPort fails as LAB_FSTACK_FAULT says, on the
// F-Stack thread) after three scenarios, and checks the three results
// stay printed, what the process printed is kept with the supervisor's
// diagnosis, the agent fails, and no DPDK state is left.
func TestAgentFaults(t *testing.T) {
	bin := agentBinary(t, Tags+" fstackfault")
	all := catalog(t)
	byID := map[string]wire.Scenario{}
	for _, sc := range all {
		byID[sc.ID] = sc
	}
	req := wire.Request{}
	for _, id := range []string{"bsd-table/row1/off", "bsd-table/row6/on", "timewait/no-flag"} {
		req.Scenarios = append(req.Scenarios, byID[id])
	}
	req.Scenarios = append(req.Scenarios, wire.Scenario{ID: "fault", Proto: "udp", Timeout: 3000, Steps: []wire.Step{
		{Text: "socket A", Verb: "socket", Sock: "A"},
		{Text: fmt.Sprintf("bind A loop:%d", faultPort), Verb: "bind", Sock: "A", Addr: "loop", Port: fmt.Sprint(faultPort)},
	}}, byID["bsd-table/row2/off"])

	for _, c := range []struct {
		fault string
		says  []string // in stderr
	}{
		// Go's runtime reports a signal in C code and exits 2.
		{"segv", []string{"SIGSEGV", "exit status 2", "after 3 results"}},
		{"abort", []string{"SIGABRT", "after 3 results"}},
		// The F-Stack thread never returns: the process's own watchdog.
		{"hang", []string{"F-Stack's loop has not run", "exit status 3", "after 3 results"}},
		// The whole process stops: the supervisor's watchdog.
		{"freeze", []string{"killed as hung", "after 3 results"}},
	} {
		t.Run(c.fault, func(t *testing.T) {
			prefix := testPrefix(t)
			tmp, tmpEnv := privateTmp(t)
			r := runAgent(t, bin, req, PrefixEnv+"="+prefix, "LAB_FSTACK_FAULT="+c.fault,
				"LAB_FSTACK_HANG_TIMEOUT=2s", "LAB_FSTACK_SILENCE=3s", tmpEnv)
			checkNoDPDKState(t, prefix)
			checkTmpEmpty(t, tmp)
			if r.err == nil {
				t.Fatalf("the agent succeeded despite the fault; stderr:\n%s", r.stderr)
			}
			if len(r.results) != 3 || r.results["timewait/no-flag"] == nil {
				t.Errorf("results %v, want the 3 before the fault", r.order)
			}
			if r.done != nil {
				t.Error("a Done line after a fault")
			}
			for _, want := range c.says {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
				}
			}
			if !strings.Contains(r.stderr, "its DPDK state (prefix container-"+prefix+") was removed") {
				t.Errorf("stderr does not say the state was removed:\n%s", r.stderr)
			}
			// What F-Stack printed at start-up is kept for the error.
			if !strings.Contains(r.stderr, "EAL") {
				t.Errorf("DPDK's output was not kept:\n%s", r.stderr)
			}
		})
	}
}

// faultPort is the port the fault build's bind fails on (FaultPort in
// agent/fault_fstack.go).
const faultPort = 4242

// TestInterruptStopsTheFStackProcess: SIGINT to the agent (as lab's local
// provider sends on Ctrl-C) ends the F-Stack process within the provider's
// 2 s grace and leaves no DPDK state.
func TestInterruptStopsTheFStackProcess(t *testing.T) {
	bin := agentBinary(t, Tags)
	prefix := testPrefix(t)
	// Scenarios long enough to be interrupted in the middle.
	var scs []wire.Scenario
	for i := range 50 {
		sc := catalog(t)
		for _, s := range sc {
			if s.ID == "distribution/reuseport-lb/tcp" {
				s.ID = fmt.Sprint(s.ID, i)
				scs = append(scs, s)
			}
		}
	}
	body, _ := json.Marshal(wire.Request{Scenarios: scs})
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), PrefixEnv+"="+prefix)
	cmd.Stdin = bytes.NewReader(body)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	sc := bufio.NewScanner(stdout)
	results := 0
	for sc.Scan() && results < 2 {
		if strings.HasPrefix(sc.Text(), `{"result"`) {
			results++
		}
	}
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	go func() {
		for sc.Scan() {
		}
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
	case <-time.After(2 * time.Second):
		t.Fatalf("the agent did not exit within 2 s of SIGINT")
	}
	t.Logf("exited %s after SIGINT; stderr:\n%s", time.Since(start).Round(time.Millisecond), stderr.String())
	checkNoDPDKState(t, prefix)
}

// BenchmarkCatalog runs the whole catalog once per iteration on the fstack
// agent and, as the baseline measured in the same run, on the ordinary
// agent against this machine's Linux kernel; it reports the fstack run's
// seconds (target: at most 5 s once the library is cached) and the ratio.
//
//	LAB_CACHE=/var/tmp/lab-cache go test ./fstack -run XXX -bench Catalog -benchtime 3x
func BenchmarkCatalog(b *testing.B) {
	fstackBin := agentBinary(b, Tags)
	localBin := agentBinary(b, "")
	// The catalog a run without --only runs: the slow scenarios (a minute of
	// TIME_WAIT each) left out.
	var req wire.Request
	for _, sc := range catalog(b) {
		if !sc.Slow {
			req.Scenarios = append(req.Scenarios, sc)
		}
	}
	var fstackTime, localTime time.Duration
	b.ResetTimer()
	for range b.N {
		r := runAgent(b, fstackBin, req)
		if r.err != nil || len(r.results) != len(req.Scenarios) {
			b.Fatalf("fstack agent: %v, %d results\n%s", r.err, len(r.results), r.stderr)
		}
		fstackTime += r.elapsed
		b.StopTimer()
		l := runAgent(b, localBin, req)
		if l.err != nil {
			b.Fatalf("local agent: %v\n%s", l.err, l.stderr)
		}
		localTime += l.elapsed
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(fstackTime.Seconds()/n, "fstack-s/catalog")
	b.ReportMetric(localTime.Seconds()/n, "local-s/catalog")
	b.ReportMetric(fstackTime.Seconds()/localTime.Seconds(), "fstack/local")
	b.ReportMetric(fstackTime.Seconds()/n/5, "fstack/budget-5s")
}
