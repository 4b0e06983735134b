package report_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"lab/report"
	"lab/rundir"
)

// FuzzReportFromResults carries arbitrary results files past rundir.Read
// (which FuzzReadRunDir covers) into what lab report, lab diff and lab merge
// do with a run that reads: every renderer, a baseline comparison, a diff
// against a second run, and merging the run with a copy of itself. Each
// must return output or an error, never panic.
func FuzzReportFromResults(f *testing.F) {
	run := `{"id":"r","started":"2026-11-25T09:00:00Z","status":"complete","targets":["t"],"scenarios":[{"id":"bsd-table/row1/off","proto":"tcp","steps":["socket A","bind A any:P"],"expect":{"answer":{"bsd":"EADDRINUSE"}}}]}`
	target := `{"name":"t","provider":"qemu","status":"complete","total":1,"env":{"os":"linux","kernel_release":"6.1.0"},"phases":[{"name":"run","ms":3}],"results":[{"id":"bsd-table/row1/off","outcome":"setup-failed","steps":[{"text":"socket A","result":"ok","ret":3},{"text":"bind A any:P","result":"EADDRINUSE","errno":98}],"claims":{"answer":"ok"}}]}`
	spread := `{"name":"t","status":"complete","env":{"os":"freebsd"},"results":[{"id":"distribution/udp","outcome":"even","spread":{"S1":10,"S2":0}},{"id":"x","outcome":"timeout"}]}`
	f.Add([]byte(run), []byte(target), []byte(target))
	f.Add([]byte(run), []byte(spread), []byte(target))
	f.Add([]byte(`{"targets":["t"]}`), []byte(`{"name":"t","results":[{"id":""},{"id":""}]}`), []byte(`{}`))
	f.Add([]byte(`{"targets":["t"],"scenarios":[{"id":"a"},{"id":"a"}]}`), []byte(`{"name":"t","results":[{"id":"a","outcome":"ok","claims":{"answer":"ok"},"claim_keys":{"answer":"linux<3.9"}}]}`), []byte(`{"name":"t","status":"failed"}`))
	f.Fuzz(func(t *testing.T, runJSON, targetJSON, otherJSON []byte) {
		// A hang is a failure too; the fuzzer would otherwise just stall.
		stuck := time.AfterFunc(3*time.Second, func() { panic(fmt.Sprintf("slow input:\n%q\n%q\n%q", runJSON, targetJSON, otherJSON)) })
		defer stuck.Stop()
		write := func(runJSON, targetJSON []byte) string {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "run.json"), runJSON, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "t.json"), targetJSON, 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}
		dirA, dirB := write(runJSON, targetJSON), write(runJSON, otherJSON)
		a, err := rundir.Read(dirA)
		if err != nil {
			return
		}
		c := report.Compare(a)
		report.Markdown(c)
		if _, err := report.HTML(c); err != nil {
			t.Logf("HTML: %v", err)
		}
		if _, err := report.JSON(c); err != nil {
			t.Logf("JSON: %v", err)
		}
		if _, err := report.JUnit(c); err != nil {
			t.Logf("JUnit: %v", err)
		}
		if b, err := rundir.Read(dirB); err == nil {
			report.Diff(a, b)
			report.Diff(b, a)
			c.WithBaseline(b)
			report.Markdown(c)
		}
		// Merging a run with a copy of itself: refused (the same targets
		// twice) or joined, never a panic.
		if _, err := rundir.Merge(filepath.Join(t.TempDir(), "merged"), []string{dirA, dirA}, "fuzz"); err != nil && err.Error() == "" {
			t.Fatal("empty error from Merge")
		}
	})
}
