// Package image builds the Linux guests lab boots under QEMU: a Debian cloud kernel and a small
// initramfs with busybox, Debian's OpenSSH server and the kernel's virtio-net modules, all taken
// from Debian packages that apt fetches and checks against Debian's signatures, with a private
// configuration that leaves the host's apt alone.
//
// Images are cached under a directory named by a hash of every input (the spec, the exact package
// versions, the guest's init script and configuration, and a format version), so Build returns
// a cached image at once until one of them changes. Images are built in a temporary dir and
// renamed into place, so an interrupted or concurrent build never leaves half an image.
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"lab/internal/flock"
)

// formatVersion is part of every image's hash. Bump it when the way images are assembled changes
// in a way the other inputs do not capture, so cached images are rebuilt.
const formatVersion = 1

// DefaultMirror is the Debian mirror used when a Spec names none.
const DefaultMirror = "http://deb.debian.org/debian"

// Spec says which guest to build.
type Spec struct {
	Name          string // e.g. "linux-6.1": names log lines and the cache dir
	Suite         string // Debian suite the kernel and userland come from: "bullseye", "bookworm", "trixie"
	KernelPackage string // a kernel image package or a metapackage depending on one, e.g. "linux-image-cloud-amd64"
	Arch          string // Debian architecture; default "amd64"
	Mirror        string // Debian mirror; default DefaultMirror
}

// Defaults are the guests lab tests on: one kernel line per Debian suite the mirror serves. The
// metapackages follow each suite's current kernel, which stays on one kernel line for the life of
// a stable release; bullseye's is named exactly because its last ABI is final.
var Defaults = []Spec{
	{Name: "linux-5.10", Suite: "bullseye", KernelPackage: "linux-image-5.10.0-32-cloud-amd64", Arch: "amd64"},
	{Name: "linux-6.1", Suite: "bookworm", KernelPackage: "linux-image-cloud-amd64", Arch: "amd64"},
	{Name: "linux-6.12", Suite: "trixie", KernelPackage: "linux-image-cloud-amd64", Arch: "amd64"},
}

