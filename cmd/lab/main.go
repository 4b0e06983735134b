// Command lab measures what bind(), listen() and connect() do with
// SO_REUSEADDR, SO_REUSEPORT and friends on real kernels, and regenerates the
// StackOverflow answer's table from observation.
//
//	lab run [--targets local,linux-6.1] [--scenarios FILE] [--only GLOB] [--out DIR] [--shard I/N] [--baseline DIR] [--keep] [--cold]
//	lab targets               list targets and whether this host can run them
//	lab validate [FILE]       check a scenarios file
//	lab report RUN_DIR        render a run's reports again (Markdown, HTML, JSON, JUnit)
//	lab diff RUN_A RUN_B      list behaviour that changed between two runs
//	lab merge DIR... --out D  join the shards of a run (lab run --shard i/n)
//	lab image build [NAME...] build what targets need (microVM guests, stacks' libraries)
//	lab image fetch NAME      download and verify an official cloud image
//	lab image prune [-n]      remove superseded images and the .debs no image uses
//	lab repro --target T --scenario ID [--emit c|go] [--keep]
//	                          one scenario on one target, fully traced
//	lab shell T               a shell on a target kept running by --keep
//	lab down [T...]           stop targets kept running by --keep
//	lab version               what this lab is: version, Go, agent and catalog hashes
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"

	"lab/orchestrator"
	"lab/scenario"
	"lab/target"
)

// Exit codes a CI can act on.
const (
	exitOK          = 0
	exitChanged     = 1 // an outcome differs from the baseline (run, report, merge) or between the runs (diff)
	exitUsage       = 2 // bad flags or bad input files
	exitInfra       = 3 // a target failed to run (boot, SSH, agent died)
	exitInterrupted = 4 // Ctrl-C or SIGTERM; results so far are kept
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

const usage = `usage: lab <command> [flags]

commands:
  run        run the scenarios on targets and write a report
  targets    list the targets and what each needs to run here
  validate   check a scenarios file
  report     render the reports of a run directory again
  diff       list behaviour that changed between two runs
  merge      join the run directories of shards into one
  image      build what targets need (lab image build [NAME...]), fetch cloud images (lab image fetch NAME),
             or prune old guest images (lab image prune)
  repro      run one scenario on one target with a full trace (--emit c|go)
  shell      open a shell on a target kept running by --keep
  down       stop targets kept running by --keep
  version    print lab's version, its Go, and the hashes of the agent sources and catalog it carries

Run "lab <command> -h" for a command's flags.
`

func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return exitUsage
	}
	cmds := map[string]func(context.Context, []string) int{
		"run": cmdRun, "targets": cmdTargets, "validate": cmdValidate, "report": cmdReport, "image": cmdImage,
		"diff": cmdDiff, "merge": cmdMerge,
		"repro": cmdRepro, "shell": cmdShell, "down": cmdDown,
		"version": func(_ context.Context, args []string) int { return cmdVersion(os.Stdout, args) },
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return exitOK
	}
	f, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "lab: unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
	return f(ctx, args[1:])
}

// common holds the flags every command that reads configuration shares.
type common struct {
	targetsFile pathFlag
	cacheDir    string
	verbose     bool
}

// pathFlag is a flag naming a file that remembers whether it was given: a
// default file that does not exist gives way to lab's built-in copy, a file
// named on purpose must exist.
type pathFlag struct {
	path string
	set  bool
}

func (p *pathFlag) String() string { return p.path }

func (p *pathFlag) Set(s string) error {
	p.path, p.set = s, true
	return nil
}

func (c *common) register(fs *flag.FlagSet) {
	c.targetsFile = pathFlag{path: "lab.yaml"}
	fs.Var(&c.targetsFile, "file", "targets file (default lab.yaml; lab's built-in targets when there is none here)")
	fs.StringVar(&c.cacheDir, "cache", defaultCache(), "cache for guest images and agent builds")
	fs.BoolVar(&c.verbose, "v", false, "debug logging")
}

func (c *common) logger() hclog.Logger {
	level := hclog.Info
	if c.verbose {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{Name: "lab", Level: level, Output: os.Stderr})
}

// env is what providers get outside a run (lab image build).
func (c *common) env(log hclog.Logger) target.Env {
	return target.Env{CacheDir: c.cacheDir, Log: log, Phase: func(string) {}}
}

func defaultCache() string {
	if d := os.Getenv("LAB_CACHE"); d != "" {
		return d
	}
	// Not under $HOME/.cache: QEMU and the agent's second user must read
	// what is here, and /root is 0700.
	return filepath.Join(os.TempDir(), "lab-cache")
}

