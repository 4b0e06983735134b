//go:build linux

package orchestrator_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"lab/diskimage"
	"lab/orchestrator"
	"lab/rundir"
	"lab/target"
)

// TestDiskImage runs scenarios on a Debian cloud disk image booted the way
// lab boots any cloud image (FreeBSD's, Ubuntu's, ...): BIOS and GRUB from
// the disk, a NoCloud seed lab writes for the user, its key and the pinned
// host key, and the agent run with sudo. The image is built from Debian's
// mirror by diskimage, so this needs root, mmdebstrap, grub-pc-bin,
// e2fsprogs, qemu-utils and qemu-system-x86, as scripts/setup installs;
// only -short skips it.
func TestDiskImage(t *testing.T) {
	needGuests(t)
	if runtime.GOOS != "linux" {
		t.Skip("builds the image with mmdebstrap, which runs on Linux only")
	}
	cache := os.Getenv("LAB_CACHE")
	if cache == "" {
		cache = t.TempDir()
	}
	ctx := context.Background()
	start := time.Now()
	disk, err := diskimage.BuildDebianCloud(ctx, filepath.Join(cache, "disks"), "", hclog.New(&hclog.LoggerOptions{Name: "diskimage", Level: hclog.Info}))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s ready in %s", disk, time.Since(start).Round(100*time.Millisecond))

	spec := oneTarget(t, "{name: debian-cloud, provider: qemu, disk: "+disk+", os: linux, arch: amd64, user: debian}")
	scs := scenarios(t, "bsd-table/*,linux/reuseport-other-user/*")
	if len(scs) == 0 {
		t.Fatal("the filter selected no scenarios")
	}
	opts := runOpts(t, []target.Spec{spec}, scs)
	opts.CacheDir = cache
	sum, err := orchestrator.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Both what this run started and anything else still holding the
		// image: the run's teardown must have stopped its QEMU.
		noQEMULeft(t, sum.Dir)
		noPrivateKeys(t, sum.Dir)
		if left := qemuProcs(disk); len(left) > 0 {
			t.Errorf("QEMU processes with the disk image still run: %v", left)
		}
	}()

	d, err := rundir.Read(sum.Dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := d.Targets[0]
	var phases []string
	for _, p := range tr.Phases {
		phases = append(phases, p.Name+"="+(time.Duration(p.Millis)*time.Millisecond).String())
	}
	t.Logf("phases: %s", strings.Join(phases, " "))
	if tr.Status != rundir.StatusComplete {
		t.Fatalf("status %s: %s", tr.Status, tr.Error)
	}
	if len(tr.Results) != len(scs) {
		t.Errorf("%d results for %d scenarios", len(tr.Results), len(scs))
	}
	got := map[string]bool{}
	for _, r := range tr.Results {
		got[r.ID] = true
	}
	for _, s := range scs {
		if !got[s.ID] {
			t.Errorf("no result for %s", s.ID)
		}
	}
	if tr.Env == nil {
		t.Fatal("the agent reported no environment")
	}
	if tr.Env.OS != "linux" {
		t.Errorf("env.OS = %q, want linux", tr.Env.OS)
	}
	// The default user's passwordless sudo comes from the seed; the agent
	// runs through it in a disposable guest.
	if tr.Env.UID != 0 {
		t.Errorf("env.UID = %d, want 0 (the agent runs with sudo)", tr.Env.UID)
	}
	if _, err := os.Stat(filepath.Join(sum.Dir, spec.Name+".console.log")); err != nil {
		t.Errorf("console log: %v", err)
	}
}
