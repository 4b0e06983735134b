package image

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// GuestAgentPath is where AgentInitrd puts the agent in the guest.
const GuestAgentPath = "/usr/lib/lab/lab-agent"

// agentInitrdsKept is how many agent initramfs files AgentInitrd keeps per image: the newest,
// and a few before it for lab processes of older builds that may still start guests. Each
// other one is removed, and with it, at the next snapshot of the image, every snapshot made
// from it.
const agentInitrdsKept = 3

// AgentInitrd returns an initramfs that is img's with the agent binary at agent added at
// GuestAgentPath, and a key naming that agent build on that build of the image for the
// snapshot's key (give qemu.Config.SnapshotKey img.Hash + " " + key). A guest booted from it, or restored from its
// snapshot, has the agent without an upload, which takes 0.5 to 2.4 s under TCG here: the
// snapshot holds the agent's file in the guest's RAM, and a new agent build is a new file, a
// new key and a new snapshot, so the agent in a guest is never stale.
//
// The file is the image's initrd with a second gzip-compressed cpio archive appended, which
// the kernel unpacks over the first. It lives in img.SnapshotDir(), so Prune removes it with
// the image, and is written once per agent build and image build, atomically.
//
// The key names the image's initrd by size and modification time, as a snapshot's key names
// the files it boots. img.Hash alone would not do: it names the image's inputs, not its
// freshly generated host and client keys, which are in the initrd. A rebuilt image (its cache
// entry removed, snapshots kept) would otherwise get the old build's initramfs back, and
// its guests would present the old host key, refused as not the pinned one.
func AgentInitrd(img *Image, agent string) (initrd, key string, err error) {
	data, err := os.ReadFile(agent)
	if err != nil {
		return "", "", fmt.Errorf("agent initramfs: %w", err)
	}
	fi, err := os.Stat(img.Initrd)
	if err != nil {
		return "", "", fmt.Errorf("agent initramfs: %w", err)
	}
	h := sha256.New()
	h.Write(data)
	fmt.Fprintf(h, "\x00initrd %d %d", fi.Size(), fi.ModTime().UnixNano())
	key = "agent-" + hex.EncodeToString(h.Sum(nil)[:8])
	dir := img.SnapshotDir()
	path := filepath.Join(dir, "initrd-"+key+".img")
	if _, err := os.Stat(path); err == nil {
		return path, key, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("agent initramfs: %w", err)
	}
	base, err := os.Open(img.Initrd)
	if err != nil {
		return "", "", fmt.Errorf("agent initramfs: %w", err)
	}
	defer base.Close()
	tmp, err := os.CreateTemp(dir, ".initrd-"+key+"-*")
	if err != nil {
		return "", "", fmt.Errorf("agent initramfs: %w", err)
	}
	defer os.Remove(tmp.Name()) // nothing to remove once renamed
	t := &tree{entries: map[string]*entry{"/": {kind: kindDir, perm: 0o755}}}
	t.file(GuestAgentPath, 0o755, data)
	_, err = io.Copy(tmp, base)
	if err == nil {
		err = t.writeCPIOGzip(tmp)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", "", fmt.Errorf("agent initramfs %s: %w", path, err)
	}
	removeOldAgentInitrds(dir)
	return path, key, nil
}

// removeOldAgentInitrds keeps the agentInitrdsKept newest agent initramfs files in dir.
func removeOldAgentInitrds(dir string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "initrd-agent-*.img"))
	type file struct {
		path string
		mod  int64
	}
	var files []file
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil {
			files = append(files, file{m, fi.ModTime().UnixNano()})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return cmp.Or(cmp.Compare(b.mod, a.mod), cmp.Compare(a.path, b.path)) })
	for i, f := range files {
		if i >= agentInitrdsKept {
			os.Remove(f.path)
		}
	}
}
