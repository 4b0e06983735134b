package image

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"lab/internal/flock"
)

// Removed is one thing Prune removed from the cache, or would remove.
type Removed struct {
	Path  string
	Bytes int64
	Why   string
}

// PruneResult is what Prune did.
type PruneResult struct {
	Removed []Removed
	// Kept lists the image dirs that stay: the newest build of each name,
	// and older ones still in use.
	Kept []string
	// DebsLeft says why no .deb was removed, when none could safely be.
	DebsLeft string
}

// Prune frees the cache of what new Debian packages left behind. Every new
// kernel or OpenSSH in a suite gives a new image beside the old one (images
// are named by the hash of their inputs), and its .debs beside the old
// .debs. Prune removes each image that a newer build for the same target
// name, suite and architecture superseded, unless a path in inUse (a kept
// guest's client key) lies in it; then every cached .deb that no remaining
// image was built from. It leaves the .debs alone while an image build holds
// debsLock, from its downloads until it has unpacked them. With dryRun it
// only reports. Two targets that share a name, suite and architecture in one
// cache (say, cloud and -rt kernels) supersede each other: give them names
// of their own. The guests' snapshots (Image.SnapshotDir) go with their
// image, and so do those of images that are gone, unless a guest is saving
// one just then.
func Prune(cacheDir string, inUse []string, dryRun bool) (*PruneResult, error) {
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("image cache dir: %w", err)
	}
	var abs []string
	for _, p := range inUse {
		if p, err := filepath.Abs(p); err == nil {
			abs = append(abs, p)
		}
	}
	res := &PruneResult{}
	imgs, err := listImages(filepath.Join(cacheDir, "images"))
	if err != nil {
		return nil, err
	}
	// Newest first within each target.
	slices.SortFunc(imgs, func(a, b cachedImage) int {
		return cmp.Or(cmp.Compare(a.target(), b.target()), b.m.Built.Compare(a.m.Built), cmp.Compare(a.dir, b.dir))
	})
	var remaining []cachedImage
	var newest cachedImage
	for i, img := range imgs {
		if i == 0 || img.target() != imgs[i-1].target() {
			newest = img
		}
		if img.dir == newest.dir || holdsAny(img.dir, abs) {
			remaining = append(remaining, img)
			continue
		}
		// Never pull an image out from under a build of it. Its lock file
		// stays: a builder waiting on it must lock the file the next one
		// will find.
		unlock, ok, err := tryLock(img.dir+".lock", dryRun)
		if err != nil {
			return res, err
		}
		if !ok {
			remaining = append(remaining, img)
			continue
		}
		r, err := remove(img.dir, dryRun, fmt.Sprintf("superseded by %s, built %s", filepath.Base(newest.dir), newest.m.Built.Format("2006-01-02 15:04")))
		unlock()
		if err != nil {
			return res, err
		}
		res.Removed = append(res.Removed, r)
	}
	for _, img := range remaining {
		res.Kept = append(res.Kept, img.dir)
	}
	if err := pruneSnapshots(cacheDir, remaining, dryRun, res); err != nil {
		return res, err
	}

	unlock, ok, err := tryLock(debsLock(cacheDir), dryRun)
	if err != nil {
		return res, err
	}
	if !ok {
		res.DebsLeft = "an image build is running; .debs left alone"
		return res, nil
	}
	defer unlock()
	used := map[string]bool{} // <suite>-<arch>/<file>
	for _, img := range remaining {
		dir := img.m.Suite + "-" + img.m.Arch
		used[filepath.Join(dir, pkg{Name: img.m.KernelPackage, Version: img.m.KernelVersion, Arch: img.m.Arch}.debFile())] = true
		for _, p := range img.m.Userland {
			used[filepath.Join(dir, p.debFile())] = true
		}
	}
	debs, _ := filepath.Glob(filepath.Join(cacheDir, "debs", "*", "*.deb"))
	for _, d := range debs {
		rel := filepath.Join(filepath.Base(filepath.Dir(d)), filepath.Base(d))
		if used[rel] {
			continue
		}
		r, err := remove(d, dryRun, "no cached image was built from it")
		if err != nil {
			return res, err
		}
		res.Removed = append(res.Removed, r)
	}
	return res, nil
}

