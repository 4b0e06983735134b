package target

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"lab/internal/srcdir"
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

// vagrantDir is lab's vagrant/ directory, which holds the Vagrantfile every
// vagrant target is brought up with.
func vagrantDir() (string, error) {
	src, err := srcdir.Find()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(src, "vagrant")
	if _, err := os.Stat(filepath.Join(dir, "Vagrantfile")); err != nil {
		return "", fmt.Errorf("lab's Vagrantfile: %w", err)
	}
	return dir, nil
}

func readLineup() ([]lineupBox, error) {
	dir, err := vagrantDir()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "Vagrantfile"))
	if err != nil {
		return nil, err
	}
	return parseLineup(data), nil
}
