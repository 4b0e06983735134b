package rundir

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"lab/wire"
)

// JournalFormat is the first line's "journal" value; it changes when a line
// changes meaning.
const JournalFormat = "lab-journal/1"

// The sync bound: what a crash of the machine (power loss, kernel panic) can
// take from a journal. A crash of lab alone (SIGKILL, a panic, the OOM
// killer) takes nothing Append returned for: every line is written to the
// file with one write(2) as it arrives, so it is in the kernel's page cache,
// which outlives the process; at most the line being written is torn, and
// readers ignore it.
//
// Every line is fsynced within SyncDelay, plus the time of two fsyncs, of
// being written, and Append does not return while more than SyncLines lines
// are written but not yet synced. fsync runs on its own goroutine, so the
// agent's reader never waits for the disk unless it outruns it by SyncLines
// lines. An fsync costs 0.25-1 ms on this project's machines (ext4 on
// virtio) and tens of ms on slow disks; with these values a run pays at most
// 10 fsyncs a second plus one per 64 results, a cost that does not grow with
// the results already written, and a machine crash loses at most the last
// 64 results or 100 ms of them, which a rerun measures again.
const (
	SyncLines = 64
	SyncDelay = 100 * time.Millisecond
)

// SyncPolicy is a sync bound: at most Lines lines unsynced when Append
// returns, and every line synced Delay (plus two fsyncs) after it was written.
type SyncPolicy struct {
	Lines int
	Delay time.Duration
}

// DefaultSync is the bound CreateJournal uses.
func DefaultSync() SyncPolicy { return SyncPolicy{Lines: SyncLines, Delay: SyncDelay} }

// JournalName is the journal's file name for a target: <target>.jsonl.
func JournalName(target string) string { return target + ".jsonl" }

// Journal is a target's results as they arrive: an append-only JSON-lines
// file, <target>.jsonl, one line per event, each line costing the same
// whatever was written before it (a results file rewritten per result costs
// the square of their number). Its lines are, in order:
//
//	{"journal":"lab-journal/1","target":{...}}   the target as it starts (no results)
//	{"env":{...}}                                 the agent's environment (SetEnv)
//	{"phase":{"name":"boot","ms":1234}}           a phase that ended (Phase)
//	{"result":{...}}                              one scenario's outcome (Append)
//	{"final":{...}}                               the target as it ended, without results (Finish)
//
// Finish writes <target>.json once, from the journal, and then removes the
// journal: the .json holds everything the journal did, and one form per
// finished target keeps a run directory as it always was. A target whose
// lab died keeps its journal, which every reader (Read, Merge) reads as the
// target's results. While a Journal is open it holds an exclusive flock on
// its file, so a reader can tell a live run from a dead one.
//
// A Journal is safe for concurrent use.
type Journal struct {
	path, final string
	policy      SyncPolicy

	mu       sync.Mutex
	cond     sync.Cond // signalled when synced moves or err is set
	f        *os.File
	size     int64 // bytes written whole
	written  int   // lines written whole
	synced   int   // lines known to be on disk
	results  int
	err      error // the first failure: the journal takes nothing more
	finished bool
	closed   bool

	dirty, urgent chan struct{} // to the syncer: a line to sync soon, now
	stop          chan struct{} // closed by Close: sync what is left and exit
	syncerDone    chan struct{}
}

// journalLine is one line of a journal; exactly one field besides Journal
// is set.
type journalLine struct {
	Journal string    `json:"journal,omitempty"`
	Target  *Target   `json:"target,omitempty"`
	Env     *wire.Env `json:"env,omitempty"`
	Phase   *Phase    `json:"phase,omitempty"`
	Result  *Outcome  `json:"result,omitempty"`
	Final   *Target   `json:"final,omitempty"`
}

// CreateJournal starts the journal of target t in run directory dir, with
// the DefaultSync bound. The file is created exclusively (a target runs once
// in a run) with its first line, both on disk before it returns.
func CreateJournal(dir string, t Target) (*Journal, error) {
	return CreateJournalSync(dir, t, DefaultSync())
}

// CreateJournalSync is CreateJournal with another sync bound, for tests and
// benchmarks of the bound itself.
func CreateJournalSync(dir string, t Target, p SyncPolicy) (*Journal, error) {
	if err := checkName(t.Name); err != nil {
		return nil, fmt.Errorf("creating the journal of %q: %w", t.Name, err)
	}
	if p.Lines < 1 || p.Delay <= 0 {
		return nil, fmt.Errorf("creating the journal of %s: sync bound %+v: want at least 1 line and a positive delay", t.Name, p)
	}
	path := filepath.Join(dir, JournalName(t.Name))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating the journal of %s: %w", t.Name, err)
	}
	if err := lockWriter(f); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("creating the journal of %s: %w", t.Name, err)
	}
	j := &Journal{path: path, final: filepath.Join(dir, t.Name+".json"), policy: p, f: f,
		dirty: make(chan struct{}, 1), urgent: make(chan struct{}, 1), stop: make(chan struct{}), syncerDone: make(chan struct{})}
	j.cond.L = &j.mu
	head := t
	head.Results = nil
	if head.Phases == nil {
		head.Phases = []Phase{}
	}
	if err := j.writeLine(journalLine{Journal: JournalFormat, Target: &head}); err == nil {
		err = f.Sync()
		if err == nil {
			err = syncDir(dir) // the file's name, too, is on disk
		}
	}
	if j.err != nil || err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("creating the journal of %s: %w", t.Name, errors.Join(j.err, err))
	}
	j.synced = j.written
	go j.syncer()
	return j, nil
}

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

