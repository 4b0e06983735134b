package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Format is the filesystem of a seed image.
type Format string

const (
	// ISO9660 is read by every seed reader lab knows: cloud-init on Linux and the
	// BSDs, FreeBSD's nuageinit in every release (its first probe looked for
	// /dev/iso9660/cidata, lower case, only), OmniOS's cloud-init (hsfs has labelit),
	// NetBSD's (mscdlabel). It is read-only by nature, so no reader's read-write mount
	// of a read-only drive can fail.
	ISO9660 Format = "iso9660"
	// VFAT is the fallback where no ISO tool is installed; see Guest.ISOOnly.
	VFAT Format = "vfat"
)

// Label is the volume label of every seed: NoCloud's, in the lower case FreeBSD's
// first nuageinit insisted on (cloud-init accepts either case).
const Label = "cidata"

// File is one file of a seed.
type File struct {
	Name string // "user-data", "meta-data", "network-config"
	Data string
}

// seedTool is one way of building a seed image without root or loop devices.
type seedTool struct {
	name   string   // for messages
	format Format   // what it makes
	needs  []string // programs that must be on PATH
	// build writes an image at out holding the files in dir.
	build func(out, dir string, files []string) error
}

// seedTools are tried in order: the ISO tools first (xorriso, maintained and what
// lab's setup installs; then cdrkit's genisoimage and mkisofs, as cloud-localds uses),
// vfat last. -rock and -joliet keep the names lower case with their hyphens (plain
// ISO 9660 allows neither), -input-charset keeps genisoimage from guessing.
var seedTools = []seedTool{
	{name: "xorriso", format: ISO9660, needs: []string{"xorriso"}, build: func(out, dir string, files []string) error {
		return run(dir, "xorriso", append([]string{"-as", "mkisofs", "-quiet", "-input-charset", "utf-8", "-output", out, "-volid", Label, "-joliet", "-rock"}, files...)...)
	}},
	{name: "genisoimage", format: ISO9660, needs: []string{"genisoimage"}, build: isoBuilder("genisoimage")},
	{name: "mkisofs", format: ISO9660, needs: []string{"mkisofs"}, build: isoBuilder("mkisofs")},
	{name: "mkfs.vfat+mcopy", format: VFAT, needs: []string{"mkfs.vfat", "mcopy"}, build: func(out, dir string, files []string) error {
		// 2 MiB is far more than any seed needs; mkfs.vfat -C creates the file itself.
		// FAT12 at this size, which has no dirty bit for a read-write mount to set.
		if err := run(dir, "mkfs.vfat", "-n", Label, "-C", out, "2048"); err != nil {
			return err
		}
		return run(dir, "mcopy", append([]string{"-o", "-i", out}, append(files, "::")...)...)
	}},
}

func isoBuilder(program string) func(out, dir string, files []string) error {
	return func(out, dir string, files []string) error {
		return run(dir, program, append([]string{"-quiet", "-input-charset", "utf-8", "-output", out, "-volid", Label, "-joliet", "-rock"}, files...)...)
	}
}

// WriteSeed writes c's seed (user-data and meta-data) to path and says which format
// it chose: ISO 9660 if an ISO tool is installed, else vfat where the guest reads
// vfat; a guest that only finds ISO seeds without an ISO tool is an error saying what
// to install.
func WriteSeed(path string, c Config) (Format, error) {
	g, err := Lookup(c.OS)
	if err != nil {
		return "", err
	}
	ud, err := c.UserData()
	if err != nil {
		return "", err
	}
	files := []File{{"user-data", ud}, {"meta-data", c.MetaData()}}
	formats := []Format{ISO9660, VFAT}
	if g.ISOOnly {
		formats = formats[:1]
	}
	return writeWith(seedTools, path, formats, files)
}

// Write writes a seed image holding files to path, in the first of formats an
// installed tool can make (ISO 9660, then vfat, when none is given), and says which.
// WriteSeed is the usual way; Write is for seeds whose user-data is written
// elsewhere.
func Write(path string, files []File, formats ...Format) (Format, error) {
	if len(formats) == 0 {
		formats = []Format{ISO9660, VFAT}
	}
	return writeWith(seedTools, path, formats, files)
}

// seedTries is how often a seed tool that crashed is run again.
const seedTries = 3

// writeWith builds the image with the first tool of tools that makes one of formats
// and is installed. The image is built beside path and renamed, so a guest never sees
// half an image and a failed build leaves nothing behind.
func writeWith(tools []seedTool, path string, formats []Format, files []File) (Format, error) {
	var tool *seedTool
	var names []string
	for i := range tools {
		if !contains(formats, tools[i].format) {
			continue
		}
		names = append(names, tools[i].name)
		if tool == nil && haveAll(tools[i].needs) {
			tool = &tools[i]
		}
	}
	if tool == nil {
		hint := "apt-get install xorriso"
		if contains(formats, VFAT) {
			hint += ", or dosfstools and mtools for vfat"
		}
		return "", fmt.Errorf("cloudinit: writing seed: none of %s is installed (%s)", strings.Join(names, ", "), hint)
	}
	if err := checkFiles(files); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "lab-seed-*")
	if err != nil {
		return "", fmt.Errorf("cloudinit: writing seed: %w", err)
	}
	defer os.RemoveAll(dir)
	var names2 []string
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), []byte(f.Data), 0o600); err != nil {
			return "", fmt.Errorf("cloudinit: writing seed: %w", err)
		}
		names2 = append(names2, f.Name)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("cloudinit: writing seed: %w", err)
	}
	tmp := abs + ".tmp"
	for try := 1; ; try++ {
		os.Remove(tmp) // mkfs.vfat -C refuses an existing file
		err := tool.build(tmp, dir, names2)
		if err == nil {
			break
		}
		os.Remove(tmp)
		// Debian 12's xorriso 1.5.4 now and then dies of a SIGSEGV it catches
		// itself ("UNIX-SIGNAL: SIGSEGV", exit 1) on a seed it makes at the
		// next try: a crash of the tool, not a refusal of the seed.
		if try < seedTries && strings.Contains(err.Error(), "UNIX-SIGNAL") {
			continue
		}
		return "", fmt.Errorf("cloudinit: writing seed with %s: %w", tool.name, err)
	}
	// The seed holds a private host key: only its owner (and QEMU, run by the same
	// user) may read it.
	if err := os.Chmod(tmp, 0o600); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("cloudinit: writing seed: %w", err)
	}
	if err := os.Rename(tmp, abs); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("cloudinit: writing seed: %w", err)
	}
	return tool.format, nil
}

// checkFiles refuses names that are not plain file names: the tools take them as
// arguments and as paths.
func checkFiles(files []File) error {
	seen := map[string]bool{}
	for _, f := range files {
		if f.Name == "" || strings.ContainsAny(f.Name, "/\\") || strings.HasPrefix(f.Name, "-") || f.Name == "." || f.Name == ".." {
			return fmt.Errorf("cloudinit: writing seed: %q is not a plain file name", f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("cloudinit: writing seed: %s given twice", f.Name)
		}
		seen[f.Name] = true
	}
	if len(files) == 0 {
		return errors.New("cloudinit: writing seed: no files")
	}
	return nil
}

func contains(fs []Format, f Format) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

func haveAll(programs []string) bool {
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			return false
		}
	}
	return true
}

// run runs a program in dir and puts its output into the error when it fails.
func run(dir, program string, args ...string) error {
	cmd := exec.Command(program, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", program, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
