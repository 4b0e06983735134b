package image

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// rootfs is a directory into which Debian packages were unpacked. Absolute symlinks inside it
// (Debian's /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...) point into it, not into the
// host, so paths are resolved here by hand.
type rootfs struct {
	dir string
}

// resolve follows symlinks in p within the rootfs and returns the host path of the file it names.
// A path under /bin, /sbin, /lib or /lib64 is also looked for under /usr: on merged-/usr suites
// (trixie) the links from / into /usr come from base-files, which is not unpacked.
func (r rootfs) resolve(p string) (string, error) {
	host, err := r.resolveExact(p)
	if err != nil && usrMerged(p) != path.Clean("/"+p) {
		if merged, mergedErr := r.resolveExact(usrMerged(p)); mergedErr == nil {
			return merged, nil
		}
	}
	return host, err
}

func (r rootfs) resolveExact(p string) (string, error) {
	parts := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	cur := "/"
	for hops := 0; len(parts) > 0; {
		next := path.Join(cur, parts[0])
		parts = parts[1:]
		fi, err := os.Lstat(filepath.Join(r.dir, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(filepath.Join(r.dir, next))
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(cur, target)
		}
		parts = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), parts...)
		cur = "/"
	}
	return filepath.Join(r.dir, cur), nil
}

// multiarchTriplet is Debian's library dir name for an architecture.
var multiarchTriplet = map[string]string{
	"amd64": "x86_64-linux-gnu",
	"arm64": "aarch64-linux-gnu",
}

// libDirs are where Debian's dynamic loader looks for libraries, in its order.
func libDirs(arch string) []string {
	t := multiarchTriplet[arch]
	return []string{"/lib/" + t, "/usr/lib/" + t, "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
}

// addELF copies the ELF file src (a host path inside the rootfs) into the tree at dest, with its
// dynamic loader and every shared library it needs, transitively. Libraries go into the multiarch
// dir under their soname, which is the name the loader searches for.
func addELF(t *tree, r rootfs, arch, dest, src string, perm uint32) error {
	if err := t.copyFile(dest, src, perm); err != nil {
		return err
	}
	for queue := []string{src}; len(queue) > 0; queue = queue[1:] {
		interp, needed, err := elfDeps(queue[0])
		if err != nil {
			return fmt.Errorf("reading %s: %w", queue[0], err)
		}
		if interp != "" && !t.has(interp) {
			lib, err := r.resolve(interp)
			if err != nil {
				return fmt.Errorf("finding dynamic loader %s of %s: %w", interp, dest, err)
			}
			if err := t.copyFile(interp, lib, 0o755); err != nil {
				return err
			}
		}
		for _, soname := range needed {
			libDest := "/usr/lib/" + multiarchTriplet[arch] + "/" + soname
			if t.has(libDest) {
				continue
			}
			lib, err := findLib(r, arch, soname)
			if err != nil {
				return fmt.Errorf("library %s needed by %s: %w", soname, dest, err)
			}
			if err := t.copyFile(libDest, lib, 0o644); err != nil {
				return err
			}
			queue = append(queue, lib)
		}
	}
	return nil
}

// findLib returns the host path of a library in the rootfs by soname.
func findLib(r rootfs, arch, soname string) (string, error) {
	for _, d := range libDirs(arch) {
		if p, err := r.resolve(path.Join(d, soname)); err == nil {
			return p, nil
		}
	}
	return "", errors.New("not in any unpacked package")
}

// elfDeps returns the dynamic loader (PT_INTERP) and the DT_NEEDED sonames of an ELF file. A
// static binary has neither.
func elfDeps(file string) (interp string, needed []string, err error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return "", nil, err
		}
		interp = strings.TrimRight(string(b), "\x00")
	}
	// DynString returns nothing for a static binary, which has no dynamic section.
	needed, err = f.DynString(elf.DT_NEEDED)
	return interp, needed, err
}
