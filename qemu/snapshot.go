package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Snapshots.
//
// A guest restored from a snapshot answers SSH in a fraction of a cold boot: a new QEMU maps
// the RAM the first guest had when its sshd was ready and loads the few hundred KB of device
// state, instead of running firmware, kernel and init again. The RAM lives in a file
// (memory-backend-file): the cold boot's is an unnamed tmpfs file, which QEMU shares
// (share=on), so that `migrate` with x-ignore-shared saves only the device state (in 20 to
// 70 ms) and lab copies the RAM's non-zero pages into the cache; a restore maps the cached
// file copy-on-write (share=off), so each guest's writes go to its own private pages and the
// file is never written. Saving the RAM inside the migration stream instead (117 MB) made a
// restore take about 4 s.
//
// The snapshot is taken when the guest prints its ready marker, before Start returns, so no
// SSH connection exists yet: a restored guest carries no TCP state (no sshd session, no
// half-open connection in QEMU's user-mode network) that would be stale in a new QEMU with
// another forwarded port. User-mode networking's host forwards are not part of the device
// state (QEMU saves only connections, and there are none), so each restored guest listens on
// its own fresh 127.0.0.1 port given on its command line.

// snapshotFormat is part of every snapshot's key. Bump it when what a snapshot holds or how it
// is taken changes in a way the key does not capture.
const snapshotFormat = 1

// Timing of snapshots.
const (
	// readyTimeout bounds the wait for the ready marker in a cold boot that is to be
	// snapshotted. A guest boots in 3 to 15 s under TCG here (the more the machine is loaded,
	// the longer); one that has not printed the marker in two minutes is hung, and its
	// caller's SSH deadline decides what happens to it. The guest is then returned without a
	// snapshot.
	readyTimeout = 2 * time.Minute
	// lockWait bounds how long a Start waits for another Start of the same snapshot to save
	// it: as long as that one's cold boot may take, and a little more. After that it boots
	// cold on its own without saving.
	lockWait = readyTimeout + 30*time.Second
	// pollInterval is how often Start asks QEMU how a migration goes; one QMP round trip
	// takes about 0.1 ms, and saving or loading takes tens of ms.
	pollInterval = 5 * time.Millisecond
	// maxRestores bounds the snapshots one Start tries to restore (each failure makes the
	// next snapshot someone saves worth a try) before it boots cold.
	maxRestores = 3
)

// File names inside a snapshot directory.
const (
	snapshotMetaFile  = "snapshot.json"
	snapshotRAMFile   = "ram"   // the guest's RAM, sparse: holes where it was zero
	snapshotStateFile = "state" // QEMU's migration stream: device state, ROMs, ACPI tables
	// versionCacheFile, in Config.Snapshot's parent ($cache/snapshots), remembers `qemu
	// --version` per binary, which takes 0.05 to 0.2 s to run: a restore takes well under a
	// second.
	versionCacheFile = "qemu-version.json"
)

// snapshotKey is everything that decides whether a snapshot fits the machine a Config asks
// for: the same image, QEMU and machine. Its hash names the snapshot's directory, and the
// key is stored in the snapshot and compared in full before a restore.
type snapshotKey struct {
	Format int `json:"format"`
	// Image is Config.SnapshotKey: the image's hash.
	Image string `json:"image"`
	QEMU  qemuID `json:"qemu"`
	// Args is QEMU's command line without what differs between guests of one machine: the
	// forwarded port is 0, -name and -incoming are left out, and the RAM's backing file and
	// sharing are not named. It holds the memory, CPUs, machine type, CPU model, devices,
	// accelerator and the kernel's paths and command line.
	Args []string `json:"args"`
	// Files are the files the guest boots (kernel, initrd), by size and time: the image's
	// hash already names their contents; this catches a file replaced under the same name.
	Files []fileID `json:"files"`
	// Host names the host CPU and kernel under KVM, whose guests see the host's CPU; under
	// TCG the CPU is QEMU's and this is empty.
	Host string `json:"host,omitempty"`
}

