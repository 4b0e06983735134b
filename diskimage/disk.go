package diskimage

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// grubConfig is embedded in core.img and run by GRUB's kernel before any
// menu: it boots at once, so there is no timeout to wait out and no
// grub.cfg or module directory in the image. GRUB talks on the serial port
// too, so a boot that fails there says why in the console log. The kernel
// is found through Debian's /vmlinuz and /initrd.img links, which follow a
// kernel upgraded inside the guest.
const grubConfig = `serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
search --no-floppy --fs-uuid --set=root ` + rootUUIDVar + `
linux /vmlinuz root=UUID=` + rootUUIDVar + ` ro console=ttyS0
initrd /initrd.img
boot
`

// grubModules go into core.img: what reads the disk (biosdisk, part_msdos,
// ext2), finds the root file system by UUID (search) and boots Linux
// (linux, boot), and the serial terminal. grub-mkimage adds their
// dependencies.
var grubModules = []string{"biosdisk", "part_msdos", "ext2", "search", "search_fs_uuid", "linux", "boot", "serial", "terminal"}

// mke2fsConf replaces the host's /etc/mke2fs.conf, so the file system has
// the same features whichever e2fsprogs builds it: those of Debian 12, all
// of which GRUB 2.06 reads (newer defaults such as orphan_file or
// metadata_csum_seed it does not).
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`

// writeDisk writes a raw disk image at raw: an MBR with one bootable Linux
// partition holding root as ext4, and GRUB in the sectors before it.
func writeDisk(ctx context.Context, rec recipe, root, raw, uuid, work string) error {
	f, err := os.Create(raw)
	if err != nil {
		return fmt.Errorf("creating disk: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(rec.Disk); err != nil {
		return fmt.Errorf("sizing disk: %w", err)
	}
	partSectors := uint32(rec.Disk/sectorSize - partStart)

	// The file system first: mke2fs clears the start of the space it is
	// given, which must not reach the boot sector written after it.
	conf := filepath.Join(work, "mke2fs.conf")
	if err := os.WriteFile(conf, []byte(rec.Mke2fs), 0o644); err != nil {
		return fmt.Errorf("writing mke2fs.conf: %w", err)
	}
	blocks := int64(partSectors) * sectorSize / 4096
	err = run(ctx, []string{"MKE2FS_CONFIG=" + conf}, "mke2fs", "-q", "-F",
		"-t", "ext4", "-b", "4096", "-L", "root", "-U", uuid,
		"-d", root,
		// Initialise inode tables and journal now, as zeros qemu-img leaves
		// out of the qcow2, rather than have the guest's ext4lazyinit
		// write them on every boot through its throw-away overlay.
		"-E", fmt.Sprintf("offset=%d,nodiscard,lazy_itable_init=0,lazy_journal_init=0", partStart*sectorSize),
		raw, strconv.FormatInt(blocks, 10))
	if err != nil {
		return fmt.Errorf("making the root file system: %w", err)
	}

	core := filepath.Join(work, "core.img")
	cfg := filepath.Join(work, "grub-embedded.cfg")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(rec.Grub, rootUUIDVar, uuid)), 0o644); err != nil {
		return fmt.Errorf("writing GRUB's embedded config: %w", err)
	}
	// The prefix is never used (the embedded config boots), but GRUB wants
	// one; it names the root partition in case someone adds a grub.cfg.
	args := append([]string{"-O", "i386-pc", "-d", grubDir, "-o", core, "-c", cfg, "-p", "(hd0,msdos1)/boot/grub"}, rec.Modules...)
	if err := run(ctx, nil, "grub-mkimage", args...); err != nil {
		return fmt.Errorf("making GRUB's core.img: %w", err)
	}
	coreImg, err := os.ReadFile(core)
	if err != nil {
		return fmt.Errorf("reading core.img: %w", err)
	}
	// core.img goes right after the MBR, in the gap before the partition;
	// its first sector (diskboot.img) loads the rest from the next sectors,
	// which grub-mkimage already recorded.
	if max := (partStart - 1) * sectorSize; len(coreImg) > max {
		return fmt.Errorf("GRUB's core.img is %d bytes, more than the %d before the partition", len(coreImg), max)
	}
	if !coreLoadsFromSector2(coreImg) {
		return fmt.Errorf("core.img's first sector does not load the rest from sector 2; this GRUB's layout is unknown")
	}
	bootImg, err := os.ReadFile(filepath.Join(grubDir, "boot.img"))
	if err != nil {
		return fmt.Errorf("reading GRUB's boot.img: %w", err)
	}
	// The disk signature only has to differ between disks; the UUID's first
	// 32 bits do.
	sig, err := strconv.ParseUint(uuid[:8], 16, 32)
	if err != nil {
		return fmt.Errorf("disk signature from UUID %s: %w", uuid, err)
	}
	mbr, err := bootSector(bootImg, 1, uint32(sig), []partition{
		{Bootable: true, Type: 0x83, Start: partStart, Sectors: partSectors},
	})
	if err != nil {
		return fmt.Errorf("making the boot sector: %w", err)
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("writing the boot sector: %w", err)
	}
	if _, err := f.WriteAt(coreImg, sectorSize); err != nil {
		return fmt.Errorf("writing core.img: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing disk: %w", err)
	}
	return nil
}

// coreLoadsFromSector2 checks the block list at the end of core.img's first
// sector (diskboot.img): 8 bytes of start sector, 2 of count, 2 of segment.
// grub-mkimage fills in the count and leaves the start at 2, the sector
// after itself when core.img sits at sector 1, as lab puts it.
func coreLoadsFromSector2(core []byte) bool {
	if len(core) < sectorSize {
		return false
	}
	e := core[sectorSize-12:]
	start := binary.LittleEndian.Uint64(e)
	count := binary.LittleEndian.Uint16(e[8:])
	return start == 2 && int(count)*sectorSize >= len(core)-sectorSize
}
