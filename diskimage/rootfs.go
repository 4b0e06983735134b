package diskimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// rootUUIDVar stands for the root file system's UUID in guestFiles and
// grubConfig; every build makes a new one, as every official image has its own.
const rootUUIDVar = "@ROOT_UUID@"

// file is a file of earlyFiles.
type file struct {
	Content string      `json:"content"`
	Mode    os.FileMode `json:"mode"`
}

// earlyFiles are put into the tree before the packages lab asks for are
// installed, because they change how those install: the kernel's
// initramfs is built once, with them.
var earlyFiles = map[string]file{
	// The initramfs needs only the drivers of the disk lab boots from, not
	// initramfs-tools' default of most of the kernel's storage drivers:
	// GRUB reads the initramfs through the BIOS, slowly under emulation,
	// and the kernel unpacks it. Measured under TCG: 15 MB became 6 MB, and
	// SSH came up about 10 s sooner (40 s against 51 s, on a busy host).
	"/etc/initramfs-tools/conf.d/lab.conf": {Mode: 0o644, Content: `# Written by lab's diskimage package; see hooks/lab-disk.
MODULES=list
`},
	"/etc/initramfs-tools/hooks/lab-disk": {Mode: 0o755, Content: `#!/bin/sh
# Written by lab's diskimage package: the drivers of the disks QEMU gives
# lab's guests (virtio-blk, or virtio-scsi). The root file system, ext4, is
# built into Debian's cloud kernel.
set -e
case "$1" in prereqs) exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
force_load virtio_pci
force_load virtio_blk
manual_add_modules virtio_scsi sd_mod
`},
}

// guestFiles are written into the root file system after mmdebstrap, by
// path. They are drop-ins where the packages have a .d directory, so no
// package's conffile is changed.
var guestFiles = map[string]string{
	// No fsck (pass 0): the disk is used through a throw-away overlay and
	// was clean when built, and fsck costs seconds under emulation.
	"/etc/fstab": "UUID=" + rootUUIDVar + " / ext4 rw,errors=remount-ro 0 0\n",

	// cloud-init as on an official image, told where its data is: probing
	// other datasources costs seconds (EC2's metadata URL times out), and
	// NoCloud is how lab seeds every disk image it boots.
	"/etc/cloud/cloud.cfg.d/99_lab.cfg": `# Written by lab's diskimage package.
datasource_list: [ NoCloud, None ]
system_info:
  network:
    # systemd-networkd is the only network stack in the image; name it so
    # cloud-init does not go looking for ifupdown or netplan.
    renderers: [ networkd ]
# The partition already fills the disk, and there is no growpart in the
# image: skip both instead of logging warnings on every boot.
growpart:
  mode: "off"
resize_rootfs: false
# There is no grub-pc package to configure: GRUB was written by lab.
grub_dpkg:
  enabled: false
`,

	// DHCP on any Ethernet NIC, also when cloud-init writes no network
	// config (a seed may say "config: disabled"). cloud-init's own
	// 10-cloud-init-*.network sorts first and wins when it exists. IPv4
	// only: QEMU's user-mode network has no DHCPv6 server, and waiting for
	// one would hold network-online.target, and cloud-init, for two minutes.
	"/etc/systemd/network/99-lab-dhcp.network": `[Match]
Type=ether

[Network]
DHCP=ipv4
`,

	// cloud-init's locale module sets en_US.UTF-8, which is not generated,
	// unless the system already has a locale: C.UTF-8 is always there.
	"/etc/default/locale": "LANG=C.UTF-8\n",

	// cloud-init sets the real name from the seed's meta-data;
	// mmdebstrap left the build host's here.
	"/etc/hostname": "localhost\n",
}

// masked are units an official image would run that only cost boot time
// (or disk I/O, under emulation) in a guest that lives for minutes.
var masked = []string{
	"apt-daily.timer",
	"apt-daily-upgrade.timer",
	"dpkg-db-backup.timer",
	"e2scrub_all.timer",
	"e2scrub_reap.service",
	"fstrim.timer",
	"systemd-tmpfiles-clean.timer",
	// No display: a getty on the first virtual terminal serves no one.
	// The serial console keeps its getty, from console=ttyS0.
	"getty@tty1.service",
}

