package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"lab/image"
	"lab/orchestrator"
)

// cmdImage builds the Debian microVM guests of the targets file ahead of a
// run (a run builds what it needs anyway; this makes the first run fast and
// lets CI cache images).
func cmdImage(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] != "build" {
		fmt.Fprintln(os.Stderr, "usage: lab image build [-file lab.yaml] [NAME...]")
		return exitUsage
	}
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	var c common
	c.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	ts, err := c.targets()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		if ts, err = orchestrator.Select(ts, strings.Join(fs.Args(), ",")); err != nil {
			fmt.Fprintln(os.Stderr, "lab:", err)
			return exitUsage
		}
	}
	log := c.logger()
	status := exitOK
	for _, t := range ts {
		if t.Suite == "" {
			continue
		}
		img, err := image.Build(ctx, image.Spec{Name: t.Name, Suite: t.Suite, KernelPackage: t.Kernel, Arch: t.Arch}, c.cacheDir, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lab: %s: %v\n", t.Name, err)
			status = exitInfra
			continue
		}
		fmt.Printf("%-12s %s (%s %s)\n", t.Name, img.Dir, img.KernelPackage, img.KernelVersion)
	}
	return status
}
