// Package qemu starts and stops one QEMU guest. It chooses the accelerator by a probe boot,
// gives the guest user-mode networking with its SSH port forwarded to a free port on
// 127.0.0.1 (so all traffic stays on loopback), and keeps the serial console.
//
// MakeNoCloudSeed (package cloudinit's writer) needs xorriso, genisoimage or mkisofs, or
// else mkfs.vfat and mcopy (Debian: apt-get install xorriso).
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Config describes one guest. Exactly one of Kernel and Disk must be set.
type Config struct {
	// Arch is the guest's architecture, in Go's spelling ("amd64", "arm64") or QEMU's
	// ("x86_64", "aarch64").
	Arch string
	// Kernel, Initrd and Append boot a kernel directly, without firmware or bootloader.
	Kernel, Initrd, Append string
	// Disk is a qcow2 (or raw) disk image booted through the firmware. The guest writes to
	// a temporary copy-on-write overlay, so the image itself is never modified.
	Disk string
	// Seed is an optional cloud-init NoCloud seed image (see MakeNoCloudSeed), attached
	// read-only as a second drive.
	Seed string
	// SeedCDROM attaches Seed as a CD drive on a virtio-scsi controller instead of a
	// virtio disk: some guests' cloud-init looks for an ISO seed among CD drives, or is
	// tested by its publisher that way (OpenBSD, NetBSD). virtio-scsi rather than q35's
	// AHCI because Debian's cloud kernel has no AHCI driver (it has virtio_scsi and sr),
	// while OpenBSD (vioscsi), NetBSD (vioscsi) and FreeBSD (virtio_scsi) have both.
	SeedCDROM bool
	// MemoryMB and CPUs default to 512 and 1. Under TCG a second CPU made boots slower
	// here (3.1 s against 2.2 s), so ask for more only when the guest needs them.
	MemoryMB, CPUs int
	// Accel is "auto" (or ""), "kvm" or "tcg". Auto runs ProbeAccel.
	Accel string
	// AccelCache, if set, is a file where auto keeps the probe's answer for later
	// processes: reused for an hour while the host's boot and the QEMU binary are the
	// same, so a session of lab commands pays for one 3 s probe, not one each.
	AccelCache string
	// Machine overrides the machine type; by default q35 on x86 and virt on arm64 and
	// riscv64. q35 was measured against microvm under TCG: microvm reached the network
	// about 0.2 s sooner (2.0 s against 2.2 s) but hung in 6 of 18 boots, so it is only an
	// option; its guest must load virtio_mmio instead of virtio_pci and cannot boot a Disk.
	Machine string
	// CPU overrides the -cpu model: by default "host" under KVM and, under TCG, QEMU's own
	// default on x86 (faster to boot than "max") and "max" elsewhere.
	CPU string
	// Name names the guest in QEMU's command line (-name), so that ps and
	// tests can tell which run a QEMU belongs to. Commas are dropped: QEMU
	// would read them as option separators.
	Name string
	// ConsolePath, if set, receives everything the guest writes to its first serial port.
	ConsolePath string
	// Log receives what the VM does, the full QEMU command at debug level; nil discards.
	Log hclog.Logger
	// Detach lets the guest outlive lab (lab repro --keep): QEMU gets its own session and
	// is not killed when lab exits, and its console and stderr go straight to files
	// (ConsolePath, ConsolePath+".stderr") instead of pipes that would break with lab.
	// ConsoleTail is empty then. Stop still works while lab runs.
	Detach bool

	// Snapshot, if set, is the directory where this guest's snapshots are kept (lab uses
	// image.Image.SnapshotDir), one per machine (see snapshotKey: the image, QEMU's binary
	// and version, and every argument that shapes the machine). Without a snapshot that
	// fits, Start boots cold, waits for ReadyMarker on the console, saves the guest's RAM
	// and device state there, lets the guest go on and returns: a start takes a few tenths
	// of a second longer, and the next ones restore in a fraction of a boot. A snapshot
	// that does not fit or fails to load is logged once and replaced by a cold boot's.
	// Only Kernel guests on x86 q35 or pc machines (which have vmgenid) on Linux hosts.
	Snapshot string
	// SnapshotKey names what the guest boots, for the snapshot's key: the image's hash.
	SnapshotKey string
	// ReadyMarker is the console line at which a cold boot is snapshotted: the guest is idle
	// then and nothing has connected to it (image.ReadyMarker). Required with Snapshot.
	ReadyMarker string
	// Cold boots the same machine as a snapshotted boot without restoring a snapshot and
	// without saving one (lab's --cold).
	Cold bool
}

