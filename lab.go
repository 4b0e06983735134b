// Package lab is what the lab binary carries with it, so that it works from
// any directory: the scenario catalog, the targets file, the Vagrantfile of
// lab's lineup, and the agent's sources, from which agents for targets are
// built. Files in the working directory (or named by flags) still win.
package lab

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"sort"
)

// Catalog is scenarios.yaml as lab was built with it.
//
//go:embed scenarios.yaml
var Catalog []byte

// Targets is lab.yaml as lab was built with it.
//
//go:embed lab.yaml
var Targets []byte

// Vagrantfile is vagrant/Vagrantfile, the lineup of Vagrant boxes.
//
//go:embed vagrant/Vagrantfile
var Vagrantfile []byte

// AgentSource is what building the agent needs: the module's go.mod and
// go.sum, and the packages cmd/lab-agent is made of, those of its builds
// against user-space stacks included (the standard library and
// golang.org/x/sys come from the Go toolchain and its module cache).
// TestAgentSourceComplete keeps the list whole.
//
//go:embed go.mod go.sum cmd/lab-agent agent wire internal/dpdk
var AgentSource embed.FS

// Hash is a short hex SHA-256 of data, as lab names the inputs of a run.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}

// AgentSourceHash is a short hex SHA-256 of every file of AgentSource, with
// its path: it names the agent build lab carries.
func AgentSourceHash() string {
	h := sha256.New()
	var paths []string
	fs.WalkDir(AgentSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	sort.Strings(paths)
	for _, p := range paths {
		b, _ := AgentSource.ReadFile(p)
		h.Write([]byte(p + "\x00"))
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}
