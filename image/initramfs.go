package image

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// tree is the file system of an initramfs, built in memory and written as a gzip-compressed cpio
// archive. Writing the archive ourselves, rather than with cpio(1) over a staging dir, sets owners,
// modes and device nodes exactly without needing root, and keeps the layout in one place.
type tree struct {
	entries map[string]*entry // by absolute, clean path
}

type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
	kindCharDev
)

type entry struct {
	kind         entryKind
	perm         uint32 // permission bits, including setuid/sticky
	uid, gid     int
	data         []byte // file contents or symlink target
	major, minor uint32 // character devices
}

func newTree() *tree {
	t := &tree{entries: map[string]*entry{"/": {kind: kindDir, perm: 0o755}}}
	// Debian's merged /usr: the top-level dirs are links into /usr, so a path a binary or the
	// dynamic loader asks for resolves whichever way its package spelled it.
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		t.symlink("/"+d, "usr/"+d)
	}
	return t
}

// usrMerged maps /bin, /sbin, /lib and /lib64 paths to their place under /usr.
func usrMerged(p string) string {
	p = path.Clean("/" + p)
	for _, d := range []string{"/bin", "/sbin", "/lib", "/lib64"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return "/usr" + p
		}
	}
	return p
}

// add places e at p, creating missing parent directories as root-owned 0755.
func (t *tree) add(p string, e *entry) {
	p = usrMerged(p)
	for dir := path.Dir(p); ; dir = path.Dir(dir) {
		if _, ok := t.entries[dir]; ok {
			break
		}
		t.entries[dir] = &entry{kind: kindDir, perm: 0o755}
	}
	t.entries[p] = e
}

func (t *tree) dir(p string, perm uint32, uid, gid int) {
	t.add(p, &entry{kind: kindDir, perm: perm, uid: uid, gid: gid})
}

func (t *tree) file(p string, perm uint32, data []byte) {
	t.add(p, &entry{kind: kindFile, perm: perm, data: data})
}

func (t *tree) ownedFile(p string, perm uint32, uid, gid int, data []byte) {
	t.add(p, &entry{kind: kindFile, perm: perm, uid: uid, gid: gid, data: data})
}

// symlink adds a link at p; the top-level /usr links themselves are added as they are.
func (t *tree) symlink(p, target string) {
	e := &entry{kind: kindSymlink, perm: 0o777, data: []byte(target)}
	if strings.Count(p, "/") == 1 {
		t.entries[p] = e
		return
	}
	t.add(p, e)
}

func (t *tree) charDev(p string, perm uint32, major, minor uint32) {
	t.add(p, &entry{kind: kindCharDev, perm: perm, major: major, minor: minor})
}

// copyFile adds the host file src at p.
func (t *tree) copyFile(p, src string, perm uint32) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	t.file(p, perm, data)
	return nil
}

// has reports whether p (after /usr merging) is in the tree.
func (t *tree) has(p string) bool {
	_, ok := t.entries[usrMerged(p)]
	return ok
}

// writeCPIOGzip writes the tree as a gzip-compressed cpio archive in the "newc" format, the one the
// kernel unpacks into its rootfs. Entries are sorted, so parents come before children and equal
// trees give equal archives.
func (t *tree) writeCPIOGzip(w io.Writer) error {
	zw := gzip.NewWriter(w)
	bw := bufio.NewWriter(zw)
	paths := make([]string, 0, len(t.entries))
	for p := range t.entries {
		if p != "/" {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for i, p := range paths {
		if err := writeCPIOEntry(bw, uint32(i+1), strings.TrimPrefix(p, "/"), t.entries[p]); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	if err := writeCPIOEntry(bw, 0, "TRAILER!!!", &entry{kind: kindFile}); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return zw.Close()
}

// File type bits of st_mode, as cpio stores them.
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

func writeCPIOEntry(w io.Writer, ino uint32, name string, e *entry) error {
	mode, nlink := e.perm, uint32(1)
	switch e.kind {
	case kindDir:
		mode |= modeDir
		nlink = 2
	case kindFile:
		mode |= modeRegular
	case kindSymlink:
		mode |= modeSymlink
	case kindCharDev:
		mode |= modeCharDev
	}
	if name == "TRAILER!!!" {
		mode = 0
	}
	// mtime is 0 so that an unchanged tree gives a byte-identical archive.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, e.uid, e.gid, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(name)+1, 0)
	if _, err := io.WriteString(w, hdr+name+"\x00"); err != nil {
		return err
	}
	if err := pad4(w, len(hdr)+len(name)+1); err != nil {
		return err
	}
	if _, err := w.Write(e.data); err != nil {
		return err
	}
	return pad4(w, len(e.data))
}

func pad4(w io.Writer, n int) error {
	if r := n % 4; r != 0 {
		_, err := w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}
