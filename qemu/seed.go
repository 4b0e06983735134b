package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// seedTool is one way of building a NoCloud seed image without root or loop devices.
type seedTool struct {
	name  string   // for messages
	needs []string // programs that must be on PATH
	// build writes an image at out holding the files in dir (named as cloud-init wants).
	build func(out, dir string, files []string) error
}

// seedTools are tried in order. vfat first, because dosfstools and mtools are what lab's
// setup installs; cloud-init reads a vfat or ISO 9660 filesystem labelled cidata alike, and
// the ISO tools (which cloud-localds uses) serve hosts that have those instead.
var seedTools = []seedTool{
	{name: "mkfs.vfat+mcopy", needs: []string{"mkfs.vfat", "mcopy"}, build: func(out, dir string, files []string) error {
		// 2 MiB is far more than any seed needs; mkfs.vfat -C creates the file itself.
		if err := run(dir, "mkfs.vfat", "-n", "CIDATA", "-C", out, "2048"); err != nil {
			return err
		}
		return run(dir, "mcopy", append([]string{"-o", "-i", out}, append(files, "::")...)...)
	}},
	{name: "genisoimage", needs: []string{"genisoimage"}, build: isoBuilder("genisoimage")},
	{name: "mkisofs", needs: []string{"mkisofs"}, build: isoBuilder("mkisofs")},
	{name: "xorriso", needs: []string{"xorriso"}, build: func(out, dir string, files []string) error {
		return run(dir, "xorriso", append([]string{"-as", "mkisofs", "-output", out, "-volid", "cidata", "-joliet", "-rock"}, files...)...)
	}},
}

func isoBuilder(program string) func(out, dir string, files []string) error {
	return func(out, dir string, files []string) error {
		return run(dir, program, append([]string{"-quiet", "-output", out, "-volid", "cidata", "-joliet", "-rock"}, files...)...)
	}
}

// MakeNoCloudSeed writes a cloud-init NoCloud seed image to path: a filesystem labelled
// "cidata" holding user-data, meta-data and, if networkConfig is not empty, network-config.
// It needs neither root nor loop devices; the package doc says which programs it uses.
func MakeNoCloudSeed(path, userData, metaData, networkConfig string) error {
	return makeNoCloudSeed(seedTools, path, userData, metaData, networkConfig)
}

func makeNoCloudSeed(tools []seedTool, path, userData, metaData, networkConfig string) error {
	var tool *seedTool
	for i := range tools {
		if haveAll(tools[i].needs) {
			tool = &tools[i]
			break
		}
	}
	if tool == nil {
		return errors.New("qemu: making NoCloud seed: none of mkfs.vfat+mcopy, genisoimage, mkisofs or xorriso found (apt-get install dosfstools mtools)")
	}

	dir, err := os.MkdirTemp("", "lab-seed-*")
	if err != nil {
		return fmt.Errorf("qemu: making NoCloud seed: %w", err)
	}
	defer os.RemoveAll(dir)
	contents := []struct{ name, data string }{{"user-data", userData}, {"meta-data", metaData}}
	if networkConfig != "" {
		contents = append(contents, struct{ name, data string }{"network-config", networkConfig})
	}
	var files []string
	for _, c := range contents {
		if err := os.WriteFile(filepath.Join(dir, c.name), []byte(c.data), 0o644); err != nil {
			return fmt.Errorf("qemu: making NoCloud seed: %w", err)
		}
		files = append(files, c.name)
	}

	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("qemu: making NoCloud seed: %w", err)
	}
	// Build next to the target and rename, so that a guest never sees half an image and a
	// failed build leaves no file behind.
	tmp := abs + ".tmp"
	os.Remove(tmp) // mkfs.vfat -C refuses an existing file
	if err := tool.build(tmp, dir, files); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("qemu: making NoCloud seed with %s: %w", tool.name, err)
	}
	if err := os.Rename(tmp, abs); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("qemu: making NoCloud seed: %w", err)
	}
	return nil
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
