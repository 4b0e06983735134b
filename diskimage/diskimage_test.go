package diskimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// fakeBootImg looks like GRUB's boot.img where it matters: code bytes
// everywhere, the drive-check jmp, and the boot signature.
func fakeBootImg() []byte {
	b := bytes.Repeat([]byte{0xcc}, sectorSize)
	b[bootDriveCheck], b[bootDriveCheck+1] = 0xeb, 0x05
	b[mbrSignature], b[mbrSignature+1] = 0x55, 0xaa
	return b
}

func TestCHS(t *testing.T) {
	for _, tc := range []struct {
		name string
		lba  uint32
		want []byte
	}{
		{"first sector", 0, []byte{0, 1, 0}},
		// What fdisk writes for a partition at 1 MiB: C/H/S 0/32/33.
		{"1 MiB", 2048, []byte{32, 33, 0}},
		{"cylinder 1", 255 * 63, []byte{0, 1, 1}},
		// Cylinder 1023's two high bits go into the sector byte.
		{"cylinder 1023", 1023 * 255 * 63, []byte{0, 1 | 0xc0, 0xff}},
		{"past CHS", 1024 * 255 * 63, []byte{254, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := chs(tc.lba); !bytes.Equal(got, tc.want) {
				t.Errorf("chs(%d) = % x, want % x", tc.lba, got, tc.want)
			}
		})
	}
}