// DefaultSpec returns the spec in Defaults with the given name.
func DefaultSpec(name string) (Spec, bool) {
	for _, s := range Defaults {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// Image is a built guest: a kernel, an initramfs and the SSH keys to reach it. Paths are absolute.
type Image struct {
	Name          string // Spec.Name
	Dir           string // cache dir holding everything below
	Kernel        string // vmlinuz
	Initrd        string // initramfs: a gzip-compressed cpio archive
	KernelPackage string // the kernel image package a metapackage resolved to
	KernelVersion string // its Debian version, e.g. "6.1.176-1"
	KernelRelease string // what uname -r prints, e.g. "6.1.0-50-cloud-amd64"
	HostKey       string // the guest's ssh host public key, authorized_keys format, for pinning
	ClientKey     string // private key (OpenSSH format, mode 0600) that logs in as User or OtherUser
	User          string // "root"
	OtherUser     string // "labother": unprivileged, uid and gid OtherUID, home /home/labother, shell /bin/sh
	Hash          string // hex SHA-256 of every input
}

// HostPublicKey parses HostKey, for ssh.FixedHostKey.
func (img *Image) HostPublicKey() (ssh.PublicKey, error) {
	b, err := os.ReadFile(img.HostKey)
	if err != nil {
		return nil, fmt.Errorf("reading host key: %w", err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("parsing host key %s: %w", img.HostKey, err)
	}
	return key, nil
}

// ClientSigner parses ClientKey, for ssh.PublicKeys.
func (img *Image) ClientSigner() (ssh.Signer, error) {
	b, err := os.ReadFile(img.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("reading client key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parsing client key %s: %w", img.ClientKey, err)
	}
	return signer, nil
}

// SnapshotDir is the directory to give qemu.Config.Snapshot for guests booted from img:
// $cache/snapshots/<the image dir's name>, beside $cache/images, so that Prune removes the
// snapshots with the image.
func (img *Image) SnapshotDir() string {
	return filepath.Join(filepath.Dir(filepath.Dir(img.Dir)), snapshotsDir, filepath.Base(img.Dir))
}

// snapshotsDir is the cache's directory of guest snapshots, one subdirectory per image.
const snapshotsDir = "snapshots"

// Build returns the image for spec from cacheDir, building it first if no image with the same
// inputs is cached. It needs apt-get, apt-cache, dpkg-deb and, for kernels with compressed
// modules, xz or zstd. It reaches the mirror only when the suite's package lists are older than a
// day (then a new Debian kernel or OpenSSH gives a new image) or packages are not cached yet.
// Cancelling ctx stops downloads and unpacking. A nil log discards messages.
func Build(ctx context.Context, spec Spec, cacheDir string, log hclog.Logger) (*Image, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	spec, err := spec.withDefaults()
	if err != nil {
		return nil, err
	}
	if cacheDir, err = filepath.Abs(cacheDir); err != nil {
		return nil, fmt.Errorf("image cache dir: %w", err)
	}
	b := &builder{spec: spec, cacheDir: cacheDir, log: log.With("image", spec.Name)}
	b.repo = newAptRepo(cacheDir, spec, b.log)
	img, err := b.build(ctx, false)
	var dl *downloadError
	if errors.As(err, &dl) {
		b.log.Warn("download failed; refreshing package lists and retrying", "error", err)
		img, err = b.build(ctx, true)
	}
	if err != nil {
		return nil, fmt.Errorf("building image %s: %w", spec.Name, err)
	}
	return img, nil
}

var (
	validName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	validPackage = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
)

// withDefaults fills in defaults and reports every problem with the spec at once.
func (s Spec) withDefaults() (Spec, error) {
	if s.Arch == "" {
		s.Arch = "amd64"
	}
	if s.Mirror == "" {
		s.Mirror = DefaultMirror
	}
	s.Mirror = strings.TrimRight(s.Mirror, "/")
	var errs []error
	if !validName.MatchString(s.Name) {
		errs = append(errs, fmt.Errorf("name %q: want letters, digits, '.', '_' or '-'", s.Name))
	}
	if !validName.MatchString(s.Suite) {
		errs = append(errs, fmt.Errorf("suite %q is not a Debian suite name", s.Suite))
	}
	if !validPackage.MatchString(s.KernelPackage) {
		errs = append(errs, fmt.Errorf("kernel package %q is not a Debian package name", s.KernelPackage))
	}
	if _, ok := multiarchTriplet[s.Arch]; !ok {
		errs = append(errs, fmt.Errorf("architecture %q is not supported", s.Arch))
	}
	if !strings.HasPrefix(s.Mirror, "http://") && !strings.HasPrefix(s.Mirror, "https://") {
		errs = append(errs, fmt.Errorf("mirror %q: want an http:// or https:// URL", s.Mirror))
	}
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("image spec %q: %w", s.Name, err)
	}
	return s, nil
}

// builder builds one image.
type builder struct {
	spec     Spec
	cacheDir string
	repo     *aptRepo
	log      hclog.Logger
}

// plan is an image's resolved inputs and where it lives in the cache.
type plan struct {
	kernel   pkg
	userland []pkg
	hash     string
	dir      string
}

// build resolves the image's inputs and returns the cached image they name, or builds it.
func (b *builder) build(ctx context.Context, forceUpdate bool) (*Image, error) {
	start := time.Now()
	p, err := b.resolve(ctx, forceUpdate)
	if err != nil {
		return nil, err
	}
	if img, err := load(p.dir); err == nil {
		b.log.Info("using cached image", "release", img.KernelRelease, "dir", img.Dir)
		return img, nil
	}
	if err := os.MkdirAll(filepath.Dir(p.dir), 0o755); err != nil {
		return nil, fmt.Errorf("creating image cache dir: %w", err)
	}
	// Builders of the same image queue here; the one that waited finds the image built.
	unlock, err := flock.Lock(ctx, p.dir+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if img, err := load(p.dir); err == nil {
		return img, nil
	}
	removeDebris(p.dir)
	// From the download of its .debs until they are unpacked, the build
	// keeps Prune from removing any.
	unlockDebs, err := flock.LockShared(ctx, debsLock(b.cacheDir))
	if err != nil {
		return nil, err
	}
	defer unlockDebs()
	b.log.Info("building image", "kernel", p.kernel.String(), "hash", p.hash[:16])
	if err := b.fetch(ctx, p); err != nil {
		return nil, err
	}
	if err := b.assemble(ctx, p, start); err != nil {
		return nil, err
	}
	img, err := load(p.dir)
	if err != nil {
		return nil, fmt.Errorf("reading built image: %w", err)
	}
	b.log.Info("image built", "release", img.KernelRelease, "dir", img.Dir, "took", time.Since(start).Round(time.Millisecond))
	return img, nil
}

// resolve brings the package lists up to date if needed and pins the exact package versions,
// which with the rest of the inputs give the image's hash.
func (b *builder) resolve(ctx context.Context, forceUpdate bool) (*plan, error) {
	unlock, err := b.lockApt(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := b.repo.refresh(ctx, forceUpdate); err != nil {
		return nil, err
	}
	kernel, err := b.repo.resolveKernel(ctx, b.spec.KernelPackage)
	if err != nil {
		return nil, err
	}
	userland, err := b.repo.closure(ctx, userlandPackages)
	if err != nil {
		return nil, err
	}
	hash, err := inputHash(b.spec, kernel, userland)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.cacheDir, "images", b.spec.Name+"-"+hash[:16])
	return &plan{kernel: kernel, userland: userland, hash: hash, dir: dir}, nil
}

// removeDebris deletes the work dirs of earlier builds of the image at dir that were killed before
// they could clean up. Only holders of the image's lock create them, so none is in use.
func removeDebris(dir string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".build-"+filepath.Base(dir)+"-*"))
	for _, m := range matches {
		os.RemoveAll(m)
	}
}

// lockApt serialises apt runs on the suite's private state, which apt would otherwise refuse.
func (b *builder) lockApt(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(b.repo.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating apt state dir: %w", err)
	}
	unlock, err := flock.Lock(ctx, b.repo.lockPath())
	if err != nil {
		return nil, err
	}
	if err := b.repo.setup(); err != nil {
		unlock()
		return nil, fmt.Errorf("setting up private apt for %s: %w", b.spec.Suite, err)
	}
	return unlock, nil
}

// fetch downloads the plan's packages that are not cached yet.
func (b *builder) fetch(ctx context.Context, p *plan) error {
	unlock, err := b.lockApt(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return b.repo.download(ctx, append([]pkg{p.kernel}, p.userland...))
}

// inputHash hashes everything that decides an image's contents except its freshly generated keys.
func inputHash(spec Spec, kernel pkg, userland []pkg) (string, error) {
	type file struct {
		Path string
		Perm uint32
		Text string
	}
	in := struct {
		Format   int
		Spec     Spec
		Kernel   pkg
		Userland []pkg
		Modules  []string
		Required []string
		Files    []file
	}{Format: formatVersion, Spec: spec, Kernel: kernel, Userland: userland, Modules: netModules, Required: requiredModules}
	for _, f := range guestFiles {
		in.Files = append(in.Files, file{f.path, f.perm, f.text})
	}
	b, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("hashing image inputs: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
