// Command buildbox builds lab's own Vagrant box for vagrant-libvirt, Debian
// 12 made from Debian's packages only (diskimage.BuildBox), and prints
// how to add it. It needs root and mmdebstrap, grub-pc-bin, qemu-utils,
// dosfstools, mtools and vagrant (for its insecure public key).
//
//	go run ./vagrant/buildbox [-cache DIR]
//	vagrant box add --name lab/debian-12 FILE.box
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"lab/diskimage"

	"github.com/hashicorp/go-hclog"
)

func main() {
	def := os.Getenv("LAB_CACHE")
	if def == "" {
		def = filepath.Join(os.TempDir(), "lab-cache")
	}
	cache := flag.String("cache", def, "lab's cache directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := hclog.New(&hclog.LoggerOptions{Name: "buildbox", Level: hclog.Info, Output: os.Stderr})
	box, err := diskimage.BuildBox(ctx, *cache, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildbox:", err)
		os.Exit(1)
	}
	fmt.Println(box.File)
	fmt.Fprintf(os.Stderr, "add it with: vagrant box add --name %s %s\nits machines' host key, which lab pins: %s", box.Name, box.File, box.HostKey)
}
