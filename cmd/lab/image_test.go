package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImagePrune runs `lab image prune` on a cache holding two builds of
// linux-6.1: the older goes (a dry run only says so), unless a kept guest
// still uses it.
func TestImagePrune(t *testing.T) {
	bin := labBinary(t)
	newCache := func(t *testing.T, keptOld bool) string {
		cache := t.TempDir()
		for i, hash := range []string{"old0000000000000", "new0000000000000"} {
			dir := filepath.Join(cache, "images", "linux-6.1-"+hash)
			must(t, os.MkdirAll(dir, 0o755))
			m, _ := json.Marshal(map[string]any{
				"name": "linux-6.1", "suite": "bookworm", "arch": "amd64",
				"kernel_package": "linux-image-6.1.0-50-cloud-amd64", "kernel_version": fmt.Sprintf("6.1.17%d-1", i),
				"hash": hash, "built": time.Date(2026, 11, 1+i, 0, 0, 0, 0, time.UTC),
			})
			must(t, os.WriteFile(filepath.Join(dir, "image.json"), m, 0o644))
			must(t, os.WriteFile(filepath.Join(dir, "vmlinuz"), make([]byte, 1<<20), 0o644))
		}
		if keptOld {
			must(t, os.MkdirAll(filepath.Join(cache, "kept"), 0o755))
			k, _ := json.Marshal(map[string]any{"target": "linux-6.1", "pid": 1, "key": filepath.Join(cache, "images", "linux-6.1-old0000000000000", "client_ed25519")})
			must(t, os.WriteFile(filepath.Join(cache, "kept", "linux-6.1.json"), k, 0o644))
		}
		return cache
	}
	old := filepath.Join("images", "linux-6.1-old0000000000000")
	for _, tc := range []struct {
		name    string
		keptOld bool
		args    []string
		want    string // in stdout
		oldGone bool
	}{
		{name: "prune", want: "removed " + old + " (1.0 MiB): superseded by linux-6.1-new0000000000000, built 2026-11-02 00:00", oldGone: true},
		{name: "dry run", args: []string{"-n"}, want: "would remove " + old + " (1.0 MiB)"},
		{name: "kept guest", keptOld: true, want: "removed 0 entries, 0.0 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := newCache(t, tc.keptOld)
			code, stdout, stderr := runLab(t, bin, nil, append([]string{"image", "prune", "-cache", cache}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			if !strings.Contains(stdout, tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, stdout)
			}
			_, err := os.Stat(filepath.Join(cache, old))
			if gone := os.IsNotExist(err); gone != tc.oldGone {
				t.Errorf("old image gone: %v, want %v", gone, tc.oldGone)
			}
			if _, err := os.Stat(filepath.Join(cache, "images", "linux-6.1-new0000000000000", "vmlinuz")); err != nil {
				t.Errorf("the newest image was touched: %v", err)
			}
		})
	}
	if code, _, stderr := runLab(t, bin, nil, "image", "prune", "extra"); code != exitUsage || !strings.Contains(stderr, "lab image prune") {
		t.Errorf("lab image prune extra: exit %d, %q", code, stderr)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
