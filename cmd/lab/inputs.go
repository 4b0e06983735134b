package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"lab"
	"lab/rundir"
	"lab/scenario"
	"lab/target"
)

// builtIn is the path lab records for a file it carries (package lab).
const builtIn = "built-in"

// readInput reads the file a flag names. A flag left at its default names a
// file of the working directory, and lab's own copy stands in when there
// is none, so lab works from any directory; a file named on purpose must
// exist.
func readInput(path string, explicit bool, carried []byte) ([]byte, *rundir.Input, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return carried, &rundir.Input{Path: builtIn, SHA256: lab.Hash(carried)}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return data, &rundir.Input{Path: path, SHA256: lab.Hash(data)}, nil
}

// catalog reads the scenarios: the file, or lab's built-in catalog.
func catalog(path string, explicit bool) ([]scenario.Scenario, *rundir.Input, error) {
	data, in, err := readInput(path, explicit, lab.Catalog)
	if err != nil {
		return nil, nil, fmt.Errorf("reading scenarios: %w", err)
	}
	name := path
	if in.Path == builtIn {
		name = "(built-in) scenarios.yaml"
	}
	scs, err := scenario.Parse(name, data)
	return scs, in, err
}

// targets reads the targets: the file, or lab's built-in targets.
func (c *common) targets() ([]target.Spec, error) {
	ts, _, err := c.targetsWithSource()
	return ts, err
}

func (c *common) targetsWithSource() ([]target.Spec, *rundir.Input, error) {
	data, in, err := readInput(c.targetsFile.path, c.targetsFile.set, lab.Targets)
	if err != nil {
		return nil, nil, fmt.Errorf("reading targets file: %w", err)
	}
	if in.Path == builtIn {
		return target.Defaults(), in, nil
	}
	ts, err := target.Parse(c.targetsFile.path, data)
	return ts, in, err
}

// describe is how lab names an input in its output.
func describe(in *rundir.Input) string { return fmt.Sprintf("%s (sha256 %s)", in.Path, in.SHA256) }

// build says which lab this is.
func build() *rundir.Build {
	return &rundir.Build{Version: version(), Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		AgentSource: lab.AgentSourceHash(), Catalog: lab.Hash(lab.Catalog)}
}

// version is lab's module version and the VCS revision it was built from,
// as the Go toolchain recorded them.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	var rev, when, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + modified
		if when != "" {
			v += " " + when
		}
	}
	return v
}

func cmdVersion(w io.Writer, args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(os.Stderr, "usage: lab version")
		return exitUsage
	}
	b := build()
	scs, _ := scenario.Parse("built-in", lab.Catalog)
	fmt.Fprintf(w, "lab %s\n%s\nagent sources %s\nbuilt-in catalog %s (%d scenarios)\n", b.Version, b.Go, b.AgentSource, b.Catalog, len(scs))
	return exitOK
}