// pruneSnapshots removes every image's snapshot dir whose image is not among
// remaining: pruned just now, or gone before. A snapshot's lock (<id>.lock,
// held while a guest is booted to save it) that someone holds keeps its dir.
// A restored guest keeps its snapshot's files open, so removing them does not
// disturb it.
func pruneSnapshots(cacheDir string, remaining []cachedImage, dryRun bool, res *PruneResult) error {
	root := filepath.Join(cacheDir, snapshotsDir)
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the snapshot cache: %w", err)
	}
	kept := map[string]bool{}
	for _, img := range remaining {
		kept[filepath.Base(img.dir)] = true
	}
	for _, e := range entries {
		if !e.IsDir() || kept[e.Name()] {
			continue
		}
		dir := filepath.Join(root, e.Name())
		why := "its image is gone"
		for _, r := range res.Removed {
			if filepath.Base(r.Path) == e.Name() {
				why = "its image was pruned"
			}
		}
		locks, _ := filepath.Glob(filepath.Join(dir, "*.lock"))
		var unlocks []func()
		busy := false
		for _, l := range locks {
			unlock, ok, err := tryLock(l, dryRun)
			if err != nil {
				return err
			}
			if !ok {
				busy = true
				break
			}
			unlocks = append(unlocks, unlock)
		}
		if !busy {
			r, err := remove(dir, dryRun, why)
			if err != nil {
				return err
			}
			res.Removed = append(res.Removed, r)
		}
		for _, unlock := range unlocks {
			unlock()
		}
	}
	return nil
}

// debsLock is the lock an image build holds shared from downloading its
// .debs until it has unpacked them, and Prune exclusively while it removes
// .debs.
func debsLock(cacheDir string) string { return filepath.Join(cacheDir, "debs.lock") }

// cachedImage is a complete image dir and its manifest.
type cachedImage struct {
	dir string
	m   manifest
}

// target is what a newer image of the same kind supersedes.
func (c cachedImage) target() string { return c.m.Name + " " + c.m.Suite + " " + c.m.Arch }

// listImages reads the manifest of every complete image under dir; dirs
// without one are builds in progress or debris, which the next build of
// that image removes.
func listImages(dir string) ([]cachedImage, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the image cache: %w", err)
	}
	var out []cachedImage
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(filepath.Join(p, manifestFile))
		if err != nil {
			continue
		}
		var m manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("reading %s: %w", filepath.Join(p, manifestFile), err)
		}
		out = append(out, cachedImage{dir: p, m: m})
	}
	return out, nil
}

// holdsAny says whether one of paths lies inside dir.
func holdsAny(dir string, paths []string) bool {
	for _, p := range paths {
		if rel, err := filepath.Rel(dir, p); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// tryLock takes path's lock without waiting. A dry run only looks: it
// creates no lock file that does not exist.
func tryLock(path string, dryRun bool) (func(), bool, error) {
	if dryRun {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return func() {}, true, nil
		}
	}
	return flock.TryLock(path)
}

// remove deletes path (a file or a tree) unless dryRun, and says how many
// bytes it held on disk (a snapshot's RAM file is sparse).
func remove(path string, dryRun bool, why string) (Removed, error) {
	var n int64
	filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += diskUsage(info)
			}
		}
		return nil
	})
	r := Removed{Path: path, Bytes: n, Why: why}
	if dryRun {
		return r, nil
	}
	if err := os.RemoveAll(path); err != nil {
		return r, fmt.Errorf("pruning the image cache: %w", err)
	}
	return r, nil
}
