package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"lab/report"
	"lab/rundir"
)

// reportFiles are what lab renders into a run directory, from its results
// alone.
var reportFiles = []struct {
	name   string
	render func(*report.Comparison) ([]byte, error)
}{
	{"report.md", func(c *report.Comparison) ([]byte, error) { return report.Markdown(c), nil }},
	{"report.html", report.HTML},
	{"report.json", report.JSON},
	{"junit.xml", report.JUnit},
}

// writeReports renders every report of the run directory dir, compared with
// baseline when it is not nil, and returns the comparison and the files
// written.
func writeReports(dir string, baseline *rundir.Dir) (*report.Comparison, []string, error) {
	d, err := rundir.Read(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("rendering the report of %s: %w", dir, err)
	}
	c := report.Compare(d)
	if baseline != nil {
		c.WithBaseline(baseline)
	}
	var paths []string
	for _, f := range reportFiles {
		b, err := f.render(c)
		if err != nil {
			return nil, nil, fmt.Errorf("rendering %s of %s: %w", f.name, dir, err)
		}
		path := filepath.Join(dir, f.name)
		if err := rundir.WriteFile(path, b); err != nil {
			return nil, nil, err
		}
		paths = append(paths, path)
	}
	return c, paths, nil
}

// readBaseline reads the run directory given with --baseline; "" is none.
func readBaseline(dir string) (*rundir.Dir, error) {
	if dir == "" {
		return nil, nil
	}
	d, err := rundir.Read(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the baseline run: %w", err)
	}
	return d, nil
}

// resultCode is the exit code a run's results call for: interrupted, else
// a target that did not complete, else a change since the baseline, else
// success. Disagreements with the answer are findings, not failures: they
// are in the reports (and failures in junit.xml when there is no baseline).
func resultCode(c *report.Comparison) int {
	if c.Dir.Run.Status == rundir.StatusInterrupted {
		return exitInterrupted
	}
	for _, t := range c.Targets {
		if t.Status == rundir.StatusInterrupted {
			return exitInterrupted
		}
	}
	for _, t := range c.Targets {
		if t.Status != rundir.StatusComplete {
			return exitInfra
		}
	}
	if c.Baseline != nil && len(c.Changes()) > 0 {
		return exitChanged
	}
	return exitOK
}

// printReports says where the reports are (on w) and what the comparison
// found (on stderr).
func printReports(w io.Writer, c *report.Comparison, paths []string) {
	label := "" // bare paths on stdout, for scripts
	if w == os.Stderr {
		label = "report:  "
	}
	for _, p := range paths {
		fmt.Fprintf(w, "%s%s\n", label, p)
		if label != "" {
			label = "         "
		}
	}
	fs := report.FindingCounts(c.Findings())
	fmt.Fprintf(os.Stderr, "%d scenarios disagree with the %s: %d findings (%d from its words, %d beyond it, %d where a kernel misses its own selftests)",
		len(c.Disagreements()), c.Source, fs[report.Stated]+fs[report.Beyond]+fs[report.OwnTests], fs[report.Stated], fs[report.Beyond], fs[report.OwnTests])
	if c.Baseline != nil {
		fmt.Fprintf(os.Stderr, "; %d outcomes changed since the baseline run %s", len(c.Changes()), c.Baseline.Run.ID)
	}
	fmt.Fprintln(os.Stderr)
	for _, ch := range c.Changes() {
		fmt.Fprintf(os.Stderr, "  changed on %s: %s %s -> %s\n", ch.Target, ch.Scenario, ch.Before, ch.After)
	}
	for _, t := range c.Targets {
		if t.Status != rundir.StatusComplete {
			fmt.Fprintf(os.Stderr, "target %s %s: %s\n", t.Name, t.Status, t.Error)
		}
	}
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments ("lab merge a b --out c") and returns the latter;
// everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func cmdReport(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	baseline := fs.String("baseline", "", "run directory to compare with: outcomes that differ from it are failures (exit 1)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: lab report [--baseline RUN_DIR] RUN_DIR\n\nRenders report.md, report.html, report.json and junit.xml into RUN_DIR from its results.")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitUsage
	}
	base, err := readBaseline(*baseline)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	c, paths, err := writeReports(pos[0], base)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	printReports(os.Stdout, c, paths)
	return resultCode(c)
}

func cmdDiff(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("diff", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: lab diff RUN_A RUN_B\n\nLists, per target name, the scenarios whose outcome changed from RUN_A to RUN_B; exits 1 if any did.")
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) != 2 {
		fs.Usage()
		return exitUsage
	}
	var dirs [2]*rundir.Dir
	for i, p := range pos {
		if dirs[i], err = rundir.Read(p); err != nil {
			fmt.Fprintf(os.Stderr, "lab: diff: %v\n", err)
			return exitUsage
		}
	}
	d := report.Diff(dirs[0], dirs[1])
	os.Stdout.Write(d.Text())
	if len(d.Changes) > 0 {
		return exitChanged
	}
	return exitOK
}

func cmdMerge(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("merge", flag.ContinueOnError)
	out := fs.String("out", "", "run directory to create with the shards' results (required; must not exist)")
	baseline := fs.String("baseline", "", "run directory to compare the merged run with (exit 1 when an outcome differs)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: lab merge SHARD_DIR... --out DIR [--baseline RUN_DIR]\n\nJoins the run directories of lab run --shard i/n into one and renders its reports.")
		fs.PrintDefaults()
	}
	shards, err := parseInterleaved(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(shards) == 0 || *out == "" {
		fs.Usage()
		return exitUsage
	}
	base, err := readBaseline(*baseline)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	if _, err := rundir.Merge(*out, shards, "lab merge "+strings.Join(args, " ")); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	c, paths, err := writeReports(*out, base)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitInfra
	}
	fmt.Fprintf(os.Stderr, "results: %s\n", *out)
	printReports(os.Stderr, c, paths)
	return resultCode(c)
}
