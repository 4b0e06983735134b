package target

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"lab"
	"lab/rundir"
)

// lineupBox is one row of lab's lineup: the box a machine uses with one
// Vagrant provider.
type lineupBox struct {
	Machine, Provider, Box, Version, OS string
}

// lineupRowRE matches a row of BOXES in vagrant/Vagrantfile, which keeps
// one row per line for this reader.
var lineupRowRE = regexp.MustCompile(`^\s*\[\s*"([^"]+)"\s*,\s*"([^"]+)"\s*,\s*"([^"]+)"\s*,\s*"([^"]*)"\s*,\s*"([^"]+)"\s*\]\s*,?\s*(#.*)?$`)

// parseLineup reads the BOXES rows of a lineup Vagrantfile.
func parseLineup(data []byte) []lineupBox {
	var out []lineupBox
	for _, line := range strings.Split(string(data), "\n") {
		if m := lineupRowRE.FindStringSubmatch(line); m != nil {
			out = append(out, lineupBox{Machine: m[1], Provider: m[2], Box: m[3], Version: m[4], OS: m[5]})
		}
	}
	return out
}

// vagrantDir is a directory holding lab's Vagrantfile (the one lab
// carries, lab.Vagrantfile), which every vagrant target is brought up with:
// written into the cache once per version of it.
func vagrantDir(cacheDir string) (string, error) {
	dir, err := filepath.Abs(filepath.Join(cacheDir, "vagrant", "lineup-"+lab.Hash(lab.Vagrantfile)))
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, "Vagrantfile")
	if b, err := os.ReadFile(file); err == nil && bytes.Equal(b, lab.Vagrantfile) {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("writing lab's Vagrantfile: %w", err)
	}
	if err := rundir.WriteFile(file, lab.Vagrantfile); err != nil {
		return "", fmt.Errorf("writing lab's Vagrantfile: %w", err)
	}
	return dir, nil
}

// readLineup is the lineup of lab's Vagrantfile.
func readLineup() []lineupBox { return parseLineup(lab.Vagrantfile) }
