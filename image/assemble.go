package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"lab/internal/output"
)

// Files of an image dir.
const (
	kernelFile    = "vmlinuz"
	initrdFile    = "initrd.img"
	hostKeyFile   = "ssh_host_ed25519_key"
	clientKeyFile = "client_ed25519"
	manifestFile  = "image.json" // written last: an image dir without it is not an image
)

// manifest records what an image was built from, in its dir.
type manifest struct {
	Name          string    `json:"name"`
	Suite         string    `json:"suite"`
	Arch          string    `json:"arch"`
	KernelPackage string    `json:"kernel_package"`
	KernelVersion string    `json:"kernel_version"`
	KernelRelease string    `json:"kernel_release"`
	Modules       []string  `json:"modules"`
	Userland      []pkg     `json:"userland"`
	Hash          string    `json:"hash"`
	Built         time.Time `json:"built"`
	BuildSeconds  float64   `json:"build_seconds"`
}

// assemble builds the image in a temporary dir beside its final place and renames it there.
func (b *builder) assemble(ctx context.Context, p *plan, start time.Time) error {
	work, err := os.MkdirTemp(filepath.Dir(p.dir), ".build-"+filepath.Base(p.dir)+"-")
	if err != nil {
		return fmt.Errorf("creating build dir: %w", err)
	}
	defer os.RemoveAll(work)

	kernelRoot := filepath.Join(work, "kernel")
	if err := extractDeb(ctx, b.repo.debPath(p.kernel), kernelRoot); err != nil {
		return err
	}
	k, err := readKernel(ctx, kernelRoot, b.log)
	if err != nil {
		return fmt.Errorf("reading kernel package %s: %w", p.kernel, err)
	}
	userRoot := filepath.Join(work, "userland")
	for _, u := range p.userland {
		if err := extractDeb(ctx, b.repo.debPath(u), userRoot); err != nil {
			return err
		}
	}

	hostKey, err := newKeyPair("lab-guest-" + b.spec.Name)
	if err != nil {
		return err
	}
	clientKey, err := newKeyPair("lab-client-" + b.spec.Name)
	if err != nil {
		return err
	}
	t := newTree()
	if err := addUserland(t, rootfs{userRoot}, b.spec.Arch); err != nil {
		return fmt.Errorf("collecting guest programs: %w", err)
	}
	addGuestFiles(t, b.spec.Name, hostKey, clientKey, k)

	out := filepath.Join(work, "image")
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	if err := copyFile(k.vmlinuz, filepath.Join(out, kernelFile)); err != nil {
		return fmt.Errorf("copying kernel: %w", err)
	}
	var initrd bytes.Buffer
	if err := t.writeCPIOGzip(&initrd); err != nil {
		return fmt.Errorf("writing initramfs: %w", err)
	}
	files := []struct {
		name string
		perm os.FileMode
		data []byte
	}{
		{initrdFile, 0o644, initrd.Bytes()},
		{hostKeyFile, 0o600, hostKey.private},
		{hostKeyFile + ".pub", 0o644, hostKey.public},
		{clientKeyFile, 0o600, clientKey.private},
		{clientKeyFile + ".pub", 0o644, clientKey.public},
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(out, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	m := manifest{
		Name: b.spec.Name, Suite: b.spec.Suite, Arch: b.spec.Arch,
		KernelPackage: p.kernel.Name, KernelVersion: p.kernel.Version, KernelRelease: k.release,
		Userland: p.userland, Hash: p.hash, Built: time.Now().UTC(),
		BuildSeconds: time.Since(start).Seconds(),
	}
	for _, mod := range k.modules {
		m.Modules = append(m.Modules, mod.name)
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(out, manifestFile), append(mb, '\n'), 0o644); err != nil {
		return err
	}
	return publish(out, p.dir)
}

// publish renames a finished image dir into place. If another builder got there first, its image
// is as good as ours and ours is dropped. A dir there without a manifest is debris (say, a hand
// edit) and is replaced.
func publish(tmp, dir string) error {
	err := os.Rename(tmp, dir)
	if err == nil {
		return nil
	}
	if _, loadErr := load(dir); loadErr == nil {
		return nil
	}
	if _, statErr := os.Stat(dir); statErr == nil {
		if err = os.RemoveAll(dir); err == nil {
			err = os.Rename(tmp, dir)
		}
	}
	if err != nil {
		return fmt.Errorf("publishing image: %w", err)
	}
	return nil
}

// load returns the image in dir if it is complete.
func load(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, manifestFile), err)
	}
	img := &Image{
		Name:          m.Name,
		Dir:           dir,
		Kernel:        filepath.Join(dir, kernelFile),
		Initrd:        filepath.Join(dir, initrdFile),
		KernelPackage: m.KernelPackage,
		KernelVersion: m.KernelVersion,
		KernelRelease: m.KernelRelease,
		HostKey:       filepath.Join(dir, hostKeyFile+".pub"),
		ClientKey:     filepath.Join(dir, clientKeyFile),
		User:          RootUser,
		OtherUser:     OtherUser,
		Hash:          m.Hash,
	}
	for _, f := range []string{img.Kernel, img.Initrd, img.HostKey, img.ClientKey} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("incomplete image: %w", err)
		}
	}
	return img, nil
}

// extractDeb unpacks a .deb's files into dir with Debian's dpkg-deb, which runs no maintainer
// scripts and needs no root.
func extractDeb(ctx context.Context, deb, dir string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("unpacking %s: %w %s", filepath.Base(deb), err, output.Tail(stderr.String(), 3))
	}
	return nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeFile(dst, data, 0o644)
}

// writeFile writes data with exactly perm, whatever the umask.
func writeFile(name string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(name, data, perm); err != nil {
		return err
	}
	return os.Chmod(name, perm)
}
