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
	"strings"

	"lab/emit"
	"lab/orchestrator"
	"lab/rundir"
	"lab/scenario"
	"lab/target"
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
	targetName := fs.String("target", "local", "the target to run on")
	id := fs.String("scenario", "", "the id of the scenario to run")
	scenFile := pathFlag{path: "scenarios.yaml"}
	fs.Var(&scenFile, "scenarios", "scenarios file (default scenarios.yaml; lab's built-in catalog when there is none here)")
	out := fs.String("out", "results", "directory the run's directory is created in")
	keep := fs.Bool("keep", false, "leave the microVM running (lab shell T, lab down T); a kept one is reused")
	cold := fs.Bool("cold", false, "boot a microVM without restoring a snapshot, and save none")
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
	scs, catalogIn, err := catalog(scenFile.path, scenFile.set)
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
		fmt.Fprintf(os.Stderr, "lab repro: no scenario %q in %s\n", *id, catalogIn.Path)
		return exitUsage
	}
	if *lang != "" {
		if err := emit.Check(sc.Scenario); err != nil {
			fmt.Fprintf(os.Stderr, "lab repro: %s: %v\n", sc.ID, err)
			return exitUsage
		}
	}
	all, targetsIn, err := c.targetsWithSource()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	sel, err := target.Select(all, *targetName)
	if err != nil || len(sel) != 1 {
		fmt.Fprintf(os.Stderr, "lab repro: --target %q: %v\n", *targetName, err)
		return exitUsage
	}
	t := sel[0]
	if *keep {
		if err := target.CanKeep(t); err != nil {
			fmt.Fprintf(os.Stderr, "lab repro: --keep: %v\n", err)
			return exitUsage
		}
		t.Keep = true
	}
	log := c.logger()
	// The trace and the reproducer run while the target is still up.
	code := exitInfra
	var kept *target.Kept
	then := func(ctx context.Context, f *orchestrator.Finished) error {
		kept = f.Instance.Kept
		tr := f.Result
		if len(tr.Results) != 1 {
			return fmt.Errorf("the agent reported %d results for one scenario", len(tr.Results))
		}
		res := tr.Results[0]
		var trace bytes.Buffer
		printTrace(io.MultiWriter(os.Stdout, &trace), sc, tr, &res)
		traceFile := filepath.Join(f.Dir, t.Name+".trace.txt")
		if err := rundir.WriteFile(traceFile, trace.Bytes()); err != nil {
			fmt.Fprintln(os.Stderr, "lab repro:", err)
			return nil
		}
		fmt.Printf("trace: %s\nresults: %s\n", traceFile, f.Dir)
		code = exitOK
		if *lang != "" {
			code = reproduce(ctx, *lang, sc, t.Name, f.Instance, tr, &res.Result, f.Dir, f.Machine)
		}
		return nil
	}
	sum, err := orchestrator.Run(ctx, orchestrator.Options{
		Cold: *cold, Catalog: catalogIn, TargetsFile: targetsIn, Build: build(),
		Targets: []target.Spec{t}, Scenarios: []scenario.Scenario{*sc},
		ResultsDir: *out, CacheDir: c.cacheDir, Parallel: 1,
		Command: "lab repro " + strings.Join(args, " "), Log: log,
		Progress: &orchestrator.LogProgress{Log: log}, Then: then,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitInfra
	}
	if kept != nil {
		printKept(os.Stdout, kept)
	}
	if sum.Canceled {
		return exitInterrupted
	}
	if tr := sum.Targets[0]; tr.Status != rundir.StatusComplete {
		fmt.Fprintf(os.Stderr, "lab repro: target %s %s: %s\nresults: %s\n", t.Name, tr.Status, tr.Error, sum.Dir)
		return exitInfra
	}
	return code
}

