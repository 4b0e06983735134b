// Package diskimage builds bootable Debian disk images that behave like the
// official cloud images: BIOS boot through GRUB, a serial console on ttyS0,
// and cloud-init reading a NoCloud seed for the users, SSH keys and host keys,
// so that lab's disk-image path (the qemu provider's cloud disks) can be
// tested end to end without downloading anything but Debian packages. It
// also builds lab's own Vagrant box from such a disk (BuildBox), and the key
// pairs lab pins and authorizes on cloud images (KeyPair); the seeds
// themselves are package cloudinit's.
//
// The root filesystem comes from Debian's mirror by mmdebstrap, checked
// against debian-archive-keyring, and is written into the disk without loop
// devices or mounts: mke2fs -d fills the partition at its offset, and lab
// writes the MBR and GRUB's core.img itself. Building needs root (mmdebstrap's
// root mode, and mke2fs -d keeps the owners it finds) and, on Debian:
// mmdebstrap, e2fsprogs, grub-common, grub-pc-bin, qemu-utils and
// debian-archive-keyring.
package diskimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"lab/internal/output"

	"github.com/hashicorp/go-hclog"

	"lab/internal/flock"
)

// DefaultSuite is the Debian release built when BuildDebianCloud is given none.
const DefaultSuite = "bookworm"

// buildVersion is part of every image's hash. Bump it when the build changes
// in a way the recipe does not show (the Go code that assembles the disk),
// so cached images are rebuilt.
const buildVersion = 1

// Where the packages come from and what vouches for them. Naming the mirror
// and the keyring keeps the host's apt sources (which may hold third-party
// repositories, or none) out of the image.
const (
	mirror         = "http://deb.debian.org/debian"
	securityMirror = "http://deb.debian.org/debian-security"
	keyring        = "/usr/share/keyrings/debian-archive-keyring.gpg"
	grubDir        = "/usr/lib/grub/i386-pc"
)

// diskBytes is the disk's virtual size. The image is sparse and qcow2 keeps
// only what is used; 4 GiB leaves the agent and its scenarios room to write.
const diskBytes = 4 << 30

// partStart is the first sector of the root partition: 1 MiB, the usual
// alignment, which also leaves GRUB's core.img the sectors before it.
const partStart = 2048

// recipe is everything an image is built from; its hash names the image.
type recipe struct {
	Version  int               `json:"version"`
	Suite    string            `json:"suite"`
	Arch     string            `json:"arch"`
	Sources  []string          `json:"sources"`
	Packages []string          `json:"packages"`
	Early    map[string]file   `json:"early_files"`
	Files    map[string]string `json:"files"`
	Enable   []string          `json:"enable"`
	Mask     []string          `json:"mask"`
	Grub     string            `json:"grub"`
	Modules  []string          `json:"grub_modules"`
	Mke2fs   string            `json:"mke2fs_conf"`
	Disk     int64             `json:"disk_bytes"`
}

func newRecipe(suite string) recipe {
	return recipe{
		Version:  buildVersion,
		Suite:    suite,
		Arch:     "amd64",
		Sources:  sources(suite),
		Packages: packages(suite),
		Early:    earlyFiles,
		Files:    guestFiles,
		Enable:   []string{"systemd-networkd.service", "systemd-resolved.service"},
		Mask:     masked,
		Grub:     grubConfig,
		Modules:  grubModules,
		Mke2fs:   mke2fsConf,
		Disk:     diskBytes,
	}
}

