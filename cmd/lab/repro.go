package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"lab/emit"
	"lab/orchestrator"
	"lab/rundir"
	"lab/scenario"
	"lab/wire"
)

// cmdRepro runs one scenario on one target with its full trace and, with
// --emit, checks a standalone reproducer against it on the same target.
func cmdRepro(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("repro", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: lab repro --target T --scenario ID [--keep] [--emit c|go]")
		fs.PrintDefaults()
	}
	var c common
	c.register(fs)
	target := fs.String("target", "local", "the target to run on")
	id := fs.String("scenario", "", "the id of the scenario to run")
	scenFile := fs.String("scenarios", "scenarios.yaml", "scenarios file")
	out := fs.String("out", "results", "directory the run's directory is created in")
	keep := fs.Bool("keep", false, "leave the microVM running (lab shell T, lab down T); a kept one is reused")
	lang := fs.String("emit", "", "write a reproducer in c or go, run it on the target and compare its trace")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "lab repro: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	if *id == "" {
		fmt.Fprintln(os.Stderr, "lab repro: --scenario is required")
		return exitUsage
	}
	if *lang != "" && *lang != "c" && *lang != "go" {
		fmt.Fprintf(os.Stderr, "lab repro: --emit %q: want c or go\n", *lang)
		return exitUsage
	}
	scs, err := scenario.ParseFile(*scenFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	var sc *scenario.Scenario
	for i := range scs {
		if scs[i].ID == *id {
			sc = &scs[i]
		}
	}
	if sc == nil {
		fmt.Fprintf(os.Stderr, "lab repro: no scenario %q in %s\n", *id, *scenFile)
		return exitUsage
	}
	if *lang != "" {
		if err := emit.Check(sc.Scenario); err != nil {
			fmt.Fprintf(os.Stderr, "lab repro: %s: %v\n", sc.ID, err)
			return exitUsage
		}
	}
	all, err := c.targets()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	sel, err := orchestrator.Select(all, *target)
	if err != nil || len(sel) != 1 {
		fmt.Fprintf(os.Stderr, "lab repro: --target %q: %v\n", *target, err)
		return exitUsage
	}
	t := sel[0]
	if *keep && (t.Provider != "qemu" || t.Suite == "") {
		fmt.Fprintf(os.Stderr, "lab repro: --keep works for qemu microVM targets only, not %s (provider %s)\n", t.Name, t.Provider)
		return exitUsage
	}
	log := c.logger()
	provs := orchestrator.Providers()
	inner, ok := provs[t.Provider]
	if !ok {
		fmt.Fprintf(os.Stderr, "lab repro: target %s: no provider %q\n", t.Name, t.Provider)
		return exitUsage
	}
	hold := &orchestrator.Hold{Inner: inner, Keep: *keep}
	provs[t.Provider] = hold
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := hold.Release(rctx); err != nil {
			log.Error("teardown", "error", err)
		}
	}()

	sum, err := orchestrator.Run(ctx, orchestrator.Options{
		Targets: []*orchestrator.Target{t}, Scenarios: []scenario.Scenario{*sc},
		ResultsDir: *out, CacheDir: c.cacheDir, Parallel: 1,
		Command: "lab repro " + strings.Join(args, " "), Log: log,
		Progress: &orchestrator.LogProgress{Log: log}, Providers: provs,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitInfra
	}
	d, err := rundir.Read(sum.Dir)
	if err != nil || len(d.Targets) != 1 {
		fmt.Fprintln(os.Stderr, "lab: reading the results:", err)
		return exitInfra
	}
	tr := d.Targets[0]
	if k := hold.Kept(); k != nil {
		defer printKept(os.Stdout, k)
	}
	if sum.Canceled {
		return exitInterrupted
	}
	if tr.Status != rundir.StatusComplete || len(tr.Results) != 1 {
		fmt.Fprintf(os.Stderr, "lab repro: target %s %s: %s\nresults: %s\n", t.Name, tr.Status, tr.Error, sum.Dir)
		return exitInfra
	}
	res := tr.Results[0]
	printTrace(os.Stdout, sc, &tr, &res)
	fmt.Printf("results: %s\n", sum.Dir)
	if *lang == "" {
		return exitOK
	}
	return reproduce(ctx, *lang, sc, t, &tr, &res.Result, sum.Dir, hold.Machine())
}

