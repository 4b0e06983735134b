package rundir_test

import (
	"path/filepath"
	"testing"
	"time"

	"lab/rundir"
)

// BenchmarkJournalAppend appends 10,000 results to a journal and reports
// what an Append cost over the first 1,000 and over the last 1,000, and
// their ratio: a cost that does not grow with the results already written
// gives about 1. For scale, it times the results file rewritten whole after
// every result (what lab did before the journal) over the first 500 and
// results 501 to 1,000, whose ratio (about 2) is the growth per result, the
// square in all, that the journal removes.
//
//	go test ./rundir -run '^$' -bench JournalAppend -benchtime 3x
func BenchmarkJournalAppend(b *testing.B) {
	const n, window, rewriteWindow = 10000, 1000, 500
	var first, last, rewriteFirst, rewriteSecond time.Duration
	for b.Loop() {
		dir := b.TempDir()
		j, err := rundir.CreateJournal(dir, header("t", n))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := range n {
			if i == n-window {
				start = time.Now()
			}
			if err := j.Append(outcome(i)); err != nil {
				b.Fatal(err)
			}
			if i == window-1 {
				first += time.Since(start)
			}
		}
		last += time.Since(start)
		final := header("t", n)
		final.Status = rundir.StatusComplete
		if err := j.Finish(final); err != nil {
			b.Fatal(err)
		}

		// The old way: the whole target rewritten and fsynced per result.
		t := header("t", 2*rewriteWindow)
		path := filepath.Join(dir, "rewritten.json")
		start = time.Now()
		for i := range 2 * rewriteWindow {
			if i == rewriteWindow {
				rewriteFirst += time.Since(start)
				start = time.Now()
			}
			t.Results = append(t.Results, outcome(i))
			if err := rundir.WriteJSON(path, t); err != nil {
				b.Fatal(err)
			}
		}
		rewriteSecond += time.Since(start)
	}
	per := func(d time.Duration, w int) float64 { return float64(d.Microseconds()) / float64(b.N) / float64(w) }
	b.ReportMetric(per(first, window), "µs/append-first-1k")
	b.ReportMetric(per(last, window), "µs/append-last-1k")
	b.ReportMetric(float64(last)/float64(first), "ratio")
	b.ReportMetric(per(rewriteFirst, rewriteWindow), "µs/rewrite-first-500")
	b.ReportMetric(per(rewriteSecond, rewriteWindow), "µs/rewrite-second-500")
	b.ReportMetric(float64(rewriteSecond)/float64(rewriteFirst), "rewrite-ratio")
	b.ReportMetric(0, "ns/op")
}
