package target

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"lab/cloudinit"
	"lab/diskimage"
	"lab/fetch"
	"lab/image"
	"lab/qemu"
	"lab/remote"
)

// qemuProvider boots targets as QEMU guests: microVMs built from Debian
// packages, or cloud images booted with a NoCloud seed lab writes.
type qemuProvider struct{}

// qemuConfig is a microVM (suite and kernel) or a cloud image (disk).
type qemuConfig struct {
	// A microVM built from Debian packages ...
	Suite  string `yaml:"suite"`  // bullseye, bookworm, trixie, ...
	Kernel string `yaml:"kernel"` // the kernel package, e.g. linux-image-cloud-amd64
	// KernelArgs are added to a microVM's kernel command line.
	KernelArgs string `yaml:"kernel_args"`
	// ... or a cloud image.
	Disk string `yaml:"disk"`
	User string `yaml:"user"` // the cloud image's default user

	MemoryMB int `yaml:"memory_mb"`
	CPUs     int `yaml:"cpus"`
	// BootTimeout bounds boot and SSH readiness.
	BootTimeout duration `yaml:"boot_timeout"`
}

func (qemuProvider) NewConfig() Config { return &qemuConfig{} }

func (c *qemuConfig) Validate(s *Spec) []string {
	var p []string
	if (c.Suite == "") == (c.Disk == "") {
		p = append(p, "a qemu target needs either \"suite\" and \"kernel\" (a microVM built from Debian packages) or \"disk\" (a qcow2 cloud image)")
	}
	if c.Suite != "" && c.Kernel == "" {
		p = append(p, "\"kernel\" (a Debian kernel package) is required with \"suite\"")
	}
	if c.Disk != "" {
		// A disk: naming an image of lab image fetch's catalog brings its
		// OS and default user.
		if img, err := fetch.Lookup(c.Disk); err == nil && !strings.ContainsRune(c.Disk, '/') {
			s.OS = cmp.Or(s.OS, img.OS)
			c.User = cmp.Or(c.User, img.User)
		}
		if s.OS == "" || c.User == "" {
			p = append(p, "a disk image target needs \"os\" (its GOOS) and \"user\" (the cloud image's default user)")
		} else if _, err := cloudinit.Lookup(s.OS); err != nil {
			p = append(p, err.Error())
		}
	}
	if c.Suite != "" && s.OS == "" {
		s.OS = "linux"
	}
	if s.Arch == "" {
		s.Arch = "amd64"
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	switch {
	case c.Disk != "":
		// Each OS's first boot under TCG and the RAM it needs: cloudinit
		// knows them from the images' own sources.
		mem, boot := diskMemoryMB, diskBootTimeout
		if g, err := cloudinit.Lookup(s.OS); err == nil {
			mem, boot = cmp.Or(g.MemoryMB, mem), cmp.Or(g.BootDeadline, boot)
		}
		c.MemoryMB = cmpOrInt(c.MemoryMB, mem)
		c.BootTimeout = cmpOrDuration(c.BootTimeout, boot)
	default:
		c.MemoryMB = cmpOrInt(c.MemoryMB, microVMMemoryMB)
		c.BootTimeout = cmpOrDuration(c.BootTimeout, microVMBootTimeout)
	}
	return p
}

func cmpOrInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func cmpOrDuration(v duration, def time.Duration) duration {
	if v == 0 {
		return duration(def)
	}
	return v
}

func (c *qemuConfig) Describe() string {
	if c.Disk != "" {
		return c.Disk
	}
	return fmt.Sprintf("Debian %s, %s", c.Suite, c.Kernel)
}

func (c *qemuConfig) imageSpec(s Spec) image.Spec {
	return image.Spec{Name: s.Name, Suite: c.Suite, KernelPackage: c.Kernel, Arch: s.Arch}
}

// Check says what this host lacks to boot s.
func (qemuProvider) Check(s Spec, env Env) error {
	c := s.Config.(*qemuConfig)
	bin, err := qemu.Binary(s.Arch)
	if err != nil {
		return err
	}
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("%s is not installed (Debian: apt-get install qemu-system-x86 for amd64, qemu-system-arm for arm64)", bin)
	}
	if c.Suite != "" {
		for _, tool := range []string{"apt-get", "dpkg-deb"} {
			if _, err := exec.LookPath(tool); err != nil {
				return fmt.Errorf("building a Debian microVM needs %s", tool)
			}
		}
	}
	if c.Disk != "" {
		disk, err := fetch.Resolve(env.CacheDir, c.Disk)
		if err != nil {
			return err
		}
		if _, err := os.Stat(expandHome(disk)); err != nil {
			return fmt.Errorf("disk image %s: %w", c.Disk, err)
		}
	}
	return nil
}

