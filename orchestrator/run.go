// Package orchestrator is lab's run engine: it starts the targets of a run
// in parallel through their providers (package target), builds and pushes
// the agent, streams the agent's results into the run directory as they
// arrive, and tears every target down, Ctrl-C included, so no VM outlives a
// run. It knows nothing of any one provider.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"lab/remote"
	"lab/rundir"
	"lab/scenario"
	"lab/target"
	"lab/wire"
)

// Options configures a run.
type Options struct {
	Targets   []target.Spec
	Scenarios []scenario.Scenario
	// ResultsDir is the base directory; the run gets its own directory in it.
	ResultsDir string
	CacheDir   string
	Parallel   int
	Command    string // the command line, recorded in run.json
	Log        hclog.Logger
	Progress   Progress
	// Cold boots guests without a snapshot and saves none (lab run --cold).
	Cold bool
	// Catalog, TargetsFile and Build are recorded in run.json: which
	// scenarios and targets files the run read, and which lab ran it.
	Catalog, TargetsFile *rundir.Input
	Build                *rundir.Build
	// Then, if set, runs on each target whose agent finished, before the
	// target is torn down (lab repro runs its reproducer there). Its error
	// fails the target.
	Then func(ctx context.Context, f *Finished) error
	// Providers replaces providers of the same name (tests wrap a real
	// provider or bring a fake one); the rest come from package target.
	Providers map[string]target.Provider
}

// Finished is a target whose agent has finished, as Options.Then gets it.
type Finished struct {
	Dir      string         // the run directory
	Result   *rundir.Target // what the target measured
	Instance *target.Instance
	Machine  target.Machine // still up
}

// Summary is how a run ended.
type Summary struct {
	ID, Dir  string
	Targets  []rundir.Target
	Canceled bool
}

// Failed lists the targets that did not complete.
func (s *Summary) Failed() []rundir.Target {
	var out []rundir.Target
	for _, t := range s.Targets {
		if t.Status != rundir.StatusComplete {
			out = append(out, t)
		}
	}
	return out
}

// Run runs every scenario on every target, at most opts.Parallel targets at
// a time. It returns an error only when the run could not start at all; a
// target that fails is recorded in its results file and the others carry on.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	if opts.Parallel < 1 {
		opts.Parallel = 1
	}
	id, dir, err := rundir.NewRunDir(opts.ResultsDir, time.Now())
	if err != nil {
		return nil, err
	}
	run := rundir.Run{ID: id, Started: time.Now().UTC(), Command: opts.Command, Status: rundir.StatusRunning,
		Catalog: opts.Catalog, TargetsFile: opts.TargetsFile, Lab: opts.Build}
	for _, t := range opts.Targets {
		run.Targets = append(run.Targets, t.Name)
	}
	for _, s := range opts.Scenarios {
		run.Scenarios = append(run.Scenarios, describe(s))
	}
	runFile := filepath.Join(dir, "run.json")
	if err := rundir.WriteJSON(runFile, run); err != nil {
		return nil, err
	}
	opts.Log.Info("run started", "id", id, "dir", dir, "targets", len(opts.Targets), "scenarios", len(opts.Scenarios), "parallel", opts.Parallel)

	req := wire.Request{Scenarios: scenario.Wire(opts.Scenarios)}
	sum := &Summary{ID: id, Dir: dir, Targets: make([]rundir.Target, len(opts.Targets))}
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for i, t := range opts.Targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
			}
			sum.Targets[i] = runTarget(ctx, t, req, opts, dir)
		}()
	}
	wg.Wait()

	sum.Canceled = ctx.Err() != nil
	now := time.Now().UTC()
	run.Finished = &now
	run.Status = rundir.StatusComplete
	switch {
	case sum.Canceled:
		run.Status = rundir.StatusInterrupted
	case len(sum.Failed()) > 0:
		run.Status = rundir.StatusFailed
	}
	if err := rundir.WriteJSON(runFile, run); err != nil {
		return sum, err
	}
	return sum, nil
}

func describe(s scenario.Scenario) rundir.Scenario {
	d := rundir.Scenario{ID: s.ID, Title: s.Title, Source: s.Source, Note: s.Note, Proto: s.Proto, Expect: s.Expect, Vars: s.Vars}
	for _, st := range s.Steps {
		d.Steps = append(d.Steps, st.Text)
	}
	return d
}

// targetRun is one target's life in a run, with the results file it keeps
// up to date.
type targetRun struct {
	t       target.Spec
	opts    Options
	dir     string // the run directory
	journal *rundir.Journal
	log     hclog.Logger
	res     rundir.Target
	claims  map[string]scenario.Scenario
	mu      sync.Mutex
	phase   string
	since   time.Time
	// endedIn is the phase the target's life ended in, before teardown.
	endedIn string
}

