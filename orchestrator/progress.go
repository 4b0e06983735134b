package orchestrator

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"lab/rundir"
)

// TargetState is what a progress view shows of one target.
type TargetState struct {
	Name        string
	Phase       string // image, boot, connect, build (the agent), upload, run, teardown; "" between
	Done, Total int
	Status      rundir.Status
	Error       string
}

func (s TargetState) String() string {
	switch s.Status {
	case rundir.StatusComplete:
		return fmt.Sprintf("done (%d/%d scenarios)", s.Done, s.Total)
	case rundir.StatusFailed, rundir.StatusInterrupted, rundir.StatusUnavailable:
		return fmt.Sprintf("%s after %d/%d: %s", s.Status, s.Done, s.Total, s.Error)
	}
	switch s.Phase {
	case "":
		return "waiting"
	case "run":
		return fmt.Sprintf("running %d/%d scenarios", s.Done, s.Total)
	}
	return s.Phase + "..."
}

// Progress receives every change of a target's state.
type Progress interface {
	Update(TargetState)
}

// LogProgress writes a log line when a target changes phase or status, for
// logs and CI, where a redrawn view would be noise.
type LogProgress struct {
	Log  hclog.Logger
	mu   sync.Mutex
	last map[string]string
}

// Update logs the state if its phase or status changed.
func (p *LogProgress) Update(s TargetState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := s.Phase + "/" + string(s.Status)
	if p.last == nil {
		p.last = map[string]string{}
	}
	if p.last[s.Name] == key {
		return
	}
	p.last[s.Name] = key
	p.Log.Info("target", "name", s.Name, "state", s.String())
}

// TermProgress redraws one line per target on a terminal. Log lines written
// to it (it is an io.Writer, for hclog's Output) appear above the view, which
// is redrawn below them, so logs and the view do not garble each other.
type TermProgress struct {
	W      io.Writer
	mu     sync.Mutex
	states map[string]TargetState
	lines  int
}

// Update redraws the view with s.
func (p *TermProgress) Update(s TargetState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.states == nil {
		p.states = map[string]TargetState{}
	}
	p.states[s.Name] = s
	var b strings.Builder
	p.erase(&b)
	p.draw(&b)
	io.WriteString(p.W, b.String())
}

// Write prints a log line above the view.
func (p *TermProgress) Write(line []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	p.erase(&b)
	b.Write(line)
	if len(line) > 0 && line[len(line)-1] != '\n' {
		b.WriteByte('\n')
	}
	p.draw(&b)
	if _, err := io.WriteString(p.W, b.String()); err != nil {
		return 0, err
	}
	return len(line), nil
}

// erase moves back to the view's first line and clears to the end of the
// screen.
func (p *TermProgress) erase(b *strings.Builder) {
	if p.lines > 0 {
		fmt.Fprintf(b, "\x1b[%dA\x1b[J", p.lines)
	}
	p.lines = 0
}

// draw writes the view, one line per target in name order.
func (p *TermProgress) draw(b *strings.Builder) {
	names := make([]string, 0, len(p.states))
	for n := range p.states {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(b, "\x1b[2K  %-14s %s\n", n, p.states[n])
	}
	p.lines = len(names)
}