// Timeouts of starting and stopping QEMU.
const (
	// bindTimeout bounds the wait for QEMU to open its port forward. QEMU does that while
	// setting up its network backends, before the guest runs its first instruction, so a
	// few seconds are plenty even on a loaded host.
	bindTimeout = 20 * time.Second
	// stopGrace is how long QEMU gets to exit on SIGTERM before SIGKILL. It only has to
	// close its files; the guest is disposable and not asked to shut down.
	stopGrace = 2 * time.Second
	// killWait bounds the wait for the kernel to reap QEMU after SIGKILL.
	killWait = 10 * time.Second
	// portAttempts is how often Start tries a new port when another process took the one
	// it picked before QEMU could bind it.
	portAttempts = 5
)

// errPortTaken means QEMU could not listen on the forwarded port: someone else took it
// between freePort and QEMU's bind.
var errPortTaken = errors.New("forwarded port already in use")

// VM is one running (or exited) QEMU process.
type VM struct {
	log     hclog.Logger
	accel   string
	port    int
	cmd     *exec.Cmd
	console *console
	stderr  *limitedBuffer
	// detachedConsole is the console file of a detached VM, which WaitConsole reads back
	// because the guest's output never passes through console.
	detachedConsole string

	exited  chan struct{}
	exitErr error // set before exited is closed

	detach       bool
	consoleStart int64         // where this QEMU's output begins in the console file
	seen         chan struct{} // closed when the console shows the watched line; nil without
	restored     bool          // started from a snapshot
	snapshot     string        // the snapshot directory restored or saved, "" for none
}

// Start boots a guest as cfg says and returns once QEMU runs and listens on the forwarded
// port; it does not wait for the guest to boot, except to snapshot it (Config.Snapshot).
// ctx bounds the start only: the guest runs until Stop, until it powers off, or until lab
// exits (on Linux QEMU is killed then).
func Start(ctx context.Context, cfg Config) (*VM, error) {
	log := cfg.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	arch, info, err := cfg.check()
	if err != nil {
		return nil, fmt.Errorf("qemu: invalid config: %w", err)
	}
	binary, err := exec.LookPath(info.binary)
	if err != nil {
		return nil, fmt.Errorf("qemu: finding %s for %s guests: %w", info.binary, arch, err)
	}
	accel := cfg.Accel
	if accel == "" || accel == "auto" {
		accel = probeAccel(ctx, arch, cfg.AccelCache, log)
	}

	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("qemu: starting %s guest: %w", arch, err)
	}

	r := &runner{cfg: cfg, log: log, binary: binary, arch: arch, info: info, accel: accel}
	if cfg.ConsolePath != "" {
		if r.console, err = os.Create(cfg.ConsolePath); err != nil {
			return nil, fmt.Errorf("qemu: creating console log: %w", err)
		}
	}
	var vm *VM
	if cfg.Snapshot != "" {
		vm, err = startSnapshotted(ctx, r)
	} else {
		vm, err = r.run(ctx, nil, nil, "")
	}
	if err != nil {
		closeFile(r.console)
		return nil, fmt.Errorf("qemu: starting %s guest: %w", arch, err)
	}
	// The console file is shared by the QEMUs of one Start (a port taken, a snapshot that
	// failed to load); the VM that is returned owns it, and its QEMU is the last to write.
	if r.console != nil {
		go func() { <-vm.exited; r.console.Close() }()
	}
	return vm, nil
}