// qemuID is the QEMU binary a snapshot was made with. A QEMU of another version may not load
// another's device state; the same version rebuilt may lay out ROMs differently.
type qemuID struct {
	Path    string    `json:"path"`
	Version string    `json:"version"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
}

type fileID struct {
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
}

// id names the key's snapshot directory.
func (k snapshotKey) id() string {
	b, _ := json.Marshal(k)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// mismatch says how a snapshot's key differs from want, or "" when it does not.
func (k snapshotKey) mismatch(want snapshotKey) string {
	switch {
	case k.Format != want.Format:
		return fmt.Sprintf("snapshot format %d, want %d", k.Format, want.Format)
	case k.QEMU.Version != want.QEMU.Version:
		return fmt.Sprintf("made by %q, this is %q", k.QEMU.Version, want.QEMU.Version)
	case k.QEMU != want.QEMU:
		return fmt.Sprintf("made by another QEMU binary (%s, %d bytes, %s)", k.QEMU.Path, k.QEMU.Size, k.QEMU.ModTime.Format(time.RFC3339))
	case k.Image != want.Image:
		return fmt.Sprintf("made from image %q, want %q", k.Image, want.Image)
	case !slices.Equal(k.Args, want.Args):
		return fmt.Sprintf("made for another machine: %s", strings.Join(k.Args, " "))
	case !slices.Equal(k.Files, want.Files):
		return "made from other kernel or initrd files"
	case k.Host != want.Host:
		return "made on another host CPU or kernel"
	}
	return ""
}

// snapshotMeta is a snapshot's snapshot.json, written last: a directory without it is no
// snapshot.
type snapshotMeta struct {
	Key snapshotKey `json:"key"`
	// ID is random per snapshot, so that a Start whose restore of it failed can tell it
	// from one another Start saved since.
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	RAM     blobSum   `json:"ram"`
	State   blobSum   `json:"state"`
	// Boot is how long the cold boot took from QEMU's start to the ready marker, and Pause
	// how long the guest was stopped to be saved; for the log and for people.
	Boot  duration `json:"boot"`
	Pause duration `json:"pause"`
}

// blobSum is a snapshot file's size and checksum. A restore checks both: QEMU would load a
// damaged RAM file without noticing, and the guest would then fail in any way at all.
type blobSum struct {
	Size int64 `json:"size"`
	// Data is how many bytes of the RAM were non-zero (stored; the rest are holes).
	Data int64 `json:"data,omitempty"`
	// CRC32C is the Castagnoli CRC of the file (for the RAM: of every non-zero page with
	// its offset, so that how the file system stores the zeros does not matter).
	CRC32C uint32 `json:"crc32c"`
}

// duration is a time.Duration that reads well in JSON.
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).Round(time.Millisecond).String())
}

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = duration(v)
	return err
}

// machineArgs is the Config's QEMU command line as the snapshot key holds it.
func (cfg *Config) machineArgs(info archInfo, accel string) []string {
	c := *cfg
	c.Name = ""
	args := append(c.args(info, accel, 0), snapshotArgs(c.memoryMB(), "", false)...)
	return args
}

// snapshotArgs are the arguments a guest that is snapshotted, or restored, has on top of the
// Config's: its RAM in a file QEMU gets as fd 4 (share "on" for a cold boot, whose RAM lab
// copies, "off" for a restore, which maps the snapshot's file copy-on-write; "" leaves
// sharing out, for the key), a vmgenid device, and QMP on fd 3.
//
// vmgenid gives every QEMU a new generation ID (guid=auto), which QEMU writes into the
// restored guest's memory and announces with an ACPI notification; a kernel with a vmgenid
// driver (6.12 here, not Debian's 5.10 or 6.1 cloud kernels) then reseeds its random number
// generator, so that guests restored from one snapshot do not draw the same random numbers.
func snapshotArgs(memMB int, share string, incoming bool) []string {
	backend := "memory-backend-file,id=ram0,size=" + strconv.Itoa(memMB) + "M"
	if share != "" {
		backend += ",mem-path=/dev/fd/4,share=" + share
	}
	args := []string{
		"-object", backend,
		"-machine", "memory-backend=ram0",
		"-device", "vmgenid,guid=auto",
		"-chardev", "socket,id=qmp,fd=3",
		"-mon", "chardev=qmp,mode=control",
	}
	if incoming {
		args = append(args, "-incoming", "defer")
	}
	return args
}

// vmgenidMachine reports whether QEMU offers vmgenid for the machine: x86 machines with ACPI
// built by QEMU (pc, q35).
func vmgenidMachine(arch, machine string) bool {
	return (arch == "amd64" || arch == "386") && (strings.HasPrefix(machine, "q35") || strings.HasPrefix(machine, "pc"))
}

// CanSnapshot reports whether a guest as cfg describes it can be
// snapshotted here (Config.Snapshot): a kernel guest, of a machine that
// offers vmgenid, on a Linux host.
func CanSnapshot(cfg Config) bool {
	arch, info, err := lookupArch(cfg.Arch)
	if err != nil || !snapshotsSupported || cfg.Disk != "" {
		return false
	}
	machine := cfg.Machine
	if machine == "" {
		machine = info.machine
	}
	return vmgenidMachine(arch, machine)
}
