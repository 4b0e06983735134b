package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"lab/image"
	"lab/qemu"
	"lab/remote"
)

// GuestCmdline is a microVM's kernel command line. mitigations=off spares
// the emulated CPU the speculative-execution workarounds, which cost TCG
// dearly and have nothing to do with socket semantics; panic=-1 makes a
// guest that panics exit QEMU at once.
const GuestCmdline = "console=ttyS0 panic=-1 quiet mitigations=off"

// QEMU boots targets as QEMU guests: microVMs built from Debian packages,
// or cloud images.
type QEMU struct{}

// Check says what this host lacks to boot t.
func (QEMU) Check(t *Target) error {
	bin, err := qemu.Binary(t.Arch)
	if err != nil {
		return err
	}
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("%s is not installed (Debian: apt-get install qemu-system-x86 for amd64, qemu-system-arm for arm64)", bin)
	}
	if t.Suite != "" {
		for _, tool := range []string{"apt-get", "dpkg-deb"} {
			if _, err := exec.LookPath(tool); err != nil {
				return fmt.Errorf("building a Debian microVM needs %s", tool)
			}
		}
	}
	if t.Disk != "" {
		if _, err := os.Stat(ExpandHome(t.Disk)); err != nil {
			return fmt.Errorf("disk image %s: %w", t.Disk, err)
		}
	}
	return nil
}

// Start builds or finds the image, boots it and connects.
func (QEMU) Start(ctx context.Context, t *Target, env StartEnv) (Machine, error) {
	if t.Disk != "" {
		return startDisk(ctx, t, env)
	}
	env.Phase("image")
	img, err := image.Build(ctx, image.Spec{Name: t.Name, Suite: t.Suite, KernelPackage: t.Kernel, Arch: t.Arch}, env.CacheDir, env.Log)
	if err != nil {
		return nil, err
	}
	hostKey, err := img.HostPublicKey()
	if err != nil {
		return nil, err
	}
	signer, err := img.ClientSigner()
	if err != nil {
		return nil, err
	}
	return boot(ctx, t, env, qemu.Config{
		Arch:   t.Arch,
		Kernel: img.Kernel,
		Initrd: img.Initrd,
		Append: strings.TrimSpace(GuestCmdline + " " + t.KernelArgs),
	}, img.User, signer, ssh.FixedHostKey(hostKey))
}

// boot starts QEMU and waits for SSH; on failure nothing is left running
// and the error carries the console's last lines.
func boot(ctx context.Context, t *Target, env StartEnv, cfg qemu.Config, user string, signer ssh.Signer, hostKey ssh.HostKeyCallback) (Machine, error) {
	env.Phase("boot")
	cfg.MemoryMB, cfg.CPUs = t.MemoryMB, t.CPUs
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 256
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	cfg.Accel, cfg.AccelCache = "auto", accelCache(env.CacheDir)
	cfg.ConsolePath = filepath.Join(env.RunDir, t.Name+".console.log")
	cfg.Name = "lab " + t.Name + " " + env.RunDir
	cfg.Log = env.Log
	vm, err := qemu.Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("starting QEMU: %w", err)
	}
	env.Log.Info("guest started", "pid", vm.PID(), "accel", vm.Accel(), "ssh", vm.SSHAddr(), "console", cfg.ConsolePath)
	stop := func(ctx context.Context) error { return vm.Stop(ctx) }

	env.Phase("connect")
	deadline := time.Duration(t.BootTimeout)
	if deadline == 0 {
		deadline = 60 * time.Second
	}
	dialCfg := remote.Config{
		Addr: vm.SSHAddr(), User: user, Signer: signer, HostKey: hostKey,
		Deadline: deadline, Abort: vm.Exited(), Log: env.Log,
		MaxBannerWait: time.Second,
	}
	client, err := remote.Dial(ctx, dialCfg)
	if err != nil {
		why := "SSH did not come up"
		select {
		case <-vm.Exited():
			why = fmt.Sprintf("QEMU exited (%v) before SSH came up", vm.ExitErr())
		default:
		}
		stopErr := stop(context.WithoutCancel(ctx))
		return nil, errors.Join(fmt.Errorf("%s: %w\nlast console lines (%s):\n%s", why, err, cfg.ConsolePath, vm.ConsoleTail(15)), stopErr)
	}
	return &sshMachine{client: client, goos: t.OS, stop: stop, exited: vm.Exited(), redial: redialWith(dialCfg)}, nil
}

// accelCache is where QEMU's accelerator probe keeps its answer for the
// lab commands that follow (see qemu.Config.AccelCache).
func accelCache(cacheDir string) string {
	if cacheDir == "" {
		return ""
	}
	return filepath.Join(cacheDir, "accel.json")
}
