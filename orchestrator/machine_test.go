package orchestrator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lab/orchestrator"
	"lab/remote"
	"lab/rundir"
	"lab/scenario"
	"lab/target"
	"lab/wire"
)

// The engine's failure paths, against a fake machine: a stand-in for what
// cannot be made to fail on cue (a connection that drops after N results, an
// agent that dies or hangs, a machine that dies), so that each path runs in
// milliseconds. The same paths run against real guests in guests_test.go
// and faults_test.go.

// fakeProvider brings up fakeMachines; a Spec's Config says how each
// behaves.
type fakeProvider struct{}

// fakeConfig scripts one fake target.
type fakeConfig struct {
	checkErr error // Check's answer
	startErr error // Start's
	// dropAfter[i] is after how many results run i drops the connection;
	// runs beyond the list finish.
	dropAfter []int
	// dieAfter ends the agent after that many results, without Done (0:
	// never); hangAfter stops its output there instead.
	dieAfter, hangAfter int
	// exited closes the machine's Exited channel when its connection drops.
	exited bool
	// block makes that phase (start, upload, run) wait for the run's
	// context to end.
	block string
	// reached is told each phase the machine reaches, once.
	reached func(phase string)

	m *fakeMachine // the machine Start made
}

func (*fakeConfig) Validate(*target.Spec) []string { return nil }
func (*fakeConfig) Describe() string               { return "fake" }

func (fakeProvider) NewConfig() target.Config { return &fakeConfig{} }

func (fakeProvider) Check(s target.Spec, _ target.Env) error { return s.Config.(*fakeConfig).checkErr }

func (fakeProvider) Start(ctx context.Context, s target.Spec, env target.Env) (*target.Instance, error) {
	c := s.Config.(*fakeConfig)
	env.Phase("boot")
	if c.block == "start" {
		c.tell("start")
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if c.startErr != nil {
		return nil, c.startErr
	}
	c.m = &fakeMachine{c: c, exited: make(chan struct{})}
	in := &target.Instance{Agent: target.AgentBuild{GOOS: "linux", GOARCH: "amd64"}, Local: c.m}
	if c.exited {
		in.Exited = c.m.exited
	}
	return in, nil
}

func (c *fakeConfig) tell(phase string) {
	if c.reached != nil {
		c.reached(phase)
	}
}

// fakeMachine plays an agent: for each scenario of the request, a progress
// line and an "ok" result.
type fakeMachine struct {
	c          *fakeConfig
	mu         sync.Mutex
	runs       int
	reconnects int
	closes     int
	exited     chan struct{}
	exitOnce   sync.Once
}

var (
	_ target.Machine     = (*fakeMachine)(nil)
	_ target.Reconnecter = (*fakeMachine)(nil)
)

func (m *fakeMachine) Upload(ctx context.Context, local string) (string, error) {
	if _, err := os.Stat(local); err != nil {
		return "", fmt.Errorf("the engine uploaded no agent: %w", err)
	}
	if m.c.block == "upload" {
		m.c.tell("upload")
		<-ctx.Done()
		return "", ctx.Err()
	}
	return "fake-agent", nil
}

func (m *fakeMachine) Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	m.mu.Lock()
	run := m.runs
	m.runs++
	m.mu.Unlock()
	var req wire.Request
	if err := json.NewDecoder(stdin).Decode(&req); err != nil {
		return fmt.Errorf("fake agent: reading request: %w", err)
	}
	enc := json.NewEncoder(stdout)
	enc.Encode(wire.Line{Env: &wire.Env{OS: "linux", Family: "linux", KernelRelease: "fake", Arch: "amd64"}})
	drop := -1
	if run < len(m.c.dropAfter) {
		drop = m.c.dropAfter[run]
	}
	for i, sc := range req.Scenarios {
		if i == drop {
			lost := &remote.TransportError{Op: "run", Addr: "fake", Err: io.ErrUnexpectedEOF}
			if m.c.exited {
				// As target's SSH machine reports a connection its dead VM broke.
				m.exitOnce.Do(func() { close(m.exited) })
				return fmt.Errorf("running agent: %w: %w", target.ErrMachineExited, lost)
			}
			return fmt.Errorf("running agent: connection lost: %w", lost)
		}
		if m.c.dieAfter > 0 && i == m.c.dieAfter {
			return errors.New("agent failed: killed by signal SEGV")
		}
		if (m.c.hangAfter > 0 && i == m.c.hangAfter) || (m.c.block == "run" && i == 1) {
			m.c.tell("run")
			<-ctx.Done()
			return context.Cause(ctx)
		}
		enc.Encode(wire.Line{Progress: &wire.Progress{Index: i + 1, Total: len(req.Scenarios), ID: sc.ID}})
		enc.Encode(wire.Line{Result: &wire.Result{ID: sc.ID, Outcome: wire.OK}})
	}
	return enc.Encode(wire.Line{Done: &wire.Done{Scenarios: len(req.Scenarios)}})
}