// SetEnv records the environment the agent reported.
func (j *Journal) SetEnv(env *wire.Env) error {
	if env == nil {
		return nil
	}
	return j.append(journalLine{Env: env})
}

// Phase records a phase of the target's life that ended, so a journal
// read back after a crash says how far the target got.
func (j *Journal) Phase(p Phase) error { return j.append(journalLine{Phase: &p}) }

// Append records one scenario's outcome. When it returns the outcome is in
// the file (it survives lab's death) and, within the sync bound, on disk.
func (j *Journal) Append(o Outcome) error {
	if err := j.append(journalLine{Result: &o}); err != nil {
		return err
	}
	j.mu.Lock()
	j.results++
	j.mu.Unlock()
	return nil
}

// Synced reports how many lines are written and how many of them are known
// to be on disk; the difference is what a machine crash could take now.
func (j *Journal) Synced() (written, synced int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.written, j.synced
}

// append writes one line and holds the caller until the sync bound holds.
func (j *Journal) append(l journalLine) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.finished || j.closed {
		return fmt.Errorf("writing %s: the journal is closed", j.path)
	}
	if err := j.writeLine(l); err != nil {
		return err
	}
	notify(j.dirty)
	if j.written-j.synced >= j.policy.Lines {
		notify(j.urgent)
	}
	for j.written-j.synced > j.policy.Lines && j.err == nil {
		notify(j.urgent) // again: the sync under way may predate these lines
		j.cond.Wait()
	}
	return j.err
}

// notify leaves a token in c unless one waits there already.
func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// writeLine encodes l and writes it with one write(2); j.mu is held. A write
// cut short is cut off the file again, so the journal stays whole lines.
func (j *Journal) writeLine(l journalLine) error {
	if j.err != nil {
		return j.err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("encoding a line of %s: %w", j.path, err)
	}
	b = append(b, '\n')
	if _, err := j.f.Write(b); err != nil {
		terr := j.f.Truncate(j.size)
		j.err = fmt.Errorf("writing %s: %w", j.path, errors.Join(err, terr))
		j.cond.Broadcast()
		return j.err
	}
	j.size += int64(len(b))
	j.written++
	return nil
}

// syncer fsyncs the journal: SyncDelay after a line arrives, or at once when
// SyncLines lines wait, and a last time when the journal closes.
func (j *Journal) syncer() {
	defer close(j.syncerDone)
	for {
		select {
		case <-j.dirty:
		case <-j.stop:
			j.sync()
			return
		}
		t := time.NewTimer(j.policy.Delay)
		select {
		case <-t.C:
		case <-j.urgent:
		case <-j.stop:
			t.Stop()
			j.sync()
			return
		}
		t.Stop()
		j.sync()
	}
}

// sync makes every line written so far durable.
func (j *Journal) sync() {
	j.mu.Lock()
	n := j.written
	done := n == j.synced || j.err != nil
	j.mu.Unlock()
	if done {
		return
	}
	err := j.f.Sync() // concurrent writes are fine: it covers at least the first n lines
	j.mu.Lock()
	if err != nil && j.err == nil {
		j.err = fmt.Errorf("syncing %s: %w", j.path, err)
	}
	if err == nil && n > j.synced {
		j.synced = n
	}
	j.cond.Broadcast()
	j.mu.Unlock()
}

