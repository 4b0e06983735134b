//go:build linux && (faults || load)

package orchestrator_test

import (
	"os"
	"path/filepath"
	"testing"
)

// coldImageCache is a cache that shares the downloaded packages and agent
// builds of cacheDir but has no built images, so the image phase lasts
// seconds (assembling from cached packages) and a signal can land in it.
// Nor does it share the snapshots: those are of images built here, which
// go with the test, and would only pile up in cacheDir.
func coldImageCache(t *testing.T) string {
	dir := t.TempDir()
	ents, err := os.ReadDir(cacheDir(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == "images" || e.Name() == "snapshots" {
			continue
		}
		if err := os.Symlink(filepath.Join(cacheDir(t), e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