func (r recipe) hash() string {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // a struct of strings always encodes
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sources are the apt lines mmdebstrap gets: the suite with its updates
// and security suites, where the suite has them, so the kernel and
// OpenSSH are current.
func sources(suite string) []string {
	out := []string{fmt.Sprintf("deb %s %s main", mirror, suite)}
	switch suite {
	case "sid", "unstable", "experimental":
	default:
		out = append(out,
			fmt.Sprintf("deb %s %s-updates main", mirror, suite),
			fmt.Sprintf("deb %s %s-security main", securityMirror, suite))
	}
	return out
}

// packages is what goes into the image on top of mmdebstrap's minbase
// variant, which installs no recommends.
func packages(suite string) []string {
	p := []string{
		"linux-image-cloud-amd64",
		"systemd-sysv",
		"udev",     // networkd waits for udev to announce the NIC
		"iproute2", // cloud-init's networkd renderer looks for ip
		"openssh-server",
		"cloud-init",
		"sudo",
		"netbase", // /etc/services and /etc/protocols, for getservbyname and friends
	}
	// systemd-resolved has been a package of its own since bookworm; before,
	// it came with systemd.
	switch suite {
	case "buster", "bullseye":
	default:
		p = append(p, "systemd-resolved")
	}
	return p
}

var suiteName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// BuildDebianCloud returns the path of a qcow2 disk image of Debian suite
// (DefaultSuite if empty) for amd64, building it under cacheDir unless an
// image of the same recipe is there already. The image holds no user and
// no keys: like an official cloud image it expects a NoCloud seed.
//
// Concurrent calls for one recipe wait for each other instead of building
// twice; an interrupted build leaves nothing that looks like an image.
func BuildDebianCloud(ctx context.Context, cacheDir, suite string, log hclog.Logger) (string, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if suite == "" {
		suite = DefaultSuite
	}
	if !suiteName.MatchString(suite) {
		return "", fmt.Errorf("diskimage: %q is not a Debian suite name", suite)
	}
	rec := newRecipe(suite)
	name := fmt.Sprintf("debian-%s-%s-%s", suite, rec.Arch, rec.hash()[:16])
	final := filepath.Join(cacheDir, name+".qcow2")
	if _, err := os.Stat(final); err == nil {
		log.Debug("disk image cached", "path", final)
		return final, nil
	}
	if err := checkHost(); err != nil {
		return "", fmt.Errorf("diskimage: cannot build %s: %w", name, err)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("diskimage: creating cache dir: %w", err)
	}
	unlock, err := flock.Lock(ctx, filepath.Join(cacheDir, name+".lock"))
	if err != nil {
		return "", fmt.Errorf("diskimage: %w", err)
	}
	defer unlock()
	// Someone else may have built it while we waited for the lock.
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	// Holding the lock, any build dir of this image is a leftover of a
	// build that was killed.
	stale, _ := filepath.Glob(filepath.Join(cacheDir, ".build-"+name+"-*"))
	for _, dir := range stale {
		log.Info("removing leftover build dir", "dir", dir)
		removeBuildDir(dir, log)
	}

	start := time.Now()
	log.Info("building Debian cloud disk image (a minute or two)", "suite", suite, "path", final)
	work, err := os.MkdirTemp(cacheDir, ".build-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("diskimage: creating build dir: %w", err)
	}
	defer removeBuildDir(work, log)
	if err := build(ctx, rec, work, final, log); err != nil {
		return "", fmt.Errorf("diskimage: building %s: %w", name, err)
	}
	log.Info("disk image built", "path", final, "seconds", time.Since(start).Round(100*time.Millisecond).Seconds())
	return final, nil
}

// checkHost reports everything this host lacks to build an image, at once.
func checkHost() error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("must run as root (mmdebstrap's root mode; mke2fs -d copies file owners)"))
	}
	for _, t := range []struct{ program, pkg string }{
		{"mmdebstrap", "mmdebstrap"},
		{"mke2fs", "e2fsprogs"},
		{"grub-mkimage", "grub-common"},
		{"qemu-img", "qemu-utils"},
		{"chroot", "coreutils"},
	} {
		if _, err := exec.LookPath(t.program); err != nil {
			errs = append(errs, fmt.Errorf("%s not found (Debian: apt-get install %s)", t.program, t.pkg))
		}
	}
	for _, f := range []struct{ path, pkg string }{
		{filepath.Join(grubDir, "boot.img"), "grub-pc-bin"},
		{keyring, "debian-archive-keyring"},
	} {
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s missing (Debian: apt-get install %s)", f.path, f.pkg))
		}
	}
	return errors.Join(errs...)
}

// build makes the image in work and renames it to final.
func build(ctx context.Context, rec recipe, work, final string, log hclog.Logger) error {
	root := filepath.Join(work, "root")
	t := time.Now()
	if err := bootstrap(ctx, rec, root, log); err != nil {
		return err
	}
	uuid, err := newUUID()
	if err != nil {
		return err
	}
	if err := customize(ctx, rec, root, uuid, log); err != nil {
		return fmt.Errorf("configuring the root filesystem: %w", err)
	}
	log.Debug("root filesystem ready", "seconds", time.Since(t).Seconds())

	t = time.Now()
	raw := filepath.Join(work, "disk.raw")
	if err := writeDisk(ctx, rec, root, raw, uuid, work); err != nil {
		return err
	}
	qcow := filepath.Join(work, "disk.qcow2")
	// Compressed: a third of the size in the cache for 10 s more build;
	// guests boot no slower (measured under TCG: SSH up at 33 s either
	// way), since QEMU inflates clusters on the host, not in emulation.
	if err := run(ctx, nil, "qemu-img", "convert", "-c", "-O", "qcow2", raw, qcow); err != nil {
		return fmt.Errorf("converting the disk to qcow2: %w", err)
	}
	log.Debug("disk written", "seconds", time.Since(t).Seconds())
	if err := syncFile(qcow); err != nil {
		return fmt.Errorf("syncing the image: %w", err)
	}
	if err := os.Rename(qcow, final); err != nil {
		return fmt.Errorf("moving the image into the cache: %w", err)
	}
	return nil
}

// removeBuildDir deletes a build dir. A killed mmdebstrap may have left its
// mounts (proc, sys, dev/pts) in the chroot; those are detached first, and
// the dir is left alone if that fails, so RemoveAll never walks into a
// file system that is not ours.
func removeBuildDir(dir string, log hclog.Logger) {
	if err := unmountUnder(dir); err != nil {
		log.Error("build dir still has mounts, not removing it", "dir", dir, "error", err)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		log.Warn("removing build dir", "dir", dir, "error", err)
	}
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// run runs a program; its output goes to the error when it fails, the
// last lines only, which is where mmdebstrap and apt say what went wrong.
func run(ctx context.Context, env []string, program string, args ...string) error {
	cmd := exec.CommandContext(ctx, program, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", program, ctx.Err())
		}
		return fmt.Errorf("%s: %w: %s", program, err, output.Tail(string(out), 20))
	}
	return nil
}