// Finish ends the journal with the target as it ended (status, error,
// phases, environment) and writes <target>.json once: final's fields, with
// final's results, which must be the ones appended (their number is
// checked); when final.Results is nil, the results are read back from the
// journal.
// When <target>.json is on disk the journal is removed. After Finish, the
// journal takes nothing more; Close is then a no-op.
func (j *Journal) Finish(final Target) error {
	j.mu.Lock()
	if j.finished || j.closed {
		j.mu.Unlock()
		return fmt.Errorf("finishing %s: the journal is closed", j.path)
	}
	if final.Results != nil && len(final.Results) != j.results {
		n := j.results
		j.mu.Unlock()
		return fmt.Errorf("finishing %s: the final target has %d results, the journal %d", j.path, len(final.Results), n)
	}
	end := final
	end.Results = nil
	err := j.writeLine(journalLine{Final: &end})
	j.finished = true
	j.mu.Unlock()
	if cerr := j.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("finishing %s: %w", j.path, err)
	}
	t := final
	if t.Results == nil {
		// Reading back costs a parse of every result: only a caller that
		// kept no copy of them pays it.
		if t, err = ReadJournal(j.path); err != nil {
			return fmt.Errorf("finishing %s: %w", j.path, err)
		}
	}
	if err := WriteJSON(j.final, t); err != nil {
		return fmt.Errorf("finishing %s: %w", j.path, err)
	}
	dir := filepath.Dir(j.path)
	if err := syncDir(dir); err != nil { // the .json's name is on disk before the journal goes
		return fmt.Errorf("finishing %s: %w", j.path, err)
	}
	if err := os.Remove(j.path); err != nil {
		return fmt.Errorf("finishing %s: %w", j.path, err)
	}
	return nil
}

// Close syncs what was written and closes the journal without a final line:
// the target ended without Finish (lab is shutting down on an error), and
// readers see a journal without a final status. Close after Finish, or
// twice, does nothing.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.finished || j.closed {
		j.mu.Unlock()
		return nil
	}
	j.mu.Unlock()
	if err := j.close(); err != nil {
		return fmt.Errorf("closing %s: %w", j.path, err)
	}
	return nil
}

// close stops the syncer after its last sync and closes the file, which
// releases the lock.
func (j *Journal) close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.mu.Unlock()
	close(j.stop)
	<-j.syncerDone
	j.mu.Lock()
	err := j.err
	j.cond.Broadcast()
	j.mu.Unlock()
	if cerr := j.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// ReadJournal rebuilds a target from its journal: the first line's target,
// its environment and phases, every result, and the final line's status
// when there is one. A last line without its newline is the one a crash cut
// short: it is ignored, and so is nothing else; any other line that does not
// read is an error naming the file and line. Without a final line the
// target is "running", with an Error saying whether its lab still holds the
// journal.
func ReadJournal(path string) (Target, error) {
	f, err := os.Open(path)
	if err != nil {
		return Target{}, fmt.Errorf("reading results: %w", err)
	}
	defer f.Close()
	t, err := readJournal(f, path)
	if err != nil {
		return Target{}, err
	}
	if t.Status == StatusRunning && t.Error == "" {
		t.Error = "the journal has no final status: lab stopped before this target finished"
		if writerAlive(f) {
			t.Error = "the journal has no final status yet: lab is still running this target"
		}
	}
	return t, nil
}

func readJournal(r io.Reader, path string) (Target, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	var (
		t     Target
		final *Target
		env   *wire.Env
		lines int
	)
	t.Results = []Outcome{}
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			break // a torn last line (or none): nothing Append returned for
		}
		if err != nil {
			return Target{}, fmt.Errorf("reading results %s: %w", path, err)
		}
		lines++
		bad := func(format string, a ...any) error {
			return fmt.Errorf("reading results %s:%d: %s", path, lines, fmt.Sprintf(format, a...))
		}
		var l journalLine
		if err := json.Unmarshal(line, &l); err != nil {
			if lines == 1 {
				return Target{}, bad("not a journal: %v", err)
			}
			return Target{}, bad("%v", err)
		}
		if lines == 1 {
			if l.Journal != JournalFormat || l.Target == nil {
				return Target{}, bad("not a journal: the first line must be {\"journal\":%q,\"target\":{...}}", JournalFormat)
			}
			t = *l.Target
			t.Results = []Outcome{}
			if t.Phases == nil {
				t.Phases = []Phase{}
			}
			continue
		}
		if l.Journal != "" || l.Target != nil {
			return Target{}, bad("a second journal header")
		}
		if n := count(l.Env != nil, l.Phase != nil, l.Result != nil, l.Final != nil); n != 1 {
			return Target{}, bad("a line must hold exactly one of env, phase, result, final; this one holds %d", n)
		}
		if final != nil {
			return Target{}, bad("a line after the final status")
		}
		switch {
		case l.Env != nil:
			env = l.Env
		case l.Phase != nil:
			t.Phases = append(t.Phases, *l.Phase)
		case l.Result != nil:
			t.Results = append(t.Results, *l.Result)
		case l.Final != nil:
			final = l.Final
		}
	}
	if lines == 0 {
		// lab died between creating the file and writing its first line.
		name := strings.TrimSuffix(filepath.Base(path), ".jsonl")
		return Target{Name: name, Status: StatusRunning, Phases: []Phase{}, Results: []Outcome{}}, nil
	}
	if env != nil {
		t.Env = env
	}
	if final != nil {
		results, phases, env := t.Results, t.Phases, t.Env
		t = *final
		t.Results = results
		if t.Phases == nil {
			t.Phases = phases
		}
		if t.Env == nil {
			t.Env = env
		}
	}
	return t, nil
}

func count(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
