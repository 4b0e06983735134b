// Package srcdir finds lab's source tree, which the agent is built from and
// which holds the Vagrantfile of lab's lineup.
package srcdir

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
)

// Find returns lab's source tree: $LAB_SRC, or the first directory holding
// lab's go.mod above the working directory or the lab binary.
func Find() (string, error) {
	if d := os.Getenv("LAB_SRC"); d != "" {
		return d, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, d := range starts {
		for {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module lab\n")) {
				return d, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", errors.New("cannot find lab's source tree: run lab inside it or set LAB_SRC")
}
