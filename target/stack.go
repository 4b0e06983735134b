package target

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
)

// sharedDirs lists where the sources of a stack lab builds (netbsd-rump,
// freebsd-fstack) may be beside lab's checkout: ../shared/<name> next to the
// first directory holding lab's go.mod at or above the working directory,
// where lab's CI and its developers have them.
func sharedDirs(name string) []string {
	wd, err := os.Getwd()
	if err != nil {
		return nil
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module lab\n")) {
			return []string{filepath.Join(filepath.Dir(d), "shared", name)}
		}
		if filepath.Dir(d) == d {
			return nil
		}
	}
}

// logWriter turns the lines a build prints as progress into log lines of
// the target, so they show above lab's live view.
type logWriter struct{ env Env }

func (w logWriter) Write(p []byte) (int, error) {
	if w.env.Log != nil {
		for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				w.env.Log.Info(line)
			}
		}
	}
	return len(p), nil
}