func runTarget(ctx context.Context, t target.Spec, req wire.Request, opts Options, dir string) rundir.Target {
	tr := &targetRun{
		t:      t,
		opts:   opts,
		dir:    dir,
		log:    opts.Log.Named(t.Name),
		res:    rundir.Target{Name: t.Name, Provider: t.Provider, Status: rundir.StatusRunning, Total: len(req.Scenarios), Phases: []rundir.Phase{}, Results: []rundir.Outcome{}},
		claims: map[string]scenario.Scenario{},
	}
	for _, s := range opts.Scenarios {
		tr.claims[s.ID] = s
	}
	// Results are journalled as they arrive (at a cost that does not grow
	// with the number already written), and <target>.json is written once
	// at the end; a lab that dies leaves the journal, which readers read.
	j, err := rundir.CreateJournal(dir, tr.res)
	if err != nil {
		tr.res.Status, tr.res.Error = rundir.StatusFailed, fmt.Sprintf("target %s: recording its results: %v", t.Name, err)
		tr.log.Error("target failed", "error", tr.res.Error)
		return tr.res
	}
	defer j.Close()
	tr.journal = j
	err = tr.live(ctx, req)
	tr.endPhase(err)
	switch {
	case err == nil:
		tr.res.Status = rundir.StatusComplete
	case errors.Is(err, target.ErrUnavailable):
		tr.res.Status = rundir.StatusUnavailable
		tr.res.Error = err.Error()
	case ctx.Err() != nil:
		tr.res.Status = rundir.StatusInterrupted
		// The teardown ran after the interrupt: name the phase it hit.
		phase := tr.endedIn
		if phase == "" {
			phase = tr.lastPhase()
		}
		tr.res.Error = fmt.Sprintf("interrupted during %s: %v", phase, err)
	default:
		tr.res.Status = rundir.StatusFailed
		tr.res.Error = err.Error()
	}
	if err := j.Finish(tr.res); err != nil {
		tr.log.Error("saving results", "error", err, "journal", j.Path())
	}
	tr.progress()
	if err != nil {
		tr.log.Error("target failed", "status", tr.res.Status, "error", tr.res.Error, "measured", len(tr.res.Results), "of", tr.res.Total)
	} else {
		tr.log.Info("target done", "scenarios", len(tr.res.Results))
	}
	return tr.res
}

