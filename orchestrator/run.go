// Package orchestrator runs the scenario catalog on targets: it brings each
// target up with its provider (local, qemu, ssh), pushes the agent, streams
// the agent's results into the run directory as they arrive, and tears the
// target down. A target's life is a list of phases whose cleanups always
// run, Ctrl-C included, so no VM outlives a run.
package orchestrator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"lab/remote"
	"lab/rundir"
	"lab/scenario"
	"lab/wire"
)

// Machine is a target that is up: the agent can be put on it and run.
type Machine interface {
	// Upload copies the agent binary at local onto the machine and returns
	// the command that runs it there.
	Upload(ctx context.Context, local string) (cmd string, err error)
	// Run runs cmd with stdin, streaming its standard output to stdout as
	// it comes. An error is an infrastructure failure (the connection or
	// the process died), never a scenario outcome.
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error
	// Close tears the machine down (stops its VM) or disconnects. It is
	// safe to call more than once.
	Close(ctx context.Context) error
}

// Provider brings targets of one kind up.
type Provider interface {
	// Check says what this host lacks to run t, or nil when it can.
	Check(t *Target) error
	// Start brings t up and returns it reachable. It reports each phase it
	// goes through (image, boot, connect) to phase. On error nothing it
	// started is left running.
	Start(ctx context.Context, t *Target, env StartEnv) (Machine, error)
}

// StartEnv is what a provider gets besides the target.
type StartEnv struct {
	RunDir   string // where consoles and logs of this target go
	CacheDir string
	Log      hclog.Logger
	// Phase marks the start of a named phase; the previous one ends there.
	Phase func(name string)
}

// ErrUnavailable marks a target this host cannot run: a result to report,
// not a failure of the run.
var ErrUnavailable = errors.New("not available on this host")

// Options configures a run.
type Options struct {
	Targets   []*Target
	Scenarios []scenario.Scenario
	// ResultsDir is the base directory; the run gets its own directory in it.
	ResultsDir string
	CacheDir   string
	Parallel   int
	Command    string // the command line, recorded in run.json
	Log        hclog.Logger
	Progress   Progress
	Providers  map[string]Provider
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
	run := rundir.Run{ID: id, Started: time.Now().UTC(), Command: opts.Command, Status: rundir.StatusRunning}
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
	t      *Target
	opts   Options
	file   string
	log    hclog.Logger
	res    rundir.Target
	claims map[string]scenario.Scenario
	mu     sync.Mutex
	phase  string
	since  time.Time
	// endedIn is the phase the target's life ended in, before teardown.
	endedIn string
}