func (m *fakeMachine) Reconnect(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reconnects++
	return nil
}

func (m *fakeMachine) Close(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closes++
	return nil
}

// fakeScenarios are n scenarios the fake agent answers; the engine only
// passes them through.
func fakeScenarios(n int) []scenario.Scenario {
	scs := make([]scenario.Scenario, n)
	for i := range scs {
		scs[i].ID = fmt.Sprintf("fake/%03d", i)
		scs[i].Proto = "tcp"
	}
	return scs
}

func fakeRun(t *testing.T, ctx context.Context, n int, cfgs ...*fakeConfig) (*orchestrator.Summary, *rundir.Dir) {
	t.Helper()
	var specs []target.Spec
	for i, c := range cfgs {
		specs = append(specs, target.Spec{Name: fmt.Sprintf("fake%d", i), Provider: "fake", OS: "linux", Arch: "amd64", Config: c})
	}
	sum, err := orchestrator.Run(ctx, orchestrator.Options{
		Targets: specs, Scenarios: fakeScenarios(n), ResultsDir: t.TempDir(), CacheDir: cacheDir(t),
		Parallel: len(specs), Log: quietLog(), Providers: map[string]target.Provider{"fake": fakeProvider{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := rundir.Read(sum.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return sum, d
}

func phaseNames(tr rundir.Target) string {
	var ph []string
	for _, p := range tr.Phases {
		ph = append(ph, p.Name)
	}
	return strings.Join(ph, ",")
}

// TestEngineFailurePaths runs one fake target per case and checks its
// status, error, results and phases as the run directory records them.
func TestEngineFailurePaths(t *testing.T) {
	defer orchestrator.SetAgentSilence(300 * time.Millisecond)()
	defer orchestrator.SetReconnectWait(time.Millisecond)()
	const n = 10
	tests := []struct {
		name       string
		cfg        fakeConfig
		status     rundir.Status
		results    int
		err        string // in the target's error
		phases     string
		reconnects int
	}{
		{name: "complete", status: rundir.StatusComplete, results: n, phases: "boot,build,upload,run,teardown"},
		{name: "dropped once, reconnected", cfg: fakeConfig{dropAfter: []int{4}}, status: rundir.StatusComplete, results: n,
			phases: "boot,build,upload,run,connect,upload,run,teardown", reconnects: 1},
		{name: "dropped in every attempt", cfg: fakeConfig{dropAfter: []int{3, 3, 3}}, status: rundir.StatusFailed, results: 9,
			err: "connection lost", reconnects: 2},
		{name: "machine died: no reconnect", cfg: fakeConfig{dropAfter: []int{4}, exited: true}, status: rundir.StatusFailed, results: 4,
			err: "QEMU process exited", phases: "boot,build,upload,run,teardown"},
		{name: "agent died", cfg: fakeConfig{dieAfter: 6}, status: rundir.StatusFailed, results: 6,
			err: "agent stopped after 6 of 10 scenarios: agent failed: killed by signal SEGV"},
		{name: "agent hung", cfg: fakeConfig{hangAfter: 2}, status: rundir.StatusFailed, results: 2,
			err: "the agent printed nothing for 300ms (hung or stopped)"},
		{name: "start failed", cfg: fakeConfig{startErr: errors.New("no such image")}, status: rundir.StatusFailed, results: 0,
			err: "target fake0, boot: no such image", phases: "boot"},
		{name: "unavailable", cfg: fakeConfig{checkErr: errors.New("no QEMU here")}, status: rundir.StatusUnavailable, results: 0,
			err: "not available on this host: no QEMU here", phases: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			_, d := fakeRun(t, context.Background(), n, &cfg)
			tr := d.Targets[0]
			if tr.Status != tc.status || len(tr.Results) != tc.results || !strings.Contains(tr.Error, tc.err) {
				t.Errorf("status %s with %d results, error %q; want %s with %d, error containing %q", tr.Status, len(tr.Results), tr.Error, tc.status, tc.results, tc.err)
			}
			if tc.phases != "" && phaseNames(tr) != tc.phases {
				t.Errorf("phases %s, want %s", phaseNames(tr), tc.phases)
			}
			seen := map[string]bool{}
			for _, r := range tr.Results {
				if seen[r.ID] {
					t.Errorf("%s measured twice", r.ID)
				}
				seen[r.ID] = true
			}
			if m := cfg.m; m != nil {
				if m.reconnects != tc.reconnects {
					t.Errorf("%d reconnects, want %d", m.reconnects, tc.reconnects)
				}
				if m.closes != 1 {
					t.Errorf("the machine was closed %d times, want once", m.closes)
				}
			}
		})
	}
}

// TestEngineInterruptEachPhase cancels the run while the target is in each
// phase: the target is interrupted, the error names the phase, what was
// measured is kept, and a machine that was up is torn down once.
func TestEngineInterruptEachPhase(t *testing.T) {
	for _, phase := range []string{"start", "upload", "run"} {
		t.Run(phase, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := &fakeConfig{block: phase, reached: func(string) { cancel() }}
			sum, d := fakeRun(t, ctx, 5, cfg)
			tr := d.Targets[0]
			want := map[string]string{"start": "boot", "upload": "upload", "run": "run"}[phase]
			if !sum.Canceled || tr.Status != rundir.StatusInterrupted || !strings.Contains(tr.Error, "interrupted during "+want) {
				t.Errorf("canceled %v, status %s, error %q; want interrupted during %s", sum.Canceled, tr.Status, tr.Error, want)
			}
			if phase == "run" && len(tr.Results) != 1 {
				t.Errorf("%d results kept, want the 1 measured before the interrupt", len(tr.Results))
			}
			if cfg.m != nil && cfg.m.closes != 1 {
				t.Errorf("closed %d times, want once", cfg.m.closes)
			}
			if d.Run.Status != rundir.StatusInterrupted {
				t.Errorf("run status %s, want interrupted", d.Run.Status)
			}
		})
	}
}

// TestEngineOneTargetFailsOthersRun: a target that fails or is unavailable
// does not stop the others.
func TestEngineOneTargetFailsOthersRun(t *testing.T) {
	defer orchestrator.SetAgentSilence(300 * time.Millisecond)()
	sum, d := fakeRun(t, context.Background(), 8,
		&fakeConfig{},
		&fakeConfig{dieAfter: 3},
		&fakeConfig{checkErr: errors.New("missing")},
		&fakeConfig{hangAfter: 1},
		&fakeConfig{})
	want := []rundir.Status{rundir.StatusComplete, rundir.StatusFailed, rundir.StatusUnavailable, rundir.StatusFailed, rundir.StatusComplete}
	for i, tr := range d.Targets {
		if tr.Status != want[i] {
			t.Errorf("%s: %s (%s), want %s", tr.Name, tr.Status, tr.Error, want[i])
		}
	}
	if len(sum.Failed()) != 3 || d.Run.Status != rundir.StatusFailed {
		t.Errorf("%d failed, run %s; want 3 and failed", len(sum.Failed()), d.Run.Status)
	}
}

// TestEngineThen: Options.Then gets the machine still up, with the results
// measured, after a reconnect too; its error fails the target; teardown
// follows it.
func TestEngineThen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status rundir.Status
	}{
		{"ok", nil, rundir.StatusComplete},
		{"fails", errors.New("reproducer differs"), rundir.StatusFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer orchestrator.SetReconnectWait(time.Millisecond)()
			cfg := &fakeConfig{dropAfter: []int{2}}
			var got *orchestrator.Finished
			closedBefore := -1
			sum, err := orchestrator.Run(context.Background(), orchestrator.Options{
				Targets:   []target.Spec{{Name: "f", Provider: "fake", OS: "linux", Arch: "amd64", Config: cfg}},
				Scenarios: fakeScenarios(4), ResultsDir: t.TempDir(), CacheDir: cacheDir(t), Parallel: 1, Log: quietLog(),
				Providers: map[string]target.Provider{"fake": fakeProvider{}},
				Then: func(ctx context.Context, f *orchestrator.Finished) error {
					got = f
					closedBefore = cfg.m.closes
					return tc.err
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || len(got.Result.Results) != 4 || got.Machine != target.Machine(cfg.m) || filepath.Dir(filepath.Join(got.Dir, "x")) != sum.Dir {
				t.Fatalf("Then got %+v", got)
			}
			if closedBefore != 0 || cfg.m.closes != 1 || cfg.m.reconnects != 1 {
				t.Errorf("closed %d times before Then and %d after, %d reconnects; want 0, 1 and 1", closedBefore, cfg.m.closes, cfg.m.reconnects)
			}
			if st := sum.Targets[0].Status; st != tc.status {
				t.Errorf("status %s, want %s", st, tc.status)
			}
		})
	}
}
