package image

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lab/internal/flock"
)

// pruneCache lays out a cache as builds over time leave it: linux-6.1 built
// three times (a new kernel, then a new OpenSSH), linux-6.12 once, and the
// .debs of all of them plus one nothing uses.
func pruneCache(t *testing.T) string {
	t.Helper()
	cache := t.TempDir()
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	openssh1 := pkg{Name: "openssh-server", Version: "1:9.2p1-2+deb12u6", Arch: "amd64"}
	openssh2 := pkg{Name: "openssh-server", Version: "1:9.2p1-2+deb12u7", Arch: "amd64"}
	busybox := pkg{Name: "busybox-static", Version: "1:1.35.0-4+b1", Arch: "amd64"}
	images := []manifest{
		{Name: "linux-6.1", Suite: "bookworm", Arch: "amd64", KernelPackage: "linux-image-6.1.0-40-cloud-amd64", KernelVersion: "6.1.150-1", Userland: []pkg{busybox, openssh1}, Hash: "aaaa", Built: day},
		{Name: "linux-6.1", Suite: "bookworm", Arch: "amd64", KernelPackage: "linux-image-6.1.0-50-cloud-amd64", KernelVersion: "6.1.176-1", Userland: []pkg{busybox, openssh1}, Hash: "bbbb", Built: day.AddDate(0, 0, 10)},
		{Name: "linux-6.1", Suite: "bookworm", Arch: "amd64", KernelPackage: "linux-image-6.1.0-50-cloud-amd64", KernelVersion: "6.1.176-1", Userland: []pkg{busybox, openssh2}, Hash: "cccc", Built: day.AddDate(0, 0, 20)},
		{Name: "linux-6.12", Suite: "trixie", Arch: "amd64", KernelPackage: "linux-image-6.12.57+deb13-cloud-amd64", KernelVersion: "6.12.57-1", Userland: []pkg{busybox}, Hash: "dddd", Built: day},
		// Another targets file's linux-6.1, from another suite: not superseded by bookworm's.
		{Name: "linux-6.1", Suite: "trixie", Arch: "amd64", KernelPackage: "linux-image-6.12.57+deb13-cloud-amd64", KernelVersion: "6.12.57-1", Userland: []pkg{busybox}, Hash: "ffff", Built: day.AddDate(0, 0, -10)},
	}
	for _, m := range images {
		dir := filepath.Join(cache, "images", m.Name+"-"+m.Hash)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(m)
		put(t, filepath.Join(dir, manifestFile), string(b))
		put(t, filepath.Join(dir, "vmlinuz"), "kernel of "+m.Hash)
		put(t, filepath.Join(dir, clientKeyFile), "key")
		put(t, dir+".lock", "")
		debs := filepath.Join(cache, "debs", m.Suite+"-"+m.Arch)
		os.MkdirAll(debs, 0o755)
		put(t, filepath.Join(debs, pkg{Name: m.KernelPackage, Version: m.KernelVersion, Arch: m.Arch}.debFile()), "kernel deb")
		for _, p := range m.Userland {
			put(t, filepath.Join(debs, p.debFile()), "deb")
		}
	}
	put(t, filepath.Join(cache, "debs", "bookworm-amd64", "libunused_1.0_amd64.deb"), "deb")
	// Snapshots of guests, as qemu.Start leaves them: of two superseded
	// images, of the newest, and of an image that is gone.
	for _, img := range []string{"linux-6.1-aaaa", "linux-6.1-bbbb", "linux-6.1-cccc", "linux-6.12-9999"} {
		snap := filepath.Join(cache, "snapshots", img, "0123456789abcdef")
		os.MkdirAll(snap, 0o755)
		put(t, filepath.Join(snap, "snapshot.json"), `{"id":"x"}`)
		put(t, filepath.Join(snap, "state"), "device state")
		ram, err := os.Create(filepath.Join(snap, "ram"))
		if err != nil {
			t.Fatal(err)
		}
		ram.WriteAt([]byte("page"), 1<<20)
		ram.Truncate(256 << 20) // sparse, as a guest's RAM is
		ram.Close()
		put(t, snap+".lock", "")
	}
	put(t, filepath.Join(cache, "snapshots", "qemu-version.json"), "{}") // stays
	// A build that was killed leaves its work dir; Prune leaves it to the
	// next build of that image, which holds the lock that proves it stale.
	os.MkdirAll(filepath.Join(cache, "images", ".build-linux-6.1-eeee-123"), 0o755)
	os.MkdirAll(filepath.Join(cache, "apt", "bookworm-amd64-27f28161"), 0o755)
	put(t, filepath.Join(cache, "apt", "bookworm-amd64-27f28161", "lab.lock"), "")
	return cache
}

