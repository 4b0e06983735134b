// Package dpdk removes what a DPDK process leaves on the machine: its
// runtime directory (/var/run/dpdk/<prefix> for root) and any huge page
// files named after its file prefix. A process that crashes or is killed
// cannot clean up after itself, so whoever started it calls RemoveState.
// The package uses only the standard library: lab's agent imports it.
package dpdk

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RuntimeDirs are the directories DPDK's EAL may have created for prefix:
// /var/run/dpdk/<prefix> for root, else $XDG_RUNTIME_DIR/dpdk/<prefix> or
// /tmp/dpdk/<prefix> (eal_create_runtime_dir in DPDK's lib/eal/linux/eal.c).
func RuntimeDirs(prefix string) []string {
	dirs := []string{filepath.Join("/var/run/dpdk", prefix), filepath.Join("/tmp/dpdk", prefix)}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		dirs = append(dirs, filepath.Join(x, "dpdk", prefix))
	}
	return dirs
}

// HugepageFiles lists the files DPDK names <prefix>map_<n> on every
// hugetlbfs mount, which a process with huge pages leaves behind when it
// dies.
func HugepageFiles(prefix string) []string {
	var files []string
	for _, mnt := range hugetlbfsMounts() {
		m, _ := filepath.Glob(filepath.Join(mnt, globEscape(prefix)+"map_*"))
		files = append(files, m...)
	}
	return files
}

// Leftovers lists what exists of RuntimeDirs and HugepageFiles.
func Leftovers(prefix string) []string {
	var out []string
	for _, d := range RuntimeDirs(prefix) {
		if _, err := os.Lstat(d); err == nil {
			out = append(out, d)
		}
	}
	return append(out, HugepageFiles(prefix)...)
}

// RemoveState removes every leftover of prefix. prefix must be a single
// path element, so nothing outside DPDK's directories can be named.
func RemoveState(prefix string) error {
	if prefix == "" || prefix == "." || prefix == ".." || strings.ContainsAny(prefix, "/*?[") {
		return fmt.Errorf("refusing to remove DPDK state for prefix %q", prefix)
	}
	var errs []error
	for _, p := range Leftovers(prefix) {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("removing DPDK state: %w", err))
		}
	}
	return errors.Join(errs...)
}

func hugetlbfsMounts() []string {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "hugetlbfs" {
			out = append(out, fields[1])
		}
	}
	return out
}

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`)
	return r.Replace(s)
}
