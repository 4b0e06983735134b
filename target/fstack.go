package target

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"

	"lab/fstack"
)

// fstackProvider runs the agent linked against F-Stack: FreeBSD
// 13.0-stable's kernel TCP/IP and socket code in user space, on DPDK's null
// device, as a process on this machine (docs/freebsd-fstack.md). It is
// FreeBSD's network stack, not a booted FreeBSD: every socket acts as root,
// so scenarios about another user's sockets are skipped there.
type fstackProvider struct{}

// fstackConfig says where F-Stack's sources are, when not beside the
// checkout (../shared/freebsd-fstack).
type fstackConfig struct {
	Sources string `yaml:"sources"`
}

func (fstackProvider) NewConfig() Config { return &fstackConfig{} }

func (*fstackConfig) Validate(s *Spec) []string {
	var p []string
	if (s.OS != "" && s.OS != "freebsd") || (s.Arch != "" && s.Arch != runtime.GOARCH) {
		p = append(p, fmt.Sprintf("an fstack target runs FreeBSD's stack on this machine: leave \"os\" and \"arch\" out (or say freebsd and %s)", runtime.GOARCH))
	}
	s.OS, s.Arch = "freebsd", runtime.GOARCH
	return p
}

func (*fstackConfig) Describe() string { return fstack.Kernel }

func (c *fstackConfig) build(env Env) fstack.Config {
	var dirs []string
	if c.Sources != "" {
		dirs = append(dirs, expandHome(c.Sources))
	}
	return fstack.Config{Sources: append(dirs, sharedDirs("freebsd-fstack")...), CacheDir: env.CacheDir, Log: env.Log, Progress: logWriter{env}}
}

// Check names every tool, library and source F-Stack's build needs and
// this host lacks.
func (fstackProvider) Check(s Spec, env Env) error {
	return fstack.Check(s.Config.(*fstackConfig).build(env))
}

// BuildImage builds libfstack.a into the cache.
func (fstackProvider) BuildImage(ctx context.Context, s Spec, env Env) (string, bool, error) {
	lib, err := fstack.Build(ctx, s.Config.(*fstackConfig).build(env))
	if err != nil {
		return "", true, err
	}
	return fmt.Sprintf("%s (F-Stack %.8s, built in %s)", lib.Dir, lib.Commit, lib.Duration.Round(1e8)), true, nil
}

// Start builds the library (once; then cached) and says how to run the
// agent against it: a process of this machine with its own DPDK file
// prefix, whose DPDK state is removed when it ends, however it ends.
func (fstackProvider) Start(ctx context.Context, s Spec, env Env) (*Instance, error) {
	env.Phase("image")
	lib, err := fstack.Build(ctx, s.Config.(*fstackConfig).build(env))
	if err != nil {
		return nil, err
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	prefix := "lab-" + hex.EncodeToString(rnd[:])
	return &Instance{
		Agent: AgentBuild{GOOS: "linux", GOARCH: runtime.GOARCH, Tags: []string{fstack.Tags}, Env: lib.AgentEnv()},
		Local: &processMachine{
			Env:  []string{fstack.PrefixEnv + "=" + prefix},
			Stop: func(context.Context) error { return fstack.RemoveRunState(prefix) },
		},
	}, nil
}

var _ ImageBuilder = fstackProvider{}
