//go:build linux && (faults || load)

package orchestrator_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// children lists the live (not zombie) children of pid from /proc.
func children(pid int) []string {
	var out []string
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		var state string
		var ppid int
		if _, err := fmt.Sscan(s[i+1:], &state, &ppid); err != nil || ppid != pid || state == "Z" {
			continue
		}
		out = append(out, s[:i+1])
	}
	return out
}

// coldImageCache is a cache that shares the downloaded packages and agent
// builds of cacheDir but has no built images, so the image phase lasts
// seconds (assembling from cached packages) and a signal can land in it.
func coldImageCache(t *testing.T) string {
	dir := t.TempDir()
	ents, err := os.ReadDir(cacheDir(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == "images" {
			continue
		}
		if err := os.Symlink(filepath.Join(cacheDir(t), e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