// reproduce writes the reproducer, builds it for the target, runs it there
// and compares its trace with the agent's.
func reproduce(ctx context.Context, lang string, sc *scenario.Scenario, t *orchestrator.Target, tr *rundir.Target, res *wire.Result, dir string, m orchestrator.Machine) int {
	goos, goarch := runtime.GOOS, runtime.GOARCH
	if tr.Env != nil {
		goos, goarch = tr.Env.OS, tr.Env.Arch
	}
	var src []byte
	var err error
	file := filepath.Join(dir, "repro."+lang)
	if lang == "c" {
		src, err = emit.C(sc.Scenario, res, t.Name)
	} else {
		src, err = emit.Go(sc.Scenario, res, t.Name, goos)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab repro:", err)
		return exitUsage
	}
	if err := os.WriteFile(file, src, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "lab repro:", err)
		return exitInfra
	}
	fmt.Printf("reproducer: %s\n", file)
	bin := filepath.Join(dir, "repro-"+lang)
	var build *exec.Cmd
	switch {
	case lang == "go":
		build = exec.CommandContext(ctx, "go", "build", "-o", bin, file)
		if emit.NeedsFreshPorts(sc.Scenario) {
			build.Args = append(build.Args[:2], "-ldflags=-X=main.freshPorts=1", "-o", bin, file)
		}
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOFLAGS=")
	case t.Provider == "local":
		build = exec.CommandContext(ctx, "cc", "-O2", "-o", bin, file)
	case goos == "linux" && goarch == runtime.GOARCH && runtime.GOOS == "linux":
		// A static binary runs in the microVM, which has no C library to link against.
		build = exec.CommandContext(ctx, "cc", "-static", "-O2", "-o", bin, file)
	default:
		fmt.Printf("no compiler for %s/%s here: compile %s on the target and compare its output with the trace above\n", goos, goarch, file)
		return exitOK
	}
	if lang == "c" && emit.NeedsFreshPorts(sc.Scenario) {
		// The agent's TIME_WAIT entries on its ports are still there.
		build.Args = append(build.Args, "-DLAB_FRESH_PORTS")
	}
	if b, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "lab repro: building %s: %v\n%s", file, err, b)
		return exitInfra
	}
	out, err := orchestrator.RunProgram(ctx, m, bin)
	os.WriteFile(bin+".out", out, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab repro: running the reproducer on %s: %v\n", t.Name, err)
		return exitInfra
	}
	fmt.Printf("reproducer's trace on %s:\n%s", t.Name, out)
	got, err := emit.Parse(bytes.NewReader(out))
	if err == nil {
		err = emit.Compare(res.Steps, got)
	}
	if err != nil {
		fmt.Printf("reproducer DIFFERS from the agent:\n%v\n", err)
		return exitChanged
	}
	fmt.Println("reproducer matches the agent: same result at every step")
	return exitOK
}