// CanKeep: only lab's own microVMs are kept.
func (qemuProvider) CanKeep(s Spec) error {
	if s.Config.(*qemuConfig).Suite == "" {
		return fmt.Errorf("only qemu microVM targets can be kept, not %s (a disk image)", s.Name)
	}
	return nil
}

// BuildImage builds a microVM's image.
func (qemuProvider) BuildImage(ctx context.Context, s Spec, env Env) (string, bool, error) {
	c := s.Config.(*qemuConfig)
	if c.Suite == "" {
		return "", false, nil
	}
	img, err := image.Build(ctx, c.imageSpec(s), env.CacheDir, env.Log)
	if err != nil {
		return "", true, err
	}
	return fmt.Sprintf("%s (%s %s)", img.Dir, img.KernelPackage, img.KernelVersion), true, nil
}

// Start boots s: a kept microVM that still runs is reused, a microVM to keep
// is booted detached and recorded, and any other guest is booted for this
// run only.
func (qemuProvider) Start(ctx context.Context, s Spec, env Env) (*Instance, error) {
	c := s.Config.(*qemuConfig)
	if c.Disk != "" {
		return startDisk(ctx, s, c, env)
	}
	if k, err := LoadKept(env.CacheDir, s.Name); err == nil {
		if k.Alive() {
			env.Log.Info("reusing kept guest", "pid", k.PID, "ssh", k.SSHAddr)
			return k.instance(s)
		}
		env.Log.Info("kept guest is gone", "pid", k.PID)
		k.Down()
	}
	env.Phase("image")
	img, err := image.Build(ctx, c.imageSpec(s), env.CacheDir, env.Log)
	if err != nil {
		return nil, err
	}
	hostKeyLine, err := os.ReadFile(img.HostKey)
	if err != nil {
		return nil, fmt.Errorf("reading the image's host key: %w", err)
	}
	hostKey, err := remote.PinnedHostKey(hostKeyLine)
	if err != nil {
		return nil, err
	}
	signer, err := img.ClientSigner()
	if err != nil {
		return nil, err
	}
	cfg := qemu.Config{
		Arch:        s.Arch,
		Kernel:      img.Kernel,
		Initrd:      img.Initrd,
		Append:      strings.TrimSpace(image.KernelCmdline + " " + c.KernelArgs),
		ConsolePath: filepath.Join(env.RunDir, s.Name+".console.log"),
	}
	// The agent rides in the initramfs, and so in the snapshot a later run
	// restores in a fraction of a boot (docs/snapshots.md): no upload, and
	// never a stale agent, since another agent build is another initramfs
	// and another snapshot.
	preloaded := map[string]string{}
	if env.Agent != nil {
		agentBin, err := env.Agent(ctx, AgentBuild{GOOS: s.OS, GOARCH: s.Arch})
		if err != nil {
			return nil, fmt.Errorf("building the agent for the guest's initramfs: %w", err)
		}
		initrd, agentKey, err := image.AgentInitrd(img, agentBin)
		if err != nil {
			return nil, err
		}
		cfg.Initrd = initrd
		preloaded[agentBin] = image.GuestAgentPath
		if qemu.CanSnapshot(cfg) {
			cfg.Snapshot, cfg.SnapshotKey, cfg.ReadyMarker, cfg.Cold = img.SnapshotDir(), img.Hash+" "+agentKey, image.ReadyMarker, env.Cold
		}
	}
	if s.Keep {
		// Kept: QEMU outlives lab, and its state is recorded before the
		// first connection, so that lab down finds it whatever happens next.
		cfg.Detach = true
		cfg.Name = "lab-kept " + s.Name + " " + env.CacheDir
	}
	in, vm, err := boot(ctx, s, c, env, cfg, img.User, signer, hostKey)
	if err != nil {
		return nil, err
	}
	in.Preloaded = preloaded
	if vm.Snapshot() != "" {
		// A guest restored from a snapshot, or paused while one was saved,
		// has its clock where the snapshot left it, and (on kernels without
		// a vmgenid driver) the random state of every guest restored from
		// it: fix both before anything else runs there.
		env.Log.Info("guest from snapshot", "restored", vm.Restored(), "snapshot", vm.Snapshot())
		in.Prepare = func(ctx context.Context, client *remote.Client) error {
			var out bytes.Buffer
			remoteErr, transportErr := client.Run(ctx, image.ResumeCommand(time.Now()), nil, &out, &out)
			if transportErr != nil {
				return transportErr
			}
			if remoteErr != nil {
				return fmt.Errorf("setting the restored guest's clock: %w: %s", remoteErr, strings.TrimSpace(out.String()))
			}
			return nil
		}
	}
	if !s.Keep {
		return in, nil
	}
	k := &Kept{
		Target: s.Name, PID: vm.PID(), Marker: strings.ReplaceAll(cfg.Name, ",", ""), SSHAddr: vm.SSHAddr(),
		User: img.User, Key: img.ClientKey, HostKey: strings.TrimSpace(string(hostKeyLine)), OS: s.OS,
		Console: cfg.ConsolePath, Started: time.Now().UTC(), Preloaded: preloaded,
		file:       KeptFile(env.CacheDir, s.Name),
		KnownHosts: strings.TrimSuffix(KeptFile(env.CacheDir, s.Name), ".json") + ".known_hosts",
	}
	if err := k.save(); err != nil {
		return nil, errors.Join(fmt.Errorf("recording the kept guest: %w", err), in.stop(ctx))
	}
	stopVM := in.Stop
	in.Stop = func(ctx context.Context) error { return errors.Join(stopVM(ctx), k.forget()) }
	in.Keep, in.Kept = true, k
	env.Log.Info("guest kept running", "pid", k.PID, "ssh", k.SSHAddr, "stop with", "lab down "+s.Name)
	return in, nil
}