// runner starts the QEMUs of one Start.
type runner struct {
	cfg     Config
	log     hclog.Logger
	binary  string
	arch    string
	info    archInfo
	accel   string
	console *os.File // ConsolePath, nil without
}

// run starts QEMU with the Config's arguments plus extra and with files as its fds 3, 4, ...,
// on a free port (another one when someone took it first), and returns once QEMU listens
// there. With watch set, VM.seen is closed when the console shows it.
func (r *runner) run(ctx context.Context, extra []string, files []*os.File, watch string) (*VM, error) {
	for attempt := 1; ; attempt++ {
		port, err := pickPort()
		if err != nil {
			return nil, fmt.Errorf("picking a free port on 127.0.0.1: %w", err)
		}
		args := append(r.cfg.args(r.info, r.accel, port), extra...)
		vm, err := launch(ctx, r, args, port, files, watch)
		if err == nil {
			return vm, nil
		}
		if errors.Is(err, errPortTaken) && attempt < portAttempts {
			r.log.Warn("forwarded port taken before QEMU could bind it, trying another", "port", port, "attempt", attempt)
			continue
		}
		return nil, err
	}
}

// launch runs QEMU once and waits until it listens on port.
func launch(ctx context.Context, r *runner, args []string, port int, files []*os.File, watch string) (*VM, error) {
	binary, log, accel, consoleFile, detach := r.binary, r.log, r.accel, r.console, r.cfg.Detach
	vm := &VM{
		log:     log,
		accel:   accel,
		port:    port,
		console: &console{},
		stderr:  &limitedBuffer{max: 64 << 10},
		exited:  make(chan struct{}),
		detach:  detach,
	}
	if consoleFile != nil {
		vm.console.file = consoleFile
		if off, err := consoleFile.Seek(0, io.SeekCurrent); err == nil {
			vm.consoleStart = off
		}
	}
	if watch != "" {
		vm.seen = vm.console.watch(watch)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout = vm.console
	cmd.Stderr = vm.stderr
	cmd.ExtraFiles = files
	cmd.SysProcAttr = sysProcAttr(detach)
	var stderrFile *os.File
	if detach {
		// Files, not pipes: a pipe breaks when lab exits, and QEMU would lose its console.
		cmd.Stdout = consoleFile
		if consoleFile == nil {
			cmd.Stdout = nil // /dev/null
		}
		var f *os.File
		var err error
		if consoleFile != nil {
			f, err = os.Create(consoleFile.Name() + ".stderr")
		} else if f, err = os.CreateTemp("", "lab-qemu-stderr-"); err == nil {
			// Nameless at once: QEMU and lab write and read it through their
			// descriptors, and a QEMU that outlives lab leaves nothing in /tmp.
			os.Remove(f.Name())
		}
		if err != nil {
			return nil, fmt.Errorf("creating QEMU's stderr file: %w", err)
		}
		stderrFile = f
		cmd.Stderr = f
		if consoleFile != nil {
			vm.detachedConsole = consoleFile.Name()
		}
	}
	// QEMU has no children; should something still hold its stdout after it died, do not
	// let Exited wait for that.
	cmd.WaitDelay = 2 * time.Second
	vm.cmd = cmd
	log.Debug("starting qemu", "command", quoteCommand(binary, args))

	err := startLocked(cmd, func(err error) {
		if stderrFile != nil {
			// pread, by the descriptor: QEMU's stderr shares its offset.
			if fi, serr := stderrFile.Stat(); serr == nil {
				b := make([]byte, fi.Size())
				n, _ := stderrFile.ReadAt(b, 0)
				vm.stderr.Write(b[:n])
			}
			stderrFile.Close()
		}
		vm.exitErr = err
		close(vm.exited)
		if s := strings.TrimSpace(vm.stderr.String()); s != "" {
			log.Debug("qemu exited", "pid", cmd.Process.Pid, "err", err, "stderr", s)
		} else {
			log.Debug("qemu exited", "pid", cmd.Process.Pid, "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("running %s: %w", binary, err)
	}

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(bindTimeout)
	defer deadline.Stop()
	for {
		if listeningOn(cmd.Process.Pid, port) {
			log.Info("qemu started", "pid", cmd.Process.Pid, "ssh", vm.SSHAddr(), "accel", accel)
			return vm, nil
		}
		select {
		case <-vm.exited:
			stderr := strings.TrimSpace(vm.stderr.String())
			// QEMU says so only in words; the exit status is 1 for every startup error.
			if strings.Contains(stderr, "Could not set up host forwarding rule") {
				return nil, fmt.Errorf("%w: port %d: %s", errPortTaken, port, stderr)
			}
			if vm.exitErr != nil {
				return nil, fmt.Errorf("qemu exited during start (%w): %s%s", vm.exitErr, stderr, consoleSuffix(vm.console))
			}
			return nil, fmt.Errorf("qemu exited during start: %s%s", stderr, consoleSuffix(vm.console))
		case <-ctx.Done():
			vm.kill()
			return nil, fmt.Errorf("waiting for qemu to listen on port %d: %w", port, ctx.Err())
		case <-deadline.C:
			vm.kill()
			return nil, fmt.Errorf("qemu did not listen on port %d within %v: %s", port, bindTimeout, strings.TrimSpace(vm.stderr.String()))
		case <-tick.C:
		}
	}
}

// kill SIGKILLs QEMU and waits for it to be reaped, for a start that went wrong.
func (vm *VM) kill() {
	vm.cmd.Process.Kill()
	select {
	case <-vm.exited:
	case <-time.After(killWait):
		vm.log.Error("qemu not reaped after SIGKILL", "pid", vm.cmd.Process.Pid)
	}
}

func consoleSuffix(c *console) string {
	if t := c.tail(20); t != "" {
		return "\nconsole:\n" + t
	}
	return ""
}

func closeFile(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// SSHAddr is where the guest's port 22 is reachable from the host: "127.0.0.1:PORT".
func (vm *VM) SSHAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(vm.port))
}

// Exited is closed the moment QEMU exits, whatever the reason, so that a caller waiting for
// SSH can give up at once instead of running into its deadline.
func (vm *VM) Exited() <-chan struct{} { return vm.exited }

// ExitErr is QEMU's exit error (nil for status 0, *exec.ExitError otherwise); it is nil
// while QEMU runs.
func (vm *VM) ExitErr() error {
	select {
	case <-vm.exited:
		return vm.exitErr
	default:
		return nil
	}
}

// ConsoleTail returns the last n lines the guest wrote to its serial console, cleaned of
// terminal escape sequences.
func (vm *VM) ConsoleTail(n int) string { return vm.console.tail(n) }

// PID is QEMU's process id.
func (vm *VM) PID() int { return vm.cmd.Process.Pid }

// Accel is the accelerator QEMU runs with: "kvm" or "tcg".
func (vm *VM) Accel() string { return vm.accel }

// Restored reports whether the guest was restored from a snapshot (Config.Snapshot) rather
// than booted: its clock then stands where the snapshot's stood, and its console shows
// nothing of the boot.
func (vm *VM) Restored() bool { return vm.restored }

// Snapshot is the snapshot directory the guest was restored from or saved into; "" when it
// was neither.
func (vm *VM) Snapshot() string { return vm.snapshot }

// Stop ends QEMU: SIGTERM, then SIGKILL after a short grace or when ctx ends, and returns
// once QEMU has been reaped. It signals only the process it started, by its PID (on Linux
// through a pidfd, so that a reused PID is never hit), never by name or process group, and
// may be called any number of times.
func (vm *VM) Stop(ctx context.Context) error {
	select {
	case <-vm.exited:
		return nil
	default:
	}
	pid := vm.cmd.Process.Pid
	vm.log.Debug("stopping qemu", "pid", pid)
	if err := vm.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		vm.log.Warn("SIGTERM to qemu failed", "pid", pid, "err", err)
	}
	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	select {
	case <-vm.exited:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	// Kill even when ctx has ended: leaving QEMU running is never what the caller wants.
	if err := vm.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("qemu: killing pid %d: %w", pid, err)
	}
	select {
	case <-vm.exited:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("qemu: pid %d still not reaped %v after SIGKILL", pid, killWait)
	}
}

// check validates cfg, reporting every problem at once.
func (cfg *Config) check() (string, archInfo, error) {
	var errs []error
	arch, info, err := lookupArch(cfg.Arch)
	if err != nil {
		errs = append(errs, err)
	}
	switch {
	case cfg.Kernel == "" && cfg.Disk == "":
		errs = append(errs, errors.New("neither Kernel nor Disk set"))
	case cfg.Kernel != "" && cfg.Disk != "":
		errs = append(errs, errors.New("both Kernel and Disk set"))
	case cfg.Kernel == "" && (cfg.Initrd != "" || cfg.Append != ""):
		errs = append(errs, errors.New("Initrd and Append need Kernel"))
	}
	for _, f := range []struct{ name, path string }{
		{"Kernel", cfg.Kernel}, {"Initrd", cfg.Initrd}, {"Disk", cfg.Disk}, {"Seed", cfg.Seed},
	} {
		if f.path == "" {
			continue
		}
		if st, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		} else if !st.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("%s: %s is not a regular file", f.name, f.path))
		}
	}
	switch cfg.Accel {
	case "", "auto", "kvm", "tcg":
	default:
		errs = append(errs, fmt.Errorf("unknown Accel %q (want auto, kvm or tcg)", cfg.Accel))
	}
	if cfg.MemoryMB < 0 || cfg.CPUs < 0 {
		errs = append(errs, errors.New("MemoryMB and CPUs must not be negative"))
	}
	if cfg.Disk != "" && strings.HasPrefix(cfg.Machine, "microvm") {
		errs = append(errs, errors.New("microvm has no firmware to boot a Disk"))
	}
	if cfg.SeedCDROM && (cfg.Seed == "" || strings.HasPrefix(cfg.Machine, "microvm")) {
		errs = append(errs, errors.New("SeedCDROM needs a Seed and a machine with PCI (not microvm)"))
	}
	if cfg.Snapshot != "" {
		machine := cfg.Machine
		if machine == "" {
			machine = info.machine
		}
		switch {
		case !snapshotsSupported:
			errs = append(errs, errors.New("Snapshot needs a Linux host"))
		case cfg.Disk != "":
			// The guest's writes to its disk live in an overlay QEMU deletes; a snapshot
			// would have to keep it beside the RAM.
			errs = append(errs, errors.New("Snapshot works for Kernel guests only, not Disk"))
		case err == nil && !vmgenidMachine(arch, machine):
			errs = append(errs, fmt.Errorf("Snapshot needs vmgenid, which QEMU offers on x86 pc and q35 machines, not %s %s", arch, machine))
		case cfg.ReadyMarker == "":
			errs = append(errs, errors.New("Snapshot needs ReadyMarker"))
		case cfg.Detach && cfg.ConsolePath == "":
			errs = append(errs, errors.New("Snapshot with Detach needs ConsolePath, where the ready marker shows"))
		}
	}
	return arch, info, errors.Join(errs...)
}

