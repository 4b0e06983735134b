package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"lab/diskimage"
	"lab/fetch"
	"lab/image"
	"lab/target"
)

const imageUsage = `usage: lab image build [-file lab.yaml] [NAME...]
       lab image build --box
       lab image fetch [--sha256 HEX] [NAME...]
       lab image prune [-n]`

// cmdImage builds what the targets of the targets file need ahead of a run
// (guest images, a user-space stack's libraries: a run builds what it needs
// anyway; this makes the first run fast and lets CI cache them), fetches
// official cloud images, or prunes the images new packages superseded.
func cmdImage(ctx context.Context, args []string) int {
	if len(args) > 0 && args[0] == "prune" {
		return cmdImagePrune(args[1:])
	}
	if len(args) > 0 && args[0] == "fetch" {
		return cmdImageFetch(ctx, args[1:])
	}
	if len(args) == 0 || args[0] != "build" {
		fmt.Fprintln(os.Stderr, imageUsage)
		return exitUsage
	}
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	var c common
	c.register(fs)
	box := fs.Bool("box", false, "build lab's own Vagrant box (Debian 12 for vagrant-libvirt, from Debian's packages) instead, and say how to add it")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	if *box {
		return buildBox(ctx, &c, fs.NArg())
	}
	ts, err := c.targets()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		if ts, err = target.Select(ts, strings.Join(fs.Args(), ",")); err != nil {
			fmt.Fprintln(os.Stderr, "lab:", err)
			return exitUsage
		}
	}
	log := c.logger()
	status := exitOK
	named := fs.NArg() > 0
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 1, ' ', 0)
	defer w.Flush()
	for _, t := range ts {
		built, ok, err := target.BuildImage(ctx, t, c.env(log))
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "lab: %s: %v\n", t.Name, err)
			status = exitInfra
		case ok:
			fmt.Fprintf(w, "%s\t%s\n", t.Name, built)
		case named:
			fmt.Fprintf(w, "%s\tnothing to build (%s)\n", t.Name, t.Describe())
		}
	}
	return status
}

// cmdImagePrune removes the images a newer build of the same target
// superseded, and every .deb no remaining image was built from. A kept
// guest's image stays.
func cmdImagePrune(args []string) int {
	fs := flag.NewFlagSet("image prune", flag.ContinueOnError)
	cacheDir := fs.String("cache", defaultCache(), "cache for guest images and agent builds")
	dryRun := fs.Bool("n", false, "only say what would be removed")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, imageUsage)
		return exitUsage
	}
	kept, err := target.ListKept(*cacheDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab: listing kept guests:", err)
		return exitInfra
	}
	var inUse []string
	for _, k := range kept {
		inUse = append(inUse, k.Key)
	}
	res, err := image.Prune(*cacheDir, inUse, *dryRun)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitInfra
	}
	verb := "removed"
	if *dryRun {
		verb = "would remove"
	}
	var total int64
	for _, r := range res.Removed {
		rel, err := filepath.Rel(*cacheDir, r.Path)
		if err != nil {
			rel = r.Path
		}
		fmt.Printf("%s %s (%s): %s\n", verb, rel, mib(r.Bytes), r.Why)
		total += r.Bytes
	}
	if res.DebsLeft != "" {
		fmt.Println(res.DebsLeft)
	}
	fmt.Printf("%s %d entries, %s, from %s; %d images stay\n", verb, len(res.Removed), mib(total), *cacheDir, len(res.Kept))
	return exitOK
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// cmdImageFetch downloads cloud images of lab's catalog into the cache,
// verified against their publisher's checksum file (or a pinned SHA-256),
// and prints where each is: a target's disk: may then name the image. With
// no name it lists the catalog.
func cmdImageFetch(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("image fetch", flag.ContinueOnError)
	cacheDir := fs.String("cache", defaultCache(), "cache for guest images and agent builds")
	sha := fs.String("sha256", "", "the SHA-256 of the file at the image's URL, in hex: required where the publisher has no checksum file")
	mirror := fs.String("mirror", "", "scheme and host that replace the publishers' in every URL (a mirror with their layout)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() == 0 {
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		for _, img := range fetch.Catalog() {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", img.Name, img.OS, img.Publisher, img.URL)
		}
		w.Flush()
		return exitOK
	}
	for _, name := range fs.Args() {
		if _, err := fetch.Lookup(name); err != nil {
			fmt.Fprintln(os.Stderr, "lab image fetch:", err)
			return exitUsage
		}
	}
	f := &fetch.Fetcher{CacheDir: *cacheDir, Progress: os.Stderr, BaseURL: *mirror}
	for _, name := range fs.Args() {
		got, err := f.Fetch(ctx, name, fetch.Options{SHA256: *sha})
		if err != nil {
			fmt.Fprintln(os.Stderr, "lab image fetch:", err)
			if ctx.Err() != nil {
				return exitInterrupted
			}
			return exitInfra
		}
		fmt.Printf("%s\t%s (%s %s, verified by %s)\n", name, got.Path, got.Hash, got.Sum, got.Verified)
	}
	return exitOK
}

// buildBox builds lab/debian-12, the Vagrant box lab's Vagrant tests boot
// (diskimage.BuildBox: needs root, mmdebstrap, grub-pc-bin, qemu-utils,
// xorriso and vagrant for its insecure public key), and prints how to add it.
func buildBox(ctx context.Context, c *common, extra int) int {
	if extra > 0 {
		fmt.Fprintln(os.Stderr, "lab image build --box takes no target names")
		return exitUsage
	}
	b, err := diskimage.BuildBox(ctx, c.cacheDir, c.logger())
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return exitInfra
	}
	fmt.Println(b.File)
	fmt.Fprintf(os.Stderr, "add it with: vagrant box add --name %s %s\nits machines' host key, which lab pins: %s", b.Name, b.File, b.HostKey)
	return exitOK
}