// reproduce writes the reproducer, builds it for the target, runs it there
// and compares its trace with the agent's.
func reproduce(ctx context.Context, lang string, sc *scenario.Scenario, name string, in *target.Instance, tr *rundir.Target, res *wire.Result, dir string, m target.Machine) int {
	goos, goarch := runtime.GOOS, runtime.GOARCH
	if tr.Env != nil {
		goos, goarch = tr.Env.OS, tr.Env.Arch
	}
	if in.CStack != target.CStackPOSIX || len(in.Agent.Tags) > 0 {
		// The kernel is linked into the agent: a program reaches it only
		// through that stack's own API.
		if lang == "go" || in.CStack == target.CStackPOSIX {
			fmt.Fprintf(os.Stderr, "lab repro: %s's kernel runs inside the agent's process; --emit %s cannot reach it (lab writes C against the rump API for rump targets only)\n", name, lang)
			return exitUsage
		}
		goos, goarch = in.Agent.GOOS, in.Agent.GOARCH // the program runs on this host
	}
	var copts []emit.COption
	if in.CStack == target.CStackRump {
		copts = append(copts, emit.Rump)
	}
	var src []byte
	var err error
	file := filepath.Join(dir, "repro."+lang)
	if lang == "c" {
		src, err = emit.C(sc.Scenario, res, name, copts...)
	} else {
		src, err = emit.Go(sc.Scenario, res, name, goos)
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
	var cflags []string
	if lang == "c" && emit.NeedsFreshPorts(sc.Scenario) {
		// The agent's TIME_WAIT entries on its ports are still there.
		cflags = append(cflags, "-DLAB_FRESH_PORTS")
	}
	hostLinux := goos == "linux" && goarch == runtime.GOARCH && runtime.GOOS == "linux"
	switch {
	case lang == "go":
		build = exec.CommandContext(ctx, "go", "build", "-o", bin, file)
		if emit.NeedsFreshPorts(sc.Scenario) {
			build.Args = append(build.Args[:2], "-ldflags=-X=main.freshPorts=1", "-o", bin, file)
		}
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOFLAGS=")
	case in.CC == target.CBuildHost:
		args := append([]string{"-O2", "-o", bin, file}, cflags...)
		args = append(args, in.CFlags...)
		if in.CStack == target.CStackRump {
			args = append(args, emit.RumpLinkFlags...)
		}
		build = exec.CommandContext(ctx, "cc", args...)
	case in.CC == target.CBuildHostStatic && hostLinux:
		// A static binary runs in the microVM, which has no C library to
		// link against (and no compiler).
		build = exec.CommandContext(ctx, "cc", append([]string{"-static", "-O2", "-o", bin, file}, cflags...)...)
	case in.CC != target.CBuildNone && goos != "windows":
		// Reached over SSH with a POSIX shell: the target's own cc builds
		// the program, where it has one.
		has, err := hasCC(ctx, m)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lab repro: looking for cc on %s: %v\n", name, err)
			return exitInfra
		}
		if has {
			script := filepath.Join(dir, "repro-c.sh")
			if err := os.WriteFile(script, buildScript(src, cflags), 0o755); err != nil {
				fmt.Fprintln(os.Stderr, "lab repro:", err)
				return exitInfra
			}
			fmt.Printf("building and running %s with cc on %s (%s)\n", file, name, script)
			bin = script
			break
		}
		if hostLinux {
			// A Linux host without a compiler runs a static binary built here.
			build = exec.CommandContext(ctx, "cc", append([]string{"-static", "-O2", "-o", bin, file}, cflags...)...)
			break
		}
		fmt.Printf("no cc on %s and no compiler for %s/%s here: compile %s on the target and compare its output with the trace above\n", name, goos, goarch, file)
		return exitOK
	default:
		fmt.Printf("no compiler for %s/%s here: compile %s on the target and compare its output with the trace above\n", goos, goarch, file)
		return exitOK
	}
	if build != nil {
		if b, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "lab repro: building %s: %v\n%s", file, err, b)
			return exitInfra
		}
	}
	out, err := runProgram(ctx, m, bin)
	outFile := strings.TrimSuffix(bin, ".sh") + ".trace.txt"
	if werr := rundir.WriteFile(outFile, out); werr != nil {
		fmt.Fprintln(os.Stderr, "lab repro:", werr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab repro: running the reproducer on %s: %v\n", name, err)
		return exitInfra
	}
	fmt.Printf("reproducer's trace on %s (%s):\n%s", name, outFile, out)
	got, err := emit.Parse(bytes.NewReader(out))
	if err == nil {
		err = emit.Compare(res, got)
	}
	if err != nil {
		fmt.Printf("reproducer DIFFERS from the agent:\n%v\n", err)
		return exitChanged
	}
	fmt.Println("reproducer matches the agent: same call, arguments and result at every step")
	return exitOK
}