func TestBootSector(t *testing.T) {
	boot := fakeBootImg()
	parts := []partition{{Bootable: true, Type: 0x83, Start: 2048, Sectors: 8386560}}
	s, err := bootSector(boot, 1, 0xdeadbeef, parts)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != sectorSize {
		t.Fatalf("boot sector is %d bytes", len(s))
	}
	got, err := readPartitions(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != parts[0] {
		t.Errorf("partitions read back = %+v, want %+v", got, parts)
	}
	if v := binary.LittleEndian.Uint64(s[bootKernelSector:]); v != 1 {
		t.Errorf("core.img sector = %d, want 1", v)
	}
	if s[bootDriveCheck] != 0x90 || s[bootDriveCheck+1] != 0x90 {
		t.Errorf("drive check = % x, want NOPs", s[bootDriveCheck:bootDriveCheck+2])
	}
	if v := binary.LittleEndian.Uint32(s[mbrDiskSignature:]); v != 0xdeadbeef {
		t.Errorf("disk signature = %#x", v)
	}
	// GRUB's code stays, apart from what grub-bios-setup patches too.
	for i := 0; i < mbrDiskSignature; i++ {
		if i >= bootKernelSector && i < bootKernelSector+8 || i == bootDriveCheck || i == bootDriveCheck+1 {
			continue
		}
		if s[i] != boot[i] {
			t.Fatalf("byte %#x = %#x, boot.img has %#x", i, s[i], boot[i])
		}
	}
	// The other three entries are empty, the boot signature is there.
	if !bytes.Equal(s[mbrPartitions+16:mbrSignature], make([]byte, 48)) {
		t.Error("unused partition entries are not zero")
	}
	if s[510] != 0x55 || s[511] != 0xaa {
		t.Error("no boot signature")
	}
}

func TestBootSectorRejects(t *testing.T) {
	noSig := fakeBootImg()
	noSig[mbrSignature] = 0
	for _, tc := range []struct {
		name  string
		boot  []byte
		parts int
	}{
		{"short boot.img", make([]byte, 446), 1},
		{"no signature", noSig, 1},
		{"five partitions", fakeBootImg(), 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := bootSector(tc.boot, 1, 0, make([]partition, tc.parts)); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestCoreLoadsFromSector2(t *testing.T) {
	core := make([]byte, 10*sectorSize)
	e := core[sectorSize-12:]
	binary.LittleEndian.PutUint64(e, 2)
	binary.LittleEndian.PutUint16(e[8:], 9)
	if !coreLoadsFromSector2(core) {
		t.Error("a block list of sectors 2..10 for a 10-sector core.img was refused")
	}
	binary.LittleEndian.PutUint16(e[8:], 8)
	if coreLoadsFromSector2(core) {
		t.Error("a block list one sector short was accepted")
	}
	binary.LittleEndian.PutUint16(e[8:], 9)
	binary.LittleEndian.PutUint64(e, 34)
	if coreLoadsFromSector2(core) {
		t.Error("a block list starting elsewhere was accepted")
	}
}

// TestGrubCoreImage makes a core.img with the host's GRUB, as a build does,
// and checks it fits before the partition and has the layout lab relies on.
func TestGrubCoreImage(t *testing.T) {
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		t.Skip("needs grub-mkimage (apt-get install grub-common grub-pc-bin)")
	}
	if _, err := os.Stat(filepath.Join(grubDir, "boot.img")); err != nil {
		t.Skip("needs GRUB's i386-pc files (apt-get install grub-pc-bin)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "embedded.cfg")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(grubConfig, rootUUIDVar, "0f2c8f7e-6e1a-4d5b-9c3e-2a1b0c9d8e7f")), 0o644)
	core := filepath.Join(dir, "core.img")
	args := append([]string{"-O", "i386-pc", "-d", grubDir, "-o", core, "-c", cfg, "-p", "(hd0,msdos1)/boot/grub"}, grubModules...)
	if err := run(context.Background(), nil, "grub-mkimage", args...); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(core)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > (partStart-1)*sectorSize {
		t.Errorf("core.img is %d bytes, does not fit before sector %d", len(b), partStart)
	}
	if !coreLoadsFromSector2(b) {
		t.Errorf("core.img's block list is not the default one lab relies on: % x", b[sectorSize-12:sectorSize])
	}
	boot, err := os.ReadFile(filepath.Join(grubDir, "boot.img"))
	if err != nil {
		t.Fatal(err)
	}
	// The bytes bootSector patches must be what it expects there.
	if v := binary.LittleEndian.Uint64(boot[bootKernelSector:]); v != 1 {
		t.Errorf("boot.img's kernel sector = %d, want 1: offsets changed?", v)
	}
	if boot[bootDriveCheck] != 0xeb {
		t.Errorf("boot.img has %#x at the drive check, want a jmp (0xeb): offsets changed?", boot[bootDriveCheck])
	}
}

func TestRecipeHash(t *testing.T) {
	base := newRecipe("bookworm")
	if base.hash() != newRecipe("bookworm").hash() {
		t.Fatal("hash is not stable")
	}
	changed := map[string]recipe{}
	r := newRecipe("trixie")
	changed["suite"] = r
	r = newRecipe("bookworm")
	r.Packages = append(append([]string{}, r.Packages...), "strace")
	changed["packages"] = r
	r = newRecipe("bookworm")
	r.Version++
	changed["version"] = r
	r = newRecipe("bookworm")
	r.Files = map[string]string{"/etc/hostname": "other\n"}
	changed["files"] = r
	for name, r := range changed {
		if r.hash() == base.hash() {
			t.Errorf("changing %s does not change the hash", name)
		}
	}
}

func TestSourcesAndPackages(t *testing.T) {
	if s := sources("sid"); len(s) != 1 {
		t.Errorf("sid has no updates or security suite, got %q", s)
	}
	s := sources("bookworm")
	if len(s) != 3 || !strings.Contains(s[2], "debian-security bookworm-security main") {
		t.Errorf("bookworm sources = %q", s)
	}
	has := func(list []string, p string) bool {
		for _, x := range list {
			if x == p {
				return true
			}
		}
		return false
	}
	if has(packages("bullseye"), "systemd-resolved") {
		t.Error("bullseye has no systemd-resolved package")
	}
	if !has(packages("bookworm"), "systemd-resolved") {
		t.Error("bookworm needs the systemd-resolved package")
	}
}

func TestTailLog(t *testing.T) {
	tl := &tailLog{log: hclog.NewNullLogger(), max: 2}
	tl.Write([]byte("one\ntw"))
	tl.Write([]byte("o\r\nthree\nfou"))
	if got, want := tl.String(), "two\nthree\nfou"; got != want {
		t.Errorf("tail = %q, want %q", got, want)
	}
}

func TestBuildRejectsBadSuite(t *testing.T) {
	for _, s := range []string{"../etc", "Bookworm", "book worm"} {
		if _, err := BuildDebianCloud(context.Background(), t.TempDir(), s, nil); err == nil {
			t.Errorf("suite %q accepted", s)
		}
	}
}

func TestWriteTar(t *testing.T) {
	path := filepath.Join(t.TempDir(), "early.tar")
	files := map[string]file{
		"/etc/b.conf":   {Content: "b\n", Mode: 0o644},
		"/etc/hooks/a":  {Content: "#!/bin/sh\n", Mode: 0o755},
		"/etc/empty.cf": {Mode: 0o600},
	}
	if err := writeTar(path, files); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		want := files[strings.TrimPrefix(h.Name, ".")]
		body, _ := io.ReadAll(tr)
		if string(body) != want.Content || os.FileMode(h.Mode) != want.Mode || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mode %o uid %d gid %d content %q; want mode %o, root, %q", h.Name, h.Mode, h.Uid, h.Gid, body, want.Mode, want.Content)
		}
	}
	// Sorted, and relative to the chroot's root, with no directory entries
	// that would change the modes of /etc and friends.
	if got := strings.Join(names, " "); got != "./etc/b.conf ./etc/empty.cf ./etc/hooks/a" {
		t.Errorf("entries %s", got)
	}
}