// printTrace prints a scenario's result readably: every step with the call
// as the OS saw it, its result and errno, the socket's address after it and
// how long it took.
func printTrace(w io.Writer, sc *scenario.Scenario, tr *rundir.Target, o *rundir.Outcome) {
	fmt.Fprintf(w, "scenario %s (%s): %s\n", sc.ID, sc.Proto, sc.Title)
	if tr.Env != nil {
		fmt.Fprintf(w, "target   %s: %s %s %s\n", tr.Name, tr.Env.OS, tr.Env.KernelRelease, tr.Env.Arch)
	}
	fmt.Fprintf(w, "outcome  %s", o.Outcome)
	if o.Reason != "" {
		fmt.Fprintf(w, " (%s)", o.Reason)
	}
	if claim, ok := o.Claims["answer"]; ok {
		verdict := "agrees with"
		if claim != o.Outcome {
			verdict = "CONTRADICTS"
		}
		fmt.Fprintf(w, "  -- %s the answer (%s)", verdict, claim)
	}
	fmt.Fprintln(w)
	var vals []string
	for k, v := range o.Ports {
		vals = append(vals, fmt.Sprintf("%s=%d", k, v))
	}
	for k, v := range o.Addrs {
		vals = append(vals, k+"="+v)
	}
	sort.Strings(vals)
	fmt.Fprintf(w, "values   %s\n", strings.Join(vals, " "))
	for i, s := range o.Steps {
		res := s.Result
		if s.Errno != 0 {
			res = fmt.Sprintf("%s (%d)", s.Result, s.Errno)
		}
		fmt.Fprintf(w, "step %d: %s: %s\n", i+1, s.Text, res)
		var what []string
		if s.Call != "" {
			what = append(what, s.Call)
		}
		if s.Family != "" {
			what = append(what, "family "+s.Family)
		}
		for _, opt := range s.Options {
			what = append(what, fmt.Sprintf("setsockopt(%s, %s, %d)", opt.Level, opt.Name, opt.Value))
		}
		if s.Ret != nil {
			what = append(what, fmt.Sprintf("returned %d", *s.Ret))
		}
		if s.Local != "" {
			what = append(what, "local "+s.Local)
		}
		if s.Counts != nil {
			what = append(what, fmt.Sprintf("counts %v of %d", s.Counts, s.Sent))
		}
		what = append(what, fmt.Sprintf("%dµs", s.Micros))
		fmt.Fprintf(w, "        %s\n", strings.Join(what, "  "))
	}
	if len(o.Steps) < len(sc.Steps) {
		fmt.Fprintf(w, "(steps %d-%d not run)\n", len(o.Steps)+1, len(sc.Steps))
	}
}

func printKept(w io.Writer, k *orchestrator.Kept) {
	fmt.Fprintf(w, "kept: %s runs as QEMU pid %d (console %s)\n", k.Target, k.PID, k.Console)
	fmt.Fprintf(w, "      lab shell %s    or    %s\n", k.Target, strings.Join(k.SSHArgs(), " "))
	fmt.Fprintf(w, "      lab down %s     stops it\n", k.Target)
}

// cmdShell opens an SSH session on a kept guest with the system's ssh;
// arguments after the target are run as a command.
func cmdShell(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("shell", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "usage: lab shell TARGET [COMMAND...]"); fs.PrintDefaults() }
	var c common
	c.register(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 {
		fs.Usage()
		return exitUsage
	}
	k, err := aliveKept(c.cacheDir, fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab shell:", err)
		return exitInfra
	}
	argv := append(k.SSHArgs(), fs.Args()[1:]...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "lab shell:", err)
		return exitInfra
	}
	return exitOK
}

func aliveKept(cacheDir, target string) (*orchestrator.Kept, error) {
	k, err := orchestrator.LoadKept(cacheDir, target)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no kept guest %s (start one with lab repro --target %s --scenario ID --keep)", target, target)
	}
	if err != nil {
		return nil, err
	}
	if !k.Alive() {
		return nil, fmt.Errorf("kept guest %s (pid %d) is no longer running; lab down %s forgets it", target, k.PID, target)
	}
	return k, nil
}

// cmdDown stops the guests lab repro --keep left running: the named ones,
// or all.
func cmdDown(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "usage: lab down [TARGET...]"); fs.PrintDefaults() }
	var c common
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	var ks []*orchestrator.Kept
	if fs.NArg() == 0 {
		all, err := orchestrator.ListKept(c.cacheDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lab down:", err)
			return exitInfra
		}
		ks = all
	}
	for _, name := range fs.Args() {
		k, err := orchestrator.LoadKept(c.cacheDir, name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lab down: %s: %v\n", name, err)
			return exitUsage
		}
		ks = append(ks, k)
	}
	code := exitOK
	for _, k := range ks {
		was := k.Alive()
		if err := k.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "lab down:", err)
			code = exitInfra
			continue
		}
		if was {
			fmt.Printf("stopped %s (QEMU pid %d)\n", k.Target, k.PID)
		} else {
			fmt.Printf("forgot %s (QEMU pid %d had already exited)\n", k.Target, k.PID)
		}
	}
	return code
}
