package target

import (
	"context"
	"fmt"
	"runtime"

	"lab/rump"
)

// rumpProvider runs the agent linked against NetBSD's network stack built
// as a rump kernel: NetBSD's own socket, protocol-control-block and TCP/UDP
// code inside a process of this machine (docs/netbsd-rump.md). Each run
// boots a fresh rump kernel. It is NetBSD's kernel code, not a booted
// NetBSD: no NetBSD userland, drivers or scheduler.
type rumpProvider struct{}

// rumpConfig says where the NetBSD sources are, when not beside the
// checkout (../shared/netbsd-rump).
type rumpConfig struct {
	Sources string `yaml:"sources"`
}

func (rumpProvider) NewConfig() Config { return &rumpConfig{} }

func (*rumpConfig) Validate(s *Spec) []string {
	var p []string
	if (s.OS != "" && s.OS != "netbsd") || (s.Arch != "" && s.Arch != runtime.GOARCH) {
		p = append(p, fmt.Sprintf("a rump target runs NetBSD's kernel on this machine: leave \"os\" and \"arch\" out (or say netbsd and %s)", runtime.GOARCH))
	}
	s.OS, s.Arch = "netbsd", runtime.GOARCH
	return p
}

func (*rumpConfig) Describe() string { return "NetBSD 7.99.34 as a rump kernel (src-netbsd 82f3a690)" }

func (c *rumpConfig) build(env Env) rump.Config {
	var dirs []string
	if c.Sources != "" {
		dirs = append(dirs, expandHome(c.Sources))
	}
	return rump.Config{Sources: append(dirs, sharedDirs("netbsd-rump")...), CacheDir: env.CacheDir, Log: env.Log, Progress: logWriter{env}}
}

// Check names the compiler, tools and sources this host lacks.
func (rumpProvider) Check(s Spec, env Env) error {
	return rump.Check(s.Config.(*rumpConfig).build(env))
}

// BuildImage builds the rump kernel's libraries into the cache.
func (rumpProvider) BuildImage(ctx context.Context, s Spec, env Env) (string, bool, error) {
	libs, err := rump.Build(ctx, s.Config.(*rumpConfig).build(env))
	if err != nil {
		return "", true, err
	}
	return fmt.Sprintf("%s (%s)", libs.Dir, libs.Kernel), true, nil
}

// Start builds the libraries (once; then cached) and says how to run the
// agent against them: a process of this machine, which finds the libraries
// through its rpath and needs no privilege (user=other is a second rump
// process with another uid).
func (rumpProvider) Start(ctx context.Context, s Spec, env Env) (*Instance, error) {
	env.Phase("image")
	libs, err := rump.Build(ctx, s.Config.(*rumpConfig).build(env))
	if err != nil {
		return nil, err
	}
	return &Instance{
		Agent:  AgentBuild{GOOS: "linux", GOARCH: runtime.GOARCH, Tags: []string{rump.Tags}, Env: libs.GoEnv()},
		Local:  &processMachine{},
		CC:     CBuildHost,
		CStack: CStackRump,
		CFlags: libs.CCFlags(),
	}, nil
}

var _ ImageBuilder = rumpProvider{}
