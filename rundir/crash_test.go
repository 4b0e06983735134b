package rundir_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lab/rundir"
	"lab/wire"
)

// The crash test runs this test binary again as a child that journals
// results (TestMain sends it to journalChild): the child is a real process
// the kernel kills, not a simulation of one.
const childEnv = "LAB_RUNDIR_JOURNAL_CHILD" // "dir mode n"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		journalChild(spec)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// bigReason is how every seventh result is padded when the child is to be
// killed: a line of a quarter
// megabyte is written in many pages, so a kill can land in the middle of
// its write(2) and tear it.
const bigReason = 256 << 10

// giantReason pads the last result of a child killed in mid-write.
const giantReason = 96 << 20

func crashOutcome(i int, big bool) rundir.Outcome {
	o := outcome(i)
	if big && i%7 == 6 {
		o.Outcome, o.Reason = wire.Error, strings.Repeat("r", bigReason)
	}
	return o
}

// journalChild appends results until killed ("kill") or n of them and
// finishes ("finish"), printing after each Append returns "appended I W S":
// the result's index and the journal's lines written and synced.
func journalChild(spec string) {
	var dir, mode string
	var n int
	if _, err := fmt.Sscan(spec, &dir, &mode, &n); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		os.Exit(2)
	}
	j, err := rundir.CreateJournal(dir, header("t", n))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := j.SetEnv(env); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 0; i < n; i++ {
		if mode == "tear" && i == n-1 {
			// One line so long that writing it takes long enough for the
			// parent to kill the child in the middle of the write(2).
			fmt.Fprintln(out, "giant")
			out.Flush()
			o := outcome(i)
			o.Reason = strings.Repeat("g", giantReason)
			j.Append(o)
			time.Sleep(time.Minute) // the kill comes first
		}
		if err := j.Append(crashOutcome(i, mode == "kill")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		w, s := j.Synced()
		fmt.Fprintf(out, "appended %d %d %d\n", i, w, s)
		if err := out.Flush(); err != nil {
			os.Exit(3) // the parent went away
		}
	}
	final := header("t", n)
	final.Status = rundir.StatusComplete
	if err := j.Finish(final); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Fprintln(out, "finished")
	out.Flush()
}

// runChild starts the child and reads its acknowledgements; after killAt of
// them (0: never) it kills the child with SIGKILL. It returns how many
// results the child acknowledged, the worst unsynced count it saw, and
// whether it said it finished.
func runChild(t *testing.T, dir, mode string, n, killAt int) (acked, worstUnsynced int, finished bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", childEnv, dir, mode, n))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "appended":
			i, _ := strconv.Atoi(f[1])
			w, _ := strconv.Atoi(f[2])
			s, _ := strconv.Atoi(f[3])
			if i != acked {
				t.Fatalf("child acknowledged result %d after %d others", i, acked)
			}
			acked++
			worstUnsynced = max(worstUnsynced, w-s)
		case len(f) == 1 && f[0] == "finished":
			finished = true
		case len(f) == 1 && f[0] == "giant":
			// Kill as soon as the giant line starts to reach the file.
			path := filepath.Join(dir, "t.jsonl")
			before := fileSize(t, path)
			deadline := time.Now().Add(time.Minute)
			for fileSize(t, path) == before && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		default:
			t.Fatalf("child printed %q", sc.Text())
		}
		if killAt > 0 && acked == killAt && !killed {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true // keep reading: acknowledgements still in the pipe count
		}
	}
	err = cmd.Wait()
	if killAt > 0 || mode == "tear" {
		var ee *exec.ExitError
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child was to die of SIGKILL: %v (%v)\n%s", err, ee, stderr.String())
		}
	} else if err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	return acked, worstUnsynced, finished
}