// hasCC says whether the machine, reached over SSH, has a C compiler named
// cc on its PATH; an error is the connection's, not the answer.
func hasCC(ctx context.Context, m target.Machine) (bool, error) {
	var out bytes.Buffer
	if err := m.Run(ctx, "command -v cc || true", strings.NewReader(""), &out); err != nil {
		return false, err
	}
	return strings.TrimSpace(out.String()) != "", nil
}

// buildScript is a shell script that builds the C program src with the
// machine's cc and cflags in a temporary directory, runs it and removes
// the directory. It is uploaded and run as the agent is (with its
// privileges): the program's output is its own, cc's goes to stderr.
func buildScript(src []byte, cflags []string) []byte {
	var b bytes.Buffer
	b.WriteString("#!/bin/sh\n# lab repro: builds the reproducer with this machine's cc and runs it.\n")
	b.WriteString("d=$(mktemp -d \"${TMPDIR:-/tmp}/lab-repro.XXXXXX\") || exit 1\n")
	b.WriteString("trap 'rm -rf \"$d\"' EXIT\n")
	b.WriteString("cat >\"$d/repro.c\" <<'LAB_REPRO_C'\n")
	b.Write(src)
	if !bytes.HasSuffix(src, []byte("\n")) {
		b.WriteByte('\n')
	}
	b.WriteString("LAB_REPRO_C\n")
	b.WriteString("cc -O2")
	for _, f := range cflags {
		b.WriteString(" " + f)
	}
	b.WriteString(" -o \"$d/repro\" \"$d/repro.c\" >&2 || { echo \"lab repro: cc failed on $(uname -n)\" >&2; exit 1; }\n")
	b.WriteString("\"$d/repro\"\n")
	return b.Bytes()
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
	emit.WriteValues(w, o.Ports, o.Addrs)
	for i, s := range o.Steps {
		emit.WriteStep(w, i+1, s)
	}
	if len(o.Steps) < len(sc.Steps) {
		fmt.Fprintf(w, "(steps %d-%d not run)\n", len(o.Steps)+1, len(sc.Steps))
	}
}

func printKept(w io.Writer, k *target.Kept) {
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

func aliveKept(cacheDir, name string) (*target.Kept, error) {
	k, err := target.LoadKept(cacheDir, name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no kept guest %s (start one with lab run --targets %s --keep)", name, name)
	}
	if err != nil {
		return nil, err
	}
	if !k.Alive() {
		return nil, fmt.Errorf("kept guest %s (pid %d) is no longer running; lab down %s forgets it", name, k.PID, name)
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
	var ks []*target.Kept
	if fs.NArg() == 0 {
		all, err := target.ListKept(c.cacheDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lab down:", err)
			return exitInfra
		}
		ks = all
	}
	for _, name := range fs.Args() {
		k, err := target.LoadKept(c.cacheDir, name)
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

// runProgram uploads the program at local to m and runs it, returning what
// it printed on standard output.
func runProgram(ctx context.Context, m target.Machine, local string) ([]byte, error) {
	cmd, err := m.Upload(ctx, local)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	err = m.Run(ctx, cmd, strings.NewReader(""), &out)
	return out.Bytes(), err
}
