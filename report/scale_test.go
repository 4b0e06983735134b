package report_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"lab/internal/gencatalog"
	"lab/report"
	"lab/rundir"
)

// The reports at the size of issue 15: generated run directories of 1,000
// and 10,000 scenarios on 5 targets (gencatalog.WriteRunDir: test data, not
// a kernel), rendered in the same run and the ratio printed. Linear work
// gives about 10; the square of anything, 100.
//
//	go test ./report -run '^$' -bench 'ReportsAtScale|PeakRSS' -benchtime 3x

const (
	smallRun = 1000
	largeRun = 10000
)

// childEnv sends this test binary, run again by the benchmarks below, to
// renderTimed: the run directory to read and render, as lab report would in
// a process of its own (so neither the other run's data nor the benchmark's
// own heap weighs on its garbage collector or its peak).
const childEnv = "LAB_REPORT_SCALE_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		if err := renderTimed(dir, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// generatedRun writes a run directory of n scenarios on 5 targets under
// parent, as .json files or as journals, and returns it.
func generatedRun(tb testing.TB, parent string, n int, journal bool) string {
	tb.Helper()
	dir := filepath.Join(parent, fmt.Sprintf("run-%d-%v", n, journal))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := gencatalog.WriteRunDir(dir, gencatalog.RunDirOptions{Scenarios: n, Journal: journal}); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// measured is what a child reports: each stage's wall time and the
// process's peak resident set.
type measured struct {
	Stages []stage `json:"stages"`
	HWMKiB int64   `json:"hwm_kib"` // VmHWM of /proc/self/status
}

type stage struct {
	Name   string  `json:"name"`
	Millis float64 `json:"ms"`
}

// renderTimed is what lab report does with a run directory (read, compare,
// render each report and write it before the next), timing each stage; it
// prints the measurements as JSON on w.
func renderTimed(dir string, w io.Writer) error {
	var m measured
	start := time.Now()
	lap := func(name string) {
		m.Stages = append(m.Stages, stage{name, float64(time.Since(start).Microseconds()) / 1000})
		start = time.Now()
	}
	d, err := rundir.Read(dir)
	if err != nil {
		return err
	}
	lap("read")
	c := report.Compare(d)
	lap("compare")
	for _, r := range []struct {
		name   string
		render func(*report.Comparison) ([]byte, error)
	}{
		{"report.md", func(c *report.Comparison) ([]byte, error) { return report.Markdown(c), nil }},
		{"report.html", report.HTML},
		{"report.json", report.JSON},
		{"junit.xml", report.JUnit},
	} {
		b, err := r.render(c)
		if err != nil {
			return err
		}
		if err := rundir.WriteFile(filepath.Join(dir, r.name), b); err != nil {
			return err
		}
		lap(r.name)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			m.HWMKiB, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return json.NewEncoder(w).Encode(m)
}

// runChild renders dir in a child process and returns its measurements.
func runChild(tb testing.TB, dir string) measured {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("child rendering %s: %v\n%s", dir, err, stderr.String())
	}
	var m measured
	if err := json.Unmarshal(out, &m); err != nil {
		tb.Fatalf("child rendering %s printed %q: %v", dir, out, err)
	}
	return m
}

// BenchmarkReportsAtScale renders a 1,000- and a 10,000-scenario run of 5
// targets (and the same as journals, as a lab killed mid-run leaves them),
// each in a fresh process as lab report does, alternately in every
// iteration. It reports the whole pipeline's milliseconds for each and
// their ratio, the worst ratio of any one stage, and logs every stage.
func BenchmarkReportsAtScale(b *testing.B) {
	parent := b.TempDir()
	for _, journal := range []bool{false, true} {
		dirs := [2]string{generatedRun(b, parent, smallRun, journal), generatedRun(b, parent, largeRun, journal)}
		name := "json"
		if journal {
			name = "journals"
		}
		b.Run(name, func(b *testing.B) {
			var sums [2]map[string]float64
			var names []string
			for b.Loop() {
				for k, dir := range dirs {
					m := runChild(b, dir)
					if sums[k] == nil {
						sums[k] = map[string]float64{}
					}
					names = names[:0]
					for _, st := range m.Stages {
						sums[k][st.Name] += st.Millis
						sums[k]["total"] += st.Millis
						names = append(names, st.Name)
					}
				}
			}
			n := float64(b.N)
			worst, worstStage := 0.0, ""
			for _, st := range names {
				r := sums[1][st] / sums[0][st]
				b.Logf("%-12s %9.1f ms for 1,000 scenarios  %9.1f ms for 10,000  ratio %5.2f", st, sums[0][st]/n, sums[1][st]/n, r)
				if r > worst {
					worst, worstStage = r, st
				}
			}
			b.Logf("worst stage: %s", worstStage)
			b.ReportMetric(sums[0]["total"]/n, "ms/1k-scenarios")
			b.ReportMetric(sums[1]["total"]/n, "ms/10k-scenarios")
			b.ReportMetric(sums[1]["total"]/sums[0]["total"], "ratio")
			b.ReportMetric(worst, "worst-stage-ratio")
			b.ReportMetric(0, "ns/op") // the figures above are the result
		})
	}
}

// BenchmarkPeakRSS reports the peak resident set (VmHWM) of a process that
// reads a run directory, compares it and renders the four reports, as lab
// report does, for 1,000 and 10,000 scenarios on 5 targets, their ratio,
// and the results' size on disk beside them.
func BenchmarkPeakRSS(b *testing.B) {
	parent := b.TempDir()
	dirs := []string{generatedRun(b, parent, smallRun, false), generatedRun(b, parent, largeRun, false)}
	var rss [2]float64
	for b.Loop() {
		for k, dir := range dirs {
			rss[k] += float64(runChild(b, dir).HWMKiB) / 1024
		}
	}
	n := float64(b.N)
	b.ReportMetric(rss[0]/n, "MiB-peak/1k-scenarios")
	b.ReportMetric(rss[1]/n, "MiB-peak/10k-scenarios")
	b.ReportMetric(rss[1]/rss[0], "ratio")
	b.ReportMetric(resultsMiB(b, dirs[0]), "MiB-results/1k")
	b.ReportMetric(resultsMiB(b, dirs[1]), "MiB-results/10k")
	b.ReportMetric(0, "ns/op")
}

// resultsMiB is the size of a run directory's results files.
func resultsMiB(tb testing.TB, dir string) float64 {
	tb.Helper()
	var total int64
	for _, pattern := range []string{"*.json", "*.jsonl"} {
		files, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, f := range files {
			if filepath.Base(f) == "report.json" {
				continue
			}
			fi, err := os.Stat(f)
			if err != nil {
				tb.Fatal(err)
			}
			total += fi.Size()
		}
	}
	return float64(total) / (1 << 20)
}