func runTarget(ctx context.Context, t *Target, req wire.Request, opts Options, dir string) rundir.Target {
	tr := &targetRun{
		t:      t,
		opts:   opts,
		file:   filepath.Join(dir, t.Name+".json"),
		log:    opts.Log.Named(t.Name),
		res:    rundir.Target{Name: t.Name, Provider: t.Provider, Status: rundir.StatusRunning, Total: len(req.Scenarios), Phases: []rundir.Phase{}, Results: []rundir.Outcome{}},
		claims: map[string]scenario.Scenario{},
	}
	for _, s := range opts.Scenarios {
		tr.claims[s.ID] = s
	}
	err := tr.live(ctx, req)
	tr.endPhase(err)
	switch {
	case err == nil:
		tr.res.Status = rundir.StatusComplete
	case errors.Is(err, ErrUnavailable):
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
	if err := tr.save(); err != nil {
		tr.log.Error("saving results", "error", err)
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
		return fmt.Errorf("target %s: no provider %q", tr.t.Name, tr.t.Provider)
	}
	if err := prov.Check(tr.t); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	env := StartEnv{RunDir: filepath.Dir(tr.file), CacheDir: tr.opts.CacheDir, Log: tr.log, Phase: tr.startPhase}
	m, err := prov.Start(ctx, tr.t, env)
	if err != nil {
		return fmt.Errorf("target %s, %s: %w", tr.t.Name, tr.lastPhase(), err)
	}
	defer func() {
		tr.endedIn = tr.lastPhase()
		tr.endPhase(err)
		tr.startPhase("teardown")
		// Teardown gets its own deadline: the run's context may be the
		// reason we are here (Ctrl-C), and the VM must still stop.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
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
	agentBin, err := tr.opts.agent(ctx, tr.t)
	if err != nil {
		return fmt.Errorf("target %s, building agent: %w", tr.t.Name, err)
	}
	for attempt := 1; ; attempt++ {
		err = tr.uploadAndRun(ctx, m, agentBin, tr.unmeasured(req))
		r, ok := m.(Reconnecter)
		var lost *remote.TransportError
		if err == nil || !ok || !errors.As(err, &lost) || errors.Is(err, errGuestExited) || attempt == connectionAttempts || ctx.Err() != nil {
			return err
		}
		// Uploading again is safe (a fresh name each time), and so is
		// running the scenarios not yet measured (each picks its ports
		// afresh); the one cut short runs again from its start.
		wait := time.Duration(attempt) * time.Second
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
}

// connectionAttempts bounds how often a target's upload and run are tried
// when the connection drops under them.
const connectionAttempts = 3

// Reconnecter is a Machine whose lost connection can be made again while
// the machine itself lives on (a guest or host reached over SSH).
type Reconnecter interface {
	Reconnect(ctx context.Context) error
}

// uploadAndRun pushes the agent and runs req's scenarios with it.
func (tr *targetRun) uploadAndRun(ctx context.Context, m Machine, agentBin string, req wire.Request) error {
	tr.startPhase("upload")
	cmd, err := m.Upload(ctx, agentBin)
	if err != nil {
		return fmt.Errorf("target %s, upload: %w", tr.t.Name, err)
	}
	tr.startPhase("run")
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

// runAgent runs the agent and records each line as it arrives.
func (tr *targetRun) runAgent(ctx context.Context, m Machine, cmd string, req wire.Request) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding request: %w", err)
	}
	// A live agent prints a line per scenario, each within the scenario's
	// deadline; one that stays silent far longer is hung or stopped, which
	// the connection's keepalives cannot see while sshd still answers.
	silence := agentSilence(req)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(silence, func() {
		cancel(fmt.Errorf("the agent printed nothing for %v (hung or stopped)", silence))
	})
	defer watchdog.Stop()
	pr, pw := io.Pipe()
	runErr := make(chan error, 1)
	go func() {
		err := m.Run(ctx, cmd, bytes.NewReader(body), pw)
		pw.CloseWithError(err)
		runErr <- err
	}()
	done, err := tr.readAgent(&resetReader{r: pr, t: watchdog, d: silence})
	if err != nil && !errors.Is(err, errAgentOutput) {
		// Saving a result failed: stop reading, which ends the agent.
		pr.CloseWithError(err)
		return err
	}
	readErr := err
	pr.Close()
	err = <-runErr
	if err == nil {
		err = readErr
	}
	if !done {
		if err == nil {
			err = errors.New("the agent exited without finishing")
		}
		return fmt.Errorf("target %s, run: agent stopped after %d of %d scenarios: %w", tr.t.Name, len(tr.res.Results), tr.res.Total, err)
	}
	if err != nil {
		return fmt.Errorf("target %s, run: %w", tr.t.Name, err)
	}
	return nil
}

// agentSilence is how long the agent may print nothing before it counts as
// hung: the longest scenario deadline (the agent's default is 3 s) twice
// over, plus time for a slow emulated guest to start the agent.
func agentSilence(req wire.Request) time.Duration {
	longest := 3 * time.Second
	for _, s := range req.Scenarios {
		longest = max(longest, s.Timeout.Duration())
	}
	return 2*longest + 30*time.Second
}

// resetReader pushes a timer back by d whenever bytes arrive.
type resetReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (r *resetReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(r.d)
	}
	return n, err
}

// errAgentOutput marks output of the agent that could not be read as lines
// (a line longer than the reader's limit, or a broken stream).
var errAgentOutput = errors.New("reading the agent's output")

// readAgent records each JSON line the agent prints on r, saving the
// results file after each env and result line, until r ends. It reports
// whether the agent said it was done. Lines that are not JSON are logged
// and skipped; an error wrapping errAgentOutput means the stream itself
// could not be read, any other error that the results could not be saved.
func (tr *targetRun) readAgent(r io.Reader) (done bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		var l wire.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			tr.log.Warn("agent printed a line that is not JSON", "line", truncate(sc.Text(), 200))
			continue
		}
		switch {
		case l.Env != nil:
			tr.res.Env = l.Env
		case l.Progress != nil:
			tr.progress()
		case l.Result != nil:
			tr.add(*l.Result)
		case l.Done != nil:
			done = true
		}
		if l.Env != nil || l.Result != nil {
			if err := tr.save(); err != nil {
				return done, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return done, fmt.Errorf("%w: %w", errAgentOutput, err)
	}
	return done, nil
}

// add records a result with the documented claims for this target.
func (tr *targetRun) add(r wire.Result) {
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
}

func (tr *targetRun) save() error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return rundir.WriteJSON(tr.file, tr.res)
}

// startPhase ends the current phase and starts the named one.
func (tr *targetRun) startPhase(name string) {
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

// fileMode reports a file's permission bits, for key checks.
func fileMode(path string) (os.FileMode, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Mode().Perm(), nil
}