// TestJournalSurvivesSIGKILL kills a journalling process with SIGKILL in
// the middle of its stream, several times: the journal read back holds every
// result whose Append returned before the kill (and at most the one being
// acknowledged when it came), each whole and in order; a line torn by the
// kill is ignored. The child's own Synced figures show the sync bound held
// in a real process. A clean exit keeps all of them, as <target>.json.
//
// SIGKILL cannot test fsync itself: the page cache outlives the process.
// The bound on a machine crash is the fsync schedule, which
// TestJournalSyncBound and the Synced figures here check.
func TestJournalSurvivesSIGKILL(t *testing.T) {
	torn := 0
	for round, killAt := range []int{1, 150, 701, 1500} {
		t.Run(fmt.Sprintf("kill after %d", killAt), func(t *testing.T) {
			dir := t.TempDir()
			acked, worst, finished := runChild(t, dir, "kill", 1_000_000, killAt)
			if finished {
				t.Fatal("the child finished before the kill")
			}
			if worst > rundir.SyncLines {
				t.Errorf("the child saw %d lines unsynced after an Append; the bound is %d", worst, rundir.SyncLines)
			}
			path := filepath.Join(dir, "t.jsonl")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tornHere := len(raw) > 0 && raw[len(raw)-1] != '\n'
			if tornHere {
				torn++
			}
			tg, err := rundir.ReadJournal(path)
			if err != nil {
				t.Fatalf("reading the journal of a killed lab: %v", err)
			}
			if n := len(tg.Results); n < acked || n > acked+1 {
				t.Fatalf("journal holds %d results; the child acknowledged %d before it died", n, acked)
			}
			for i, r := range tg.Results {
				want := crashOutcome(i, true)
				if r.ID != want.ID || r.Outcome != want.Outcome || len(r.Reason) != len(want.Reason) || len(r.Steps) != 2 {
					t.Fatalf("result %d read back as %s %s (reason %d bytes); want %s %s (%d)", i, r.ID, r.Outcome, len(r.Reason), want.ID, want.Outcome, len(want.Reason))
				}
			}
			if tg.Status != rundir.StatusRunning || !strings.Contains(tg.Error, "lab stopped before this target finished") || tg.Env == nil {
				t.Errorf("killed target: status %s, error %q, env %v", tg.Status, tg.Error, tg.Env)
			}
			// The run directory's reader sees the same.
			if err := rundir.WriteJSON(filepath.Join(dir, "run.json"), rundir.Run{ID: "r", Status: rundir.StatusRunning, Targets: []string{"t"}}); err != nil {
				t.Fatal(err)
			}
			d, err := rundir.Read(dir)
			if err != nil || len(d.Targets) != 1 || len(d.Targets[0].Results) != len(tg.Results) {
				t.Fatalf("Read: %v, %+v", err, d)
			}
			t.Logf("round %d: killed after %d acknowledgements, %d results kept, %d unsynced at worst, torn last line: %v",
				round, acked, len(tg.Results), worst, tornHere)
		})
	}
	t.Logf("%d of the kills tore the line being written", torn)

	t.Run("clean exit", func(t *testing.T) {
		dir := t.TempDir()
		const n = 2000
		acked, worst, finished := runChild(t, dir, "finish", n, 0)
		if acked != n || !finished {
			t.Fatalf("child acknowledged %d of %d, finished %v", acked, n, finished)
		}
		assertOnly(t, dir, "t.json")
		if err := rundir.WriteJSON(filepath.Join(dir, "run.json"), rundir.Run{ID: "r", Status: rundir.StatusComplete, Targets: []string{"t"}}); err != nil {
			t.Fatal(err)
		}
		d, err := rundir.Read(dir)
		if err != nil {
			t.Fatal(err)
		}
		tg := d.Targets[0]
		if len(tg.Results) != n || tg.Status != rundir.StatusComplete || tg.Env == nil {
			t.Fatalf("after a clean exit: %d results, status %s", len(tg.Results), tg.Status)
		}
		for i, r := range tg.Results {
			if r.ID != crashOutcome(i, false).ID {
				t.Fatalf("result %d is %s", i, r.ID)
			}
		}
		t.Logf("clean exit: %d of %d results, %d unsynced at worst", len(tg.Results), n, worst)
	})
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestJournalTornBySIGKILL kills a journalling process while it writes one
// very long line: the file ends in part of that line, and the journal still
// reads, with every result before it.
func TestJournalTornBySIGKILL(t *testing.T) {
	dir := t.TempDir()
	const n = 11 // ten results acknowledged, then the giant one
	acked, _, _ := runChild(t, dir, "tear", n, 0)
	if acked != n-1 {
		t.Fatalf("child acknowledged %d results before the giant one; want %d", acked, n-1)
	}
	path := filepath.Join(dir, "t.jsonl")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := rundir.ReadJournal(path)
	if err != nil {
		t.Fatalf("reading a journal torn by SIGKILL: %v", err)
	}
	torn := raw[len(raw)-1] != '\n'
	switch {
	case torn && len(tg.Results) == n-1:
		t.Logf("the kill tore the giant line after %d of its %d bytes; %d results read back", len(raw)-bytes.LastIndexByte(raw, '\n')-1, giantReason, len(tg.Results))
	case !torn && len(tg.Results) == n:
		t.Logf("the giant line was written whole before the kill; %d results read back", len(tg.Results))
	default:
		t.Fatalf("torn %v, %d results; want %d whole ones before a torn line, or %d", torn, len(tg.Results), n-1, n)
	}
}