// boot starts QEMU and says how to reach its guest over SSH; the engine's
// Connect waits for SSH. On failure nothing is left running.
func boot(ctx context.Context, s Spec, c *qemuConfig, env Env, cfg qemu.Config, user string, signer ssh.Signer, hostKey ssh.HostKeyCallback) (*Instance, *qemu.VM, error) {
	env.Phase("boot")
	cfg.MemoryMB, cfg.CPUs = c.MemoryMB, c.CPUs
	cfg.Accel, cfg.AccelCache = "auto", accelCache(env.CacheDir)
	cfg.ConsolePath = filepath.Join(env.RunDir, s.Name+".console.log")
	if cfg.Name == "" {
		cfg.Name = "lab " + s.Name + " " + env.RunDir
	}
	cfg.Log = env.Log
	vm, err := qemu.Start(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("starting QEMU: %w", err)
	}
	env.Log.Info("guest started", "pid", vm.PID(), "accel", vm.Accel(), "ssh", vm.SSHAddr(), "console", cfg.ConsolePath)
	in := &Instance{
		Agent: AgentBuild{GOOS: s.OS, GOARCH: s.Arch},
		SSH: &remote.Config{
			Addr: vm.SSHAddr(), User: user, Signer: signer, HostKey: hostKey,
			Deadline: time.Duration(c.BootTimeout), Log: env.Log,
			MaxBannerWait: time.Second,
		},
		Exited: vm.Exited(),
		Stop:   vm.Stop,
		Diagnose: func(err error) error {
			why := "SSH did not come up"
			select {
			case <-vm.Exited():
				why = fmt.Sprintf("QEMU exited (%v) before SSH came up", vm.ExitErr())
			default:
			}
			return fmt.Errorf("%s: %w\nlast console lines (%s):\n%s", why, err, cfg.ConsolePath, vm.ConsoleTail(15))
		},
		CC: CBuildTarget,
	}
	if c.Suite != "" {
		// A static binary runs in the microVM, which has no C library to
		// link against (and no compiler).
		in.CC = CBuildHostStatic
	}
	return in, vm, nil
}