// args builds QEMU's command line.
func (cfg *Config) args(info archInfo, accel string, port int) []string {
	machine := cfg.Machine
	if machine == "" {
		machine = info.machine
	}
	cpu := cfg.CPU
	if cpu == "" {
		if accel == "kvm" {
			cpu = "host"
		} else {
			cpu = info.tcgCPU
		}
	}
	mem, cpus := cfg.memoryMB(), cfg.CPUs
	if cpus == 0 {
		cpus = 1
	}
	bus := deviceSuffix(machine)
	// QEMU loads an iPXE option ROM for every PCI NIC, which SeaBIOS then initialises:
	// romfile= skips that, about 0.2 s under TCG, and we never boot from the network.
	noROM := ""
	if bus == "pci" {
		noROM = ",romfile="
	}

	args := []string{
		"-M", machine,
		"-accel", accel,
	}
	if cpu != "" {
		args = append(args, "-cpu", cpu)
	}
	args = append(args,
		"-m", strconv.Itoa(mem),
		"-smp", strconv.Itoa(cpus),
		// No default devices (VGA, floppy, CD-ROM, NIC, monitor): less for the firmware
		// and the kernel to probe under emulation, and nothing we did not ask for.
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-serial", "stdio",
		// A guest that reboots (panic=-1, reboot) makes QEMU exit, so a failed boot ends
		// instead of looping.
		"-no-reboot",
		// hostfwd on 127.0.0.1 only: the guest is reachable from this host and nowhere else.
		"-netdev", fmt.Sprintf("user,id=net0,hostfwd=tcp:127.0.0.1:%d-:22", port),
		"-device", "virtio-net-"+bus+",netdev=net0"+noROM,
	)
	if cfg.Name != "" {
		args = append(args, "-name", strings.ReplaceAll(cfg.Name, ",", ""))
	}
	if cfg.Kernel != "" {
		args = append(args, "-kernel", cfg.Kernel)
		if cfg.Initrd != "" {
			args = append(args, "-initrd", cfg.Initrd)
		}
		if cfg.Append != "" {
			args = append(args, "-append", cfg.Append)
		}
	}
	if cfg.Disk != "" {
		// snapshot=on puts a temporary qcow2 overlay in front of the image; QEMU deletes it
		// when it exits, so neither the image nor a leftover overlay survives the guest.
		args = append(args,
			"-drive", "if=none,id=disk0,snapshot=on,format="+imageFormat(cfg.Disk)+",file="+driveFile(cfg.Disk),
			"-device", "virtio-blk-"+bus+",drive=disk0,bootindex=0")
	}
	switch {
	case cfg.Seed != "" && cfg.SeedCDROM:
		args = append(args,
			"-drive", "if=none,id=seed0,media=cdrom,readonly=on,format=raw,file="+driveFile(cfg.Seed),
			"-device", "virtio-scsi-"+bus+",id=scsi0",
			"-device", "scsi-cd,bus=scsi0.0,drive=seed0")
	case cfg.Seed != "":
		args = append(args,
			"-drive", "if=none,id=seed0,readonly=on,format=raw,file="+driveFile(cfg.Seed),
			"-device", "virtio-blk-"+bus+",drive=seed0")
	}
	return args
}

// memoryMB is the guest's memory: MemoryMB, 512 by default.
func (cfg *Config) memoryMB() int {
	if cfg.MemoryMB == 0 {
		return 512
	}
	return cfg.MemoryMB
}

// imageFormat tells qcow2 from raw by the magic number, because letting QEMU guess the
// format of a raw image is refused for writes and warned about otherwise.
func imageFormat(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "qcow2"
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := f.Read(magic); err == nil && bytes.Equal(magic, []byte("QFI\xfb")) {
		return "qcow2"
	}
	return "raw"
}

// driveFile makes path absolute and escapes commas, which separate -drive options.
func driveFile(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return strings.ReplaceAll(path, ",", ",,")
}

// quoteCommand renders a command line that can be pasted into a shell to rerun QEMU by hand.
func quoteCommand(binary string, args []string) string {
	var b strings.Builder
	b.WriteString(binary)
	for _, a := range args {
		b.WriteByte(' ')
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=,.:/+@%", r))
		}) < 0 {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}