// bootstrap runs mmdebstrap into root.
func bootstrap(ctx context.Context, rec recipe, root string, log hclog.Logger) error {
	args := []string{
		"--mode=root",
		"--variant=minbase",
		"--format=directory",
		"--architectures=" + rec.Arch,
		"--keyring=" + keyring,
		"--include=" + strings.Join(rec.Packages, ","),
		`--aptopt=Acquire::Retries "3"`,
		// Nobody reads manual pages or documentation in a test guest;
		// copyright files stay.
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/info/*",
		rec.Suite, root,
	}
	args = append(args, rec.Sources...)
	early := filepath.Join(filepath.Dir(root), "early.tar")
	if err := writeTar(early, rec.Early); err != nil {
		return fmt.Errorf("packing early files: %w", err)
	}
	// After the Essential packages, before the ones we include.
	args = append([]string{"--essential-hook=tar-in " + early + " /"}, args...)
	cmd := exec.Command("mmdebstrap", args...)
	tail := &tailLog{log: log.Named("mmdebstrap"), max: 30}
	cmd.Stdout, cmd.Stderr = tail, tail
	t := time.Now()
	if err := runCancelable(ctx, cmd); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("mmdebstrap: %w", ctx.Err())
		}
		return fmt.Errorf("mmdebstrap: %w:\n%s", err, tail.String())
	}
	log.Debug("mmdebstrap done", "seconds", time.Since(t).Seconds())
	return nil
}

// writeTar writes files into a tar archive owned by root, for mmdebstrap's
// tar-in, which unpacks it in the chroot. Only files are in it, so the
// directories they land in keep their owners and modes, or get tar's
// defaults (root, 0755) when they are new.
func writeTar(path string, files map[string]file) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		h := &tar.Header{
			Name:    "." + p,
			Mode:    int64(files[p].Mode),
			Size:    int64(len(files[p].Content)),
			ModTime: time.Unix(0, 0),
			Format:  tar.FormatPAX,
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write([]byte(files[p].Content)); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// runCancelable runs cmd until it exits or ctx ends. On cancel mmdebstrap
// gets SIGTERM, not SIGKILL: its handler stops apt and unmounts what it
// mounted in the chroot, which a killed mmdebstrap would leave behind.
func runCancelable(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return <-done
	}
}

// customize turns mmdebstrap's tree into what an official cloud image
// ships: no host keys, no machine id, lab's configuration, and the units
// enabled and masked as the recipe says.
func customize(ctx context.Context, rec recipe, root, uuid string, log hclog.Logger) error {
	// Host keys openssh-server's postinst generated would be shared by
	// every guest; cloud-init installs the seed's (or generates new ones).
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return fmt.Errorf("removing host key: %w", err)
		}
	}
	// An empty machine-id makes systemd generate one on first boot, so two
	// guests of one image are two machines (DHCP client ids come from it).
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return fmt.Errorf("clearing machine-id: %w", err)
	}
	if err := os.Remove(filepath.Join(root, "var/lib/dbus/machine-id")); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("clearing dbus machine-id: %w", err)
	}
	paths := make([]string, 0, len(rec.Files))
	for p := range rec.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		dst := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		content := strings.ReplaceAll(rec.Files[p], rootUUIDVar, uuid)
		if err := os.WriteFile(dst, []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	// mmdebstrap copied the build host's resolv.conf in; the guest's comes
	// from systemd-resolved, which serves the DHCP-provided DNS (QEMU's
	// 10.0.2.3) and also resolves the guest's own name, so sudo does not
	// wait on a DNS timeout for it.
	resolv := filepath.Join(root, "etc/resolv.conf")
	if err := os.Remove(resolv); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("replacing resolv.conf: %w", err)
	}
	if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", resolv); err != nil {
		return fmt.Errorf("replacing resolv.conf: %w", err)
	}
	// systemctl works on the unit files alone in a chroot, and it is the
	// guest's own systemctl that knows its units' [Install] sections.
	if err := run(ctx, nil, "chroot", append([]string{root, "systemctl", "enable", "--quiet"}, rec.Enable...)...); err != nil {
		return fmt.Errorf("enabling units: %w", err)
	}
	if err := run(ctx, nil, "chroot", append([]string{root, "systemctl", "mask", "--quiet"}, rec.Mask...)...); err != nil {
		return fmt.Errorf("masking units: %w", err)
	}
	for _, link := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(root, link)); err != nil {
			return fmt.Errorf("the kernel package made no /%s link (GRUB boots it): %w", link, err)
		}
	}
	return nil
}

// newUUID returns a random (version 4) UUID for the root file system.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating file system UUID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// tailLog passes a program's output to the log line by line, at debug
// level, and keeps the last max lines for an error message.
type tailLog struct {
	log   hclog.Logger
	max   int
	mu    sync.Mutex
	part  []byte
	lines []string
}

func (t *tailLog) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		// A line without its newline yet waits for the next write.
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(t.part[:i]), "\r")
		t.part = t.part[i+1:]
		t.log.Debug(line)
		t.lines = append(t.lines, line)
		if len(t.lines) > t.max {
			t.lines = t.lines[1:]
		}
	}
	return len(p), nil
}

func (t *tailLog) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(append(t.lines, string(t.part)), "\n")
}