// accelCache is where QEMU's accelerator probe keeps its answer for the
// lab commands that follow (see qemu.Config.AccelCache).
func accelCache(cacheDir string) string {
	if cacheDir == "" {
		return ""
	}
	return filepath.Join(cacheDir, "accel.json")
}

// startDisk boots a cloud image (FreeBSD, OpenBSD, NetBSD, OmniOS, Debian,
// Ubuntu, ...) with a cloud-init NoCloud seed lab writes (package
// cloudinit, per OS): the seed installs a host key lab generated, so the key
// is pinned before the first boot, authorizes lab's client key, gives lab
// root the OS's own way, and prints a line with the host key's fingerprint
// on the console once sshd serves that key, which lab waits for before it
// dials. The image file itself is never modified: QEMU writes to an overlay.
func startDisk(ctx context.Context, s Spec, c *qemuConfig, env Env) (*Instance, error) {
	env.Phase("image")
	g, err := cloudinit.Lookup(s.OS)
	if err != nil {
		return nil, err
	}
	disk, err := fetch.Resolve(env.CacheDir, c.Disk)
	if err != nil {
		return nil, err
	}
	keyDir := filepath.Join(env.CacheDir, "keys", s.Name)
	hostPub, hostPriv, err := diskimage.KeyPair(keyDir, "host")
	if err != nil {
		return nil, err
	}
	clientPub, clientPriv, err := diskimage.KeyPair(keyDir, "client")
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(clientPriv)
	if err != nil {
		return nil, fmt.Errorf("parsing client key: %w", err)
	}
	// The guest's sshd may hold keys of other types too (FreeBSD's and
	// NetBSD's rc scripts make missing ones): the pin restricts the
	// handshake to the pinned key's algorithm.
	hostKey, err := remote.PinnedHostKey(hostPub)
	if err != nil {
		return nil, fmt.Errorf("pinning the host key: %w", err)
	}
	// The seed carries the host's private key, so it lives beside that key in
	// the cache's private key directory, never in the run directory (which is
	// published), and only while QEMU opens it: QEMU holds the file open from
	// its start, so it is removed as soon as boot returns.
	seedDir, err := os.MkdirTemp(keyDir, "seed-")
	if err != nil {
		return nil, fmt.Errorf("creating NoCloud seed directory: %w", err)
	}
	defer os.RemoveAll(seedDir)
	seed := filepath.Join(seedDir, "seed.iso")
	if _, err := cloudinit.WriteSeed(seed, cloudinit.Config{OS: s.OS, Name: s.Name, User: c.User,
		AuthorizedKeys: []string{strings.TrimSpace(string(clientPub))},
		HostKey:        cloudinit.HostKey{Private: hostPriv, Public: hostPub}}); err != nil {
		return nil, fmt.Errorf("writing NoCloud seed: %w", err)
	}
	in, vm, err := boot(ctx, s, c, env, qemu.Config{Arch: s.Arch, Disk: expandHome(disk), Seed: seed, SeedCDROM: g.SeedCDROM},
		g.LoginUser(c.User), signer, hostKey)
	if err != nil {
		return nil, err
	}
	// The seed's last step prints the pinned key's fingerprint once sshd
	// serves it; until then sshd may serve the image's own keys (OpenBSD
	// starts it before cloud-init) or lab's user may not exist.
	waitCtx, cancel := context.WithTimeout(ctx, time.Duration(c.BootTimeout))
	err = cloudinit.WaitReady(waitCtx, vm, hostPub)
	cancel()
	if err != nil {
		return nil, errors.Join(in.Diagnose(fmt.Errorf("waiting for the seed's ready line (%s): %w", g.Reader, err)), in.stop(ctx))
	}
	in.SSH.Deadline = diskSSHAfterReady
	// The guest is disposable, so the agent may run as root there: through
	// the OS's own tool, checked once at connect.
	prefix, check := g.RootCommand()
	in.Root = prefix
	in.Prepare = func(ctx context.Context, client *remote.Client) error {
		var out bytes.Buffer
		remoteErr, transportErr := client.Run(ctx, check, nil, &out, &out)
		if transportErr != nil {
			return transportErr
		}
		return g.CheckRoot(out.String(), remoteErr)
	}
	return in, nil
}