func put(t *testing.T, name, s string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPrune(t *testing.T) {
	superseded := []string{"images/linux-6.1-aaaa", "images/linux-6.1-bbbb"}
	oldDebs := []string{
		"debs/bookworm-amd64/libunused_1.0_amd64.deb",
		"debs/bookworm-amd64/linux-image-6.1.0-40-cloud-amd64_6.1.150-1_amd64.deb",
		"debs/bookworm-amd64/openssh-server_1%3a9.2p1-2+deb12u6_amd64.deb",
	}
	supersededSnaps := []string{"snapshots/linux-6.1-aaaa", "snapshots/linux-6.1-bbbb"}
	goneSnap := "snapshots/linux-6.12-9999"
	for _, tc := range []struct {
		name     string
		inUse    func(cache string) []string
		hold     string // a lock a build holds during the prune
		dryRun   bool
		relative bool     // the cache dir given relative to the working dir
		removed  []string // relative to the cache, sorted
		debs     bool     // whether .debs were considered
	}{
		{name: "superseded images, their debs and snapshots", removed: slices.Concat(oldDebs, superseded, supersededSnaps, []string{goneSnap}), debs: true},
		{name: "dry run removes nothing", dryRun: true, removed: slices.Concat(oldDebs, superseded, supersededSnaps, []string{goneSnap}), debs: true},
		{
			name: "an image a kept guest uses stays, and its debs",
			inUse: func(cache string) []string {
				return []string{filepath.Join(cache, "images", "linux-6.1-bbbb", clientKeyFile)}
			},
			removed: []string{oldDebs[0], oldDebs[1], superseded[0], supersededSnaps[0], goneSnap},
			debs:    true,
		},
		{
			name: "the same with the cache dir relative", relative: true,
			inUse: func(cache string) []string {
				return []string{filepath.Join(cache, "images", "linux-6.1-bbbb", clientKeyFile)}
			},
			removed: []string{oldDebs[0], oldDebs[1], superseded[0], supersededSnaps[0], goneSnap},
			debs:    true,
		},
		{name: "a build of a superseded image holds its lock", hold: "images/linux-6.1-aaaa.lock", removed: []string{oldDebs[0], superseded[1], supersededSnaps[1], goneSnap}, debs: true},
		{name: "a build holds the debs", hold: "debs.lock", removed: slices.Concat(superseded, supersededSnaps, []string{goneSnap})},
		{
			name: "a guest saving a snapshot of a gone image holds its lock", hold: goneSnap + "/0123456789abcdef.lock",
			removed: slices.Concat(oldDebs, superseded, supersededSnaps), debs: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := pruneCache(t)
			if tc.hold != "" {
				unlock, err := flock.LockShared(t.Context(), filepath.Join(cache, tc.hold))
				if err != nil {
					t.Fatal(err)
				}
				defer unlock()
			}
			var inUse []string
			if tc.inUse != nil {
				inUse = tc.inUse(cache)
			}
			dir := cache
			if tc.relative {
				t.Chdir(filepath.Dir(cache))
				dir = filepath.Base(cache)
			}
			before := paths(t, cache)
			res, err := Prune(dir, inUse, tc.dryRun)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range res.Removed {
				rel, _ := filepath.Rel(cache, r.Path)
				got = append(got, rel)
				if r.Bytes == 0 || r.Why == "" {
					t.Errorf("%s: %d bytes, why %q", rel, r.Bytes, r.Why)
				}
				if want := map[string]string{goneSnap: "its image is gone", supersededSnaps[0]: "its image was pruned", supersededSnaps[1]: "its image was pruned"}[rel]; want != "" && r.Why != want {
					t.Errorf("%s removed because %q, want %q", rel, r.Why, want)
				}
				// A sparse RAM file counts by what it takes on disk, not its 256 MB.
				if strings.HasPrefix(rel, "snapshots/") && r.Bytes >= 256<<20 {
					t.Errorf("%s: %d bytes, its sparse RAM counted whole", rel, r.Bytes)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.removed) {
				t.Errorf("removed\n  %v\nwant\n  %v", got, tc.removed)
			}
			if (res.DebsLeft == "") != tc.debs {
				t.Errorf("DebsLeft %q", res.DebsLeft)
			}
			after := paths(t, cache)
			for _, rel := range tc.removed {
				_, exists := after[rel]
				if exists != tc.dryRun {
					t.Errorf("%s exists: %v after the prune (dry run %v)", rel, exists, tc.dryRun)
				}
			}
			// Nothing else changed: the newest images, the debs they use,
			// a killed build's work dir, every lock file (a builder may be
			// waiting on one). Only a real prune may create the debs lock.
			for rel := range before {
				if _, ok := after[rel]; !ok && !removedUnder(rel, tc.removed) {
					t.Errorf("%s was removed too", rel)
				}
			}
			for rel := range after {
				if !before[rel] && (tc.dryRun || rel != "debs.lock") {
					t.Errorf("%s was created", rel)
				}
			}
		})
	}
}

// paths lists every path under dir, relative to it.
func paths(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out[rel] = true
		}
		return nil
	})
	return out
}

// removedUnder says whether rel is one of removed or lies under one.
func removedUnder(rel string, removed []string) bool {
	for _, r := range removed {
		if rel == r || strings.HasPrefix(rel, r+"/") {
			return true
		}
	}
	return false
}
