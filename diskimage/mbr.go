package diskimage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// sectorSize is the logical sector size of every disk lab builds: what
// SeaBIOS, GRUB's biosdisk and an MBR all count in.
const sectorSize = 512

// Offsets in a GRUB i386-pc boot.img (grub-core/boot/i386/pc/boot.S) and in
// an MBR. grub-bios-setup patches the same places; lab writes the sector
// itself because grub-bios-setup wants a block device it can probe.
const (
	bootKernelSector = 0x5c  // 8 bytes LE: LBA of core.img's first sector
	bootDriveCheck   = 0x66  // a 2-byte jmp that trusts DL only for floppies
	mbrDiskSignature = 0x1b8 // 4 bytes: the "NT disk signature"
	mbrPartitions    = 0x1be // four 16-byte partition entries
	mbrSignature     = 0x1fe // 0x55 0xaa
)

// partition is one MBR partition entry, in sectors.
type partition struct {
	Bootable bool
	Type     byte // 0x83: Linux
	Start    uint32
	Sectors  uint32
}

// bootSector returns the first sector of a disk: GRUB's boot.img code, a
// disk signature and a partition table holding parts. coreLBA is where
// core.img starts; GRUB's boot code loads it from there.
func bootSector(bootImg []byte, coreLBA uint64, diskSig uint32, parts []partition) ([]byte, error) {
	if len(bootImg) != sectorSize {
		return nil, fmt.Errorf("boot.img is %d bytes, want %d", len(bootImg), sectorSize)
	}
	if bootImg[mbrSignature] != 0x55 || bootImg[mbrSignature+1] != 0xaa {
		return nil, errors.New("boot.img lacks the 0x55aa boot signature")
	}
	if len(parts) > 4 {
		return nil, fmt.Errorf("%d partitions do not fit an MBR", len(parts))
	}
	s := make([]byte, sectorSize)
	// Only the code before the disk signature is GRUB's: what boot.img has
	// after it (a floppy fallback) is where the partition table goes.
	copy(s, bootImg[:mbrDiskSignature])
	binary.LittleEndian.PutUint64(s[bootKernelSector:], coreLBA)
	// As grub-bios-setup does for hard disks: some BIOSes pass a wrong DL,
	// so the boot code should not trust it; NOPs replace the jmp that
	// would skip the fix-up.
	s[bootDriveCheck], s[bootDriveCheck+1] = 0x90, 0x90
	binary.LittleEndian.PutUint32(s[mbrDiskSignature:], diskSig)
	for i, p := range parts {
		e := s[mbrPartitions+16*i : mbrPartitions+16*(i+1)]
		if p.Bootable {
			e[0] = 0x80
		}
		copy(e[1:4], chs(p.Start))
		e[4] = p.Type
		copy(e[5:8], chs(p.Start+p.Sectors-1))
		binary.LittleEndian.PutUint32(e[8:], p.Start)
		binary.LittleEndian.PutUint32(e[12:], p.Sectors)
	}
	s[mbrSignature], s[mbrSignature+1] = 0x55, 0xaa
	return s, nil
}

// chs encodes an LBA as the 3-byte cylinder/head/sector address of an MBR
// entry, in the 255-head, 63-sector geometry fdisk assumes. Addresses past
// what CHS can express get the conventional 1023/254/63, which tells every
// reader to use the LBA fields; nothing lab boots reads CHS, but fdisk and
// old tools complain when it is inconsistent.
func chs(lba uint32) []byte {
	const heads, sectors = 255, 63
	c := lba / (heads * sectors)
	h := (lba / sectors) % heads
	s := lba%sectors + 1
	if c > 1023 {
		c, h, s = 1023, 254, 63
	}
	return []byte{byte(h), byte(s) | byte(c>>2)&0xc0, byte(c)}
}

// readPartitions parses the partition table of a boot sector, for tests and
// for checking a built disk.
func readPartitions(s []byte) ([]partition, error) {
	if len(s) < sectorSize || s[mbrSignature] != 0x55 || s[mbrSignature+1] != 0xaa {
		return nil, errors.New("not an MBR: no 0x55aa signature")
	}
	var out []partition
	for i := 0; i < 4; i++ {
		e := s[mbrPartitions+16*i : mbrPartitions+16*(i+1)]
		if e[4] == 0 {
			continue
		}
		out = append(out, partition{
			Bootable: e[0] == 0x80,
			Type:     e[4],
			Start:    binary.LittleEndian.Uint32(e[8:]),
			Sectors:  binary.LittleEndian.Uint32(e[12:]),
		})
	}
	return out, nil
}