// live brings the target up, runs the agent and tears the target down; the
// teardown runs whatever happened before it.
func (tr *targetRun) live(ctx context.Context, req wire.Request) (err error) {
	prov, ok := tr.opts.Providers[tr.t.Provider]
	if !ok {
		if prov, ok = target.Lookup(tr.t.Provider); !ok {
			return fmt.Errorf("target %s: no provider %q", tr.t.Name, tr.t.Provider)
		}
	}
	env := target.Env{RunDir: tr.dir, CacheDir: tr.opts.CacheDir, Log: tr.log, Phase: tr.startPhase, Cold: tr.opts.Cold,
		Agent: func(ctx context.Context, b target.AgentBuild) (string, error) {
			return buildAgent(ctx, tr.opts.CacheDir, b)
		}}
	if err := prov.Check(tr.t, env); err != nil {
		return fmt.Errorf("%w: %w", target.ErrUnavailable, err)
	}
	in, err := prov.Start(ctx, tr.t, env)
	if err != nil {
		return fmt.Errorf("target %s, %s: %w", tr.t.Name, tr.lastPhase(), err)
	}
	if in.SSH != nil {
		tr.startPhase("connect")
	}
	m, err := target.Connect(ctx, in, tr.log)
	if err != nil {
		return fmt.Errorf("target %s, %s: %w", tr.t.Name, tr.lastPhase(), err)
	}
	defer func() {
		tr.endedIn = tr.lastPhase()
		tr.endPhase(err)
		tr.startPhase("teardown")
		// Teardown gets its own deadline: the run's context may be the
		// reason we are here (Ctrl-C), and the VM must still stop.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
		defer cancel()
		cerr := m.Close(tctx)
		tr.endPhase(cerr)
		if cerr != nil {
			tr.log.Error("teardown", "error", cerr)
			if err == nil {
				err = fmt.Errorf("target %s, teardown: %w", tr.t.Name, cerr)
			}
		}
	}()

	tr.startPhase("build")
	agentBin, err := buildAgent(ctx, tr.opts.CacheDir, in.Agent)
	if err != nil {
		return fmt.Errorf("target %s, building agent: %w", tr.t.Name, err)
	}
	for attempt := 1; ; attempt++ {
		err = tr.uploadAndRun(ctx, m, agentBin, tr.unmeasured(req))
		r, ok := m.(target.Reconnecter)
		var lost *remote.TransportError
		if err == nil || !ok || !errors.As(err, &lost) || errors.Is(err, target.ErrMachineExited) || attempt == connectionAttempts || ctx.Err() != nil {
			break
		}
		// Uploading again is safe (a fresh name each time), and so is
		// running the scenarios not yet measured (each picks its ports
		// afresh); the one cut short runs again from its start.
		wait := time.Duration(attempt) * reconnectWait
		tr.log.Warn("connection lost; reconnecting", "error", err, "attempt", attempt+1, "of", connectionAttempts, "after", wait, "measured", len(tr.res.Results))
		tr.endPhase(err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		tr.startPhase("connect")
		if rerr := r.Reconnect(ctx); rerr != nil {
			return fmt.Errorf("%w; then, %s: %w", err, tr.lastPhase(), rerr)
		}
	}
	if err != nil || tr.opts.Then == nil {
		return err
	}
	tr.mu.Lock()
	res := tr.res
	tr.mu.Unlock()
	return tr.opts.Then(ctx, &Finished{Dir: tr.dir, Result: &res, Instance: in, Machine: m})
}

// teardownTimeout bounds a target's teardown: stopping a VM takes a few
// seconds at most (SIGTERM, then SIGKILL), destroying a Vagrant machine
// bounds itself.
const teardownTimeout = 30 * time.Second

// reconnectWait is the backoff before the first reconnect, doubled for the
// second: a guest's sshd that dropped a connection under load answers again
// within a second or two.
var reconnectWait = time.Second

// connectionAttempts bounds how often a target's upload and run are tried
// when the connection drops under them.
const connectionAttempts = 3

// uploadAndRun pushes the agent and runs req's scenarios with it.
func (tr *targetRun) uploadAndRun(ctx context.Context, m target.Machine, agentBin string, req wire.Request) error {
	tr.startPhase("upload")
	cmd, err := m.Upload(ctx, agentBin)
	if err != nil {
		return fmt.Errorf("target %s, upload: %w", tr.t.Name, err)
	}
	tr.startPhase("run")
	if l, ok := m.(target.Linked); ok {
		req.Output = l.AgentOutput()
	}
	return tr.runAgent(ctx, m, cmd, req)
}

// unmeasured is req without the scenarios that already have a result.
func (tr *targetRun) unmeasured(req wire.Request) wire.Request {
	tr.mu.Lock()
	have := make(map[string]bool, len(tr.res.Results))
	for _, r := range tr.res.Results {
		have[r.ID] = true
	}
	tr.mu.Unlock()
	if len(have) == 0 {
		return req
	}
	out := req
	out.Scenarios = nil
	for _, s := range req.Scenarios {
		if !have[s.ID] {
			out.Scenarios = append(out.Scenarios, s)
		}
	}
	return out
}

// add records a result with the documented claims for this target, and
// makes it durable.
func (tr *targetRun) add(r wire.Result) error {
	o := rundir.Outcome{Result: r}
	if s, ok := tr.claims[r.ID]; ok && tr.res.Env != nil {
		target := scenario.Target{OS: tr.res.Env.OS, KernelRelease: tr.res.Env.KernelRelease}
		for src := range s.Expect {
			if claim, key, ok := s.Claim(src, target); ok {
				if o.Claims == nil {
					o.Claims, o.ClaimKeys = map[string]string{}, map[string]string{}
				}
				o.Claims[src], o.ClaimKeys[src] = claim, key
			}
		}
	}
	tr.mu.Lock()
	tr.res.Results = append(tr.res.Results, o)
	tr.mu.Unlock()
	return tr.journal.Append(o)
}

// startPhase ends the current phase and starts the named one; it does
// nothing when that phase is the current one (a provider may name the
// phase the engine is about to start).
func (tr *targetRun) startPhase(name string) {
	tr.mu.Lock()
	current := tr.phase
	tr.mu.Unlock()
	if current == name {
		return
	}
	tr.endPhase(nil)
	tr.mu.Lock()
	tr.phase, tr.since = name, time.Now()
	tr.mu.Unlock()
	tr.log.Debug("phase", "name", name)
	tr.progress()
}

// endPhase records the current phase's duration, if one is open.
func (tr *targetRun) endPhase(err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.phase == "" {
		return
	}
	p := rundir.Phase{Name: tr.phase, Millis: time.Since(tr.since).Milliseconds()}
	if err != nil {
		p.Error = err.Error()
	}
	tr.res.Phases = append(tr.res.Phases, p)
	tr.phase = ""
	if jerr := tr.journal.Phase(p); jerr != nil {
		tr.log.Warn("journalling a phase", "phase", p.Name, "error", jerr)
	}
}

func (tr *targetRun) lastPhase() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.phase != "" {
		return tr.phase
	}
	if n := len(tr.res.Phases); n > 0 {
		return tr.res.Phases[n-1].Name
	}
	return "start"
}

func (tr *targetRun) progress() {
	if tr.opts.Progress == nil {
		return
	}
	tr.mu.Lock()
	st := TargetState{Name: tr.t.Name, Phase: tr.phase, Done: len(tr.res.Results), Total: tr.res.Total, Status: tr.res.Status, Error: tr.res.Error}
	tr.mu.Unlock()
	tr.opts.Progress.Update(st)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
