// Package testenv holds what lab's tests share about their environment:
// where guest images are cached, and which host tools a test needs.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// RunWithCache runs a package's tests with a cache directory for guest
// images and Debian packages: $LAB_IMAGE_CACHE when set (kept across runs,
// so builds after the first are cache hits), else a temporary directory
// removed afterwards. It is meant for TestMain and exits the process.
func RunWithCache(m *testing.M, prefix string, dir *string) {
	*dir = os.Getenv("LAB_IMAGE_CACHE")
	temporary := *dir == ""
	if temporary {
		d, err := os.MkdirTemp("", prefix)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		*dir = d
	}
	code := m.Run()
	if temporary {
		os.RemoveAll(*dir)
	}
	os.Exit(code)
}

// NeedTools skips the test when a tool is missing, except in CI, where the
// README's test command installs it and a missing tool is a failure.
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI: %v", tool, err)
			}
			t.Skipf("skipping: %s not installed", tool)
		}
	}
}

// Left lists what is in dir, a directory a test gave a run of its own
// (a $TMPDIR, a host's /tmp) and expects it to leave empty: one name per
// entry, failing the test when dir cannot be read.
func Left(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}