func cmdRun(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var c common
	c.register(fs)
	targets := fs.String("targets", "local", "comma-separated targets to run on")
	scenFile := pathFlag{path: "scenarios.yaml"}
	fs.Var(&scenFile, "scenarios", "scenarios file (default scenarios.yaml; lab's built-in catalog when there is none here)")
	only := fs.String("only", "", "comma-separated globs of scenario ids to run (e.g. 'bsd-table/*,timewait/*')")
	out := fs.String("out", "results", "directory the run's directory is created in")
	parallel := fs.Int("parallel", orchestrator.DefaultParallel(), "targets run at once")
	shard := fs.String("shard", "", "run only slice i/n of the selected targets (e.g. 2/4), for lab merge to join")
	baseline := fs.String("baseline", "", "run directory to compare with: outcomes that differ from it exit 1")
	keep := fs.Bool("keep", false, "leave lab's microVMs and Vagrant machines running after the run, for later runs to reuse (lab down stops microVMs)")
	cold := fs.Bool("cold", false, "boot microVMs without restoring a snapshot, and save none")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	var progress orchestrator.Progress
	log := c.logger()
	if isatty.IsTerminal(os.Stderr.Fd()) && !c.verbose {
		// Log lines go above the live view, which redraws below them.
		tp := &orchestrator.TermProgress{W: os.Stderr}
		log = hclog.New(&hclog.LoggerOptions{Name: "lab", Level: hclog.Info, Output: tp})
		progress = tp
	} else {
		progress = &orchestrator.LogProgress{Log: log}
	}
	base, err := readBaseline(*baseline)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	scs, catalogIn, err := catalog(scenFile.path, scenFile.set)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	scs = scenario.Filter(scs, *only)
	if len(scs) == 0 {
		fmt.Fprintf(os.Stderr, "lab: no scenario of %s matches --only %q\n", catalogIn.Path, *only)
		return exitUsage
	}
	all, targetsIn, err := c.targetsWithSource()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	sel, err := target.Select(all, *targets)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	if *shard != "" {
		if sel, err = target.Shard(sel, *shard); err != nil {
			fmt.Fprintln(os.Stderr, "lab:", err)
			return exitUsage
		}
	}
	if *keep {
		// --keep applies to the targets whose provider can keep them.
		for i := range sel {
			sel[i].Keep = sel[i].Keep || target.CanKeep(sel[i]) == nil
		}
	}
	fmt.Fprintf(os.Stderr, "scenarios: %s\ntargets:   %s\n", describe(catalogIn), describe(targetsIn))
	sum, err := orchestrator.Run(ctx, orchestrator.Options{
		Cold:        *cold,
		Catalog:     catalogIn,
		TargetsFile: targetsIn,
		Build:       build(),
		Targets:     sel,
		Scenarios:   scs,
		ResultsDir:  *out,
		CacheDir:    c.cacheDir,
		Parallel:    *parallel,
		Command:     "lab run " + strings.Join(args, " "),
		Log:         log,
		Progress:    progress,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitInfra
	}
	fmt.Fprintf(os.Stderr, "\nresults: %s\n", sum.Dir)
	rep, paths, rerr := writeReports(sum.Dir, base)
	if rerr != nil {
		fmt.Fprintln(os.Stderr, "lab:", rerr)
		return exitInfra
	}
	printReports(os.Stderr, rep, paths)
	switch {
	case sum.Canceled:
		return exitInterrupted
	case len(sum.Failed()) > 0:
		return exitInfra
	}
	return resultCode(rep)
}

func cmdValidate(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	file, explicit := "scenarios.yaml", fs.NArg() > 0
	if explicit {
		file = fs.Arg(0)
	}
	scs, in, err := catalog(file, explicit)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitUsage
	}
	file = in.Path
	claims := 0
	for _, s := range scs {
		if len(s.Expect["answer"]) > 0 {
			claims++
		}
	}
	fmt.Printf("%s: %d scenarios, %d with claims of the answer\n", file, len(scs), claims)
	return exitOK
}

func cmdTargets(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("targets", flag.ContinueOnError)
	var c common
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	ts, err := c.targets()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	for _, t := range ts {
		status := "ready"
		if err := target.Check(t, c.env(c.logger())); err != nil {
			status = err.Error()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", t.Name, t.Describe(), status)
	}
	w.Flush()
	return exitOK
}
