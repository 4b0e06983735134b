package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"lab/internal/output"

	"github.com/hashicorp/go-hclog"
)

// netModules are the modules a guest needs for a virtio network card on QEMU's PCI bus, in load
// order. Which of them exist, and which are built in, differs between kernels: 5.10 has no
// virtio_pci_*_dev, and trixie's 6.12 builds the virtio core in. Each module's own dependencies
// (from its modinfo) are loaded before it, so the list need not be complete.
var netModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
	"failover", "net_failover", "virtio_net",
}

// requiredModules must each be built in or loadable: without them the guest has no network or no
// IPv6 on loopback, and lab's scenarios could not run.
var requiredModules = []string{"virtio_net", "ipv6"}

// kernel is what the guest takes from an unpacked kernel package.
type kernel struct {
	release string   // uname -r
	vmlinuz string   // host path of the kernel image
	modules []module // to insmod at boot, in order
}

type module struct {
	name string
	data []byte // uncompressed .ko
}

// guestPath is where the module is put in the initramfs.
func (m module) guestPath(release string) string {
	return "/usr/lib/modules/" + release + "/" + m.name + ".ko"
}

// readKernel finds the kernel, its release and the modules to load in an unpacked kernel package.
func readKernel(ctx context.Context, root string, log hclog.Logger) (*kernel, error) {
	vmlinuz, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil || len(vmlinuz) != 1 {
		return nil, fmt.Errorf("kernel package holds %d vmlinuz files, want 1", len(vmlinuz))
	}
	k := &kernel{
		release: strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-"),
		vmlinuz: vmlinuz[0],
	}
	modDir := ""
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		if fi, err := os.Stat(filepath.Join(root, d, k.release)); err == nil && fi.IsDir() {
			modDir = filepath.Join(root, d, k.release)
		}
	}
	if modDir == "" {
		return nil, fmt.Errorf("kernel package has no modules dir for %s", k.release)
	}
	mods, err := indexModules(modDir)
	if err != nil {
		return nil, fmt.Errorf("listing modules of %s: %w", k.release, err)
	}
	l := &moduleLoader{ctx: ctx, index: mods, log: log, loaded: map[string]bool{}}
	for _, name := range append(netModules, "ipv6") {
		if err := l.load(name); err != nil {
			return nil, err
		}
	}
	for _, name := range requiredModules {
		if !l.loaded[name] && !mods.builtin[name] {
			return nil, fmt.Errorf("kernel %s has no %s, built in or as a module", k.release, name)
		}
	}
	k.modules = l.order
	return k, nil
}

// moduleIndex lists the modules of one kernel by name (with - folded to _, as the kernel does).
type moduleIndex struct {
	files   map[string]string // name -> host path of .ko, .ko.xz, .ko.zst or .ko.gz
	builtin map[string]bool
}

func moduleName(file string) string {
	base := filepath.Base(file)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(base, ext) {
			return strings.ReplaceAll(strings.TrimSuffix(base, ext), "-", "_")
		}
	}
	return ""
}

func indexModules(modDir string) (moduleIndex, error) {
	idx := moduleIndex{files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name := moduleName(p); name != "" && !d.IsDir() {
			idx.files[name] = p
		}
		return nil
	})
	if err != nil {
		return idx, err
	}
	// modules.builtin names what is compiled into the kernel, one path like
	// kernel/net/ipv6/ipv6.ko a line. Debian ships it in the package.
	b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	if err != nil {
		return idx, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if name := moduleName(sc.Text()); name != "" {
			idx.builtin[name] = true
		}
	}
	return idx, sc.Err()
}

// moduleLoader computes the insmod order: each wanted module after the modules it depends on.
type moduleLoader struct {
	ctx    context.Context
	index  moduleIndex
	log    hclog.Logger
	loaded map[string]bool
	order  []module
}

func (l *moduleLoader) load(name string) error {
	if l.loaded[name] || l.index.builtin[name] {
		return nil
	}
	file, ok := l.index.files[name]
	if !ok {
		l.log.Debug("module not in this kernel, skipping", "module", name)
		return nil
	}
	data, err := readModule(l.ctx, file)
	if err != nil {
		return fmt.Errorf("reading module %s: %w", name, err)
	}
	deps, err := moduleDepends(data)
	if err != nil {
		return fmt.Errorf("reading modinfo of %s: %w", name, err)
	}
	l.loaded[name] = true // before its dependencies, so a cycle cannot recurse forever
	for _, d := range deps {
		if err := l.load(d); err != nil {
			return err
		}
	}
	l.order = append(l.order, module{name: name, data: data})
	return nil
}

// readModule returns a module's uncompressed contents. busybox's insmod may lack the decompressor
// a kernel's modules need (trixie compresses with xz), so modules are stored uncompressed.
func readModule(ctx context.Context, file string) ([]byte, error) {
	switch {
	case strings.HasSuffix(file, ".ko"):
		return os.ReadFile(file)
	case strings.HasSuffix(file, ".gz"):
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	case strings.HasSuffix(file, ".xz"):
		return decompressWith(ctx, "xz", file)
	case strings.HasSuffix(file, ".zst"):
		return decompressWith(ctx, "zstd", file)
	}
	return nil, fmt.Errorf("unknown module format: %s", file)
}

// decompressWith runs a decompressor from Debian (xz-utils, zstd); the standard library has none.
func decompressWith(ctx context.Context, tool, file string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tool, "-dc", file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s -dc %s (is %s installed?): %w: %s", tool, filepath.Base(file), tool, err, output.Tail(stderr.String(), 3))
	}
	return stdout.Bytes(), nil
}

// moduleDepends returns the "depends=" entry of a module's .modinfo section: the modules that
// must be loaded before it.
func moduleDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, strings.ReplaceAll(d, "-", "_"))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}
