//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lab/internal/gencatalog"
	"lab/internal/testenv"
	"lab/rundir"
)

// TestKilledMidRunKeepsResults runs a 2,000-scenario catalog on this machine
// with the lab binary and ends lab in the middle, once with SIGKILL and once
// with SIGINT. SIGKILL: every result lab had journalled before the kill is
// in the run directory and reads (lab report renders it); nothing
// journalled is lost and the agent died with lab. SIGINT: lab stops the
// agent, keeps every result the agent reported, writes <target>.json and
// exits 4.
func TestKilledMidRunKeepsResults(t *testing.T) {
	bin := labBinary(t)
	catalog := filepath.Join(t.TempDir(), "scenarios.yaml")
	f, err := os.Create(catalog)
	if err != nil {
		t.Fatal(err)
	}
	if err := gencatalog.Write(f, 2000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			out := t.TempDir()
			cmd := exec.Command(bin, "run", "--targets", "local", "--scenarios", catalog, "--out", out, "--cache", cacheDirForTest())
			cmd.Dir = "../.."
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			waited := false
			t.Cleanup(func() {
				if !waited {
					cmd.Process.Kill()
					<-done
				}
			})
			// Wait until lab has journalled a few hundred results.
			var journal string
			seen := 0
			for deadline := time.Now().Add(60 * time.Second); seen < 300; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("lab journalled %d results in 60 s", seen)
				}
				m, _ := filepath.Glob(filepath.Join(out, "*", rundir.JournalName("local")))
				if len(m) == 1 {
					journal = m[0]
					seen = resultLines(journal)
				}
			}
			agents := testenv.Children(cmd.Process.Pid)
			cmd.Process.Signal(sig)
			err := <-done
			waited = true
			dir := filepath.Dir(journal)
			d, rerr := rundir.Read(dir)
			if rerr != nil {
				t.Fatalf("reading the run directory after %v: %v", sig, rerr)
			}
			tr := d.Targets[0]
			t.Logf("%v after %d journalled results: lab %v; the directory holds %d results, status %s (%s)", sig, seen, err, len(tr.Results), tr.Status, tr.Error)
			if len(tr.Results) < seen {
				t.Errorf("%d results kept, but %d were journalled before the signal", len(tr.Results), seen)
			}
			ids := map[string]bool{}
			for _, r := range tr.Results {
				if ids[r.ID] {
					t.Errorf("%s twice", r.ID)
				}
				ids[r.ID] = true
			}
			switch sig {
			case syscall.SIGKILL:
				if tr.Status != rundir.StatusRunning || !strings.Contains(tr.Error, "lab stopped before this target finished") {
					t.Errorf("status %s (%q); want running with lab stopped before it finished", tr.Status, tr.Error)
				}
				if code, _, stderr := runLab(t, bin, nil, "report", dir); code != exitInfra {
					t.Errorf("lab report of the killed run: exit %d; want %d (a target without results of every scenario)\n%s", code, exitInfra, stderr)
				}
			case syscall.SIGINT:
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
					t.Errorf("lab exited %v; want %d", err, exitInterrupted)
				}
				if tr.Status != rundir.StatusInterrupted {
					t.Errorf("status %s; want interrupted", tr.Status)
				}
				if _, err := os.Stat(journal); !os.IsNotExist(err) {
					t.Errorf("the journal outlived the interrupted target's .json: %v", err)
				}
			}
			// The agent does not outlive lab (Pdeathsig, or SIGINT).
			for _, child := range agents {
				var pid int
				fmt.Sscan(child, &pid)
				for end := time.Now().Add(5 * time.Second); testenv.Alive(pid) && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				}
				if testenv.Alive(pid) {
					t.Errorf("agent %s outlived lab", child)
				}
			}
		})
	}
}

func resultLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `{"result":`) {
			n++
		}
	}
	return n
}
