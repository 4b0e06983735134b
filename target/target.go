// Package target describes the machines scenarios run on (lab.yaml) and the
// providers that bring them to life, one file per provider: local.go,
// ssh.go, qemu.go (microVMs and cloud disks), vagrant.go, wine.go,
// fstack.go (FreeBSD's stack in user space) and rump.go (NetBSD's kernel as
// a rump kernel). A
// provider knows how to start a machine, how to reach it and how to stop it;
// it never runs the agent, which is package orchestrator's job.
//
// A run of one target goes Check, Start (the provider brings the machine up
// and returns an Instance saying how to reach it), Connect (the one SSH
// client every provider shares, with pinned or known_hosts host keys,
// retries and reconnects), then the engine's Upload and Run on the Machine,
// and Close, which stops what Start started.
//
// Adding a provider is a file with a type that implements Provider and its
// line in the providers table below.
package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/hashicorp/go-hclog"

	"lab/remote"
	"lab/wire"
)

// providers is every provider lab knows, by the name lab.yaml gives it.
var providers = map[string]Provider{
	"local":   localProvider{},
	"ssh":     sshProvider{},
	"qemu":    qemuProvider{},
	"vagrant": vagrantProvider{},
	"wine":    wineProvider{},
	"fstack":  fstackProvider{},
	"rump":    rumpProvider{},
}

// Provider brings targets of one kind up.
type Provider interface {
	// NewConfig returns the empty settings of one target: a pointer to a
	// struct whose yaml tags are the lab.yaml fields this provider reads
	// besides the common ones (name, provider, os, arch, keep).
	NewConfig() Config
	// Check says what this host (with the cache in env.CacheDir) lacks to
	// run s, or nil when it can. It starts nothing.
	Check(s Spec, env Env) error
	// Start brings s up and says how to reach it, reporting each phase it
	// goes through (image, boot, ...) to env.Phase. On error nothing it
	// started is left running.
	Start(ctx context.Context, s Spec, env Env) (*Instance, error)
}

// Config is a provider's own settings of one target.
type Config interface {
	// Validate checks the settings against the common ones of s and fills
	// in defaults, of the settings and of s.OS and s.Arch; each string is
	// one problem. It runs once, when lab.yaml is read.
	Validate(s *Spec) []string
	// Describe says in a few words what the target is, for lab targets.
	Describe() string
}

// Keeper is a Provider that can leave its machines running after a run
// (Spec.Keep) for later runs to reuse.
type Keeper interface {
	// CanKeep says why s cannot be kept, or nil.
	CanKeep(s Spec) error
}

// ImageBuilder is a Provider whose targets need something built before
// they can start (a guest image), which lab image build makes ahead of a
// run.
type ImageBuilder interface {
	// BuildImage builds what s needs and says in a line what it built; ok
	// is false when s needs nothing built.
	BuildImage(ctx context.Context, s Spec, env Env) (built string, ok bool, err error)
}

// Env is what a provider gets besides the target.
type Env struct {
	RunDir   string // where consoles and logs of this target go
	CacheDir string // images, keys and kept-machine state
	Log      hclog.Logger
	// Phase marks the start of a named phase; the previous one ends there.
	Phase func(name string)
	// Cold boots guests without restoring a snapshot, and saves none
	// (lab run --cold).
	Cold bool
	// Agent, when set, builds the agent for b and returns its path: the
	// engine's own build, which its build phase then finds done. A provider
	// that puts the agent in a machine's image calls it (Preloaded).
	Agent func(ctx context.Context, b AgentBuild) (string, error)
}

// Instance is a started target: how the agent is built for it, how to reach
// it and how to stop it.
type Instance struct {
	// Agent is what the agent must be built for.
	Agent AgentBuild
	// SSH is how to reach the machine; nil when the agent runs on this host,
	// as Local.
	SSH *remote.Config
	// Local is the machine when SSH is nil.
	Local Machine
	// Root is the command that runs the agent as root over SSH ("sudo -n"),
	// "" to run it as the user logged in. Only disposable machines get it.
	Root string
	// Prepare, if set, runs once on the first connection, before the agent
	// (the vagrant provider makes the second user there).
	Prepare func(ctx context.Context, c *remote.Client) error
	// Exited is closed when the machine dies (its QEMU exited), so that a
	// dropped connection is known for what it is and not retried; nil for
	// machines lab does not run.
	Exited <-chan struct{}
	// Diagnose, if set, adds what the provider knows (a console's last
	// lines) to the error of a connection that could not be made.
	Diagnose func(err error) error
	// Stop tears down what Start started; nil when there is nothing to stop.
	Stop func(ctx context.Context) error
	// Keep leaves the machine running after the run: Stop is then called
	// only when the first connection fails.
	Keep bool
	// Kept describes a machine kept running for later runs, nil for others.
	Kept *Kept
	// Preloaded maps programs of this host to where they already are on
	// the machine (the agent in a microVM's initramfs, and so in its
	// snapshot): uploading one copies nothing.
	Preloaded map[string]string
	// CC is how a C program (lab repro --emit c) is built for the machine,
	// CStack which socket API it calls, and CFlags what the host's cc needs
	// besides (a user-space stack's headers and libraries).
	CC     CBuild
	CStack CStack
	CFlags []string
}

// CStack is the socket API a C reproducer calls.
type CStack string

const (
	CStackPOSIX CStack = ""     // the OS's own socket calls
	CStackRump  CStack = "rump" // a rump kernel's rump_sys_* calls
)

// AgentBuild is what an agent binary must be built for.
type AgentBuild struct {
	GOOS, GOARCH string
	// Tags and Env (extra NAME=value, CGO_ENABLED=1 for an agent linked
	// against C libraries) are for agents that are not the static default.
	Tags []string
	Env  []string
}

// CBuild says where a C reproducer is compiled for a machine.
type CBuild int

const (
	// CBuildNone: lab has no compiler for the machine.
	CBuildNone CBuild = iota
	// CBuildHost: this host's cc; the program runs here.
	CBuildHost
	// CBuildHostStatic: this host's cc, statically linked, for a Linux
	// guest with no C library of its own (lab's microVMs).
	CBuildHostStatic
	// CBuildTarget: the machine's own cc, over SSH, where it has one.
	CBuildTarget
)

// Machine is a target that is up: the agent can be put on it and run.
type Machine interface {
	// Upload copies the program at local onto the machine and returns the
	// command that runs it there.
	Upload(ctx context.Context, local string) (cmd string, err error)
	// Run runs cmd with stdin, streaming its standard output to stdout as
	// it comes. An error is an infrastructure failure (the connection or
	// the process died), never a scenario outcome.
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error
	// Close disconnects and stops what Start started. It is safe to call
	// more than once.
	Close(ctx context.Context) error
}

// Reconnecter is a Machine whose lost connection can be made again while
// the machine itself lives on (a guest or host reached over SSH).
type Reconnecter interface {
	Reconnect(ctx context.Context) error
}

// Linked is a Machine whose agent's output crosses a connection where each
// write and each byte cost: AgentOutput is how the agent should shape it
// there (wire.Request.Output).
type Linked interface {
	AgentOutput() wire.Output
}

// ErrUnavailable marks a target this host cannot run: a result to report,
// not a failure of the run.
var ErrUnavailable = errors.New("not available on this host")

// ErrMachineExited says the machine is gone (its QEMU exited): a connection
// it broke is not worth making again.
var ErrMachineExited = errors.New("the guest's QEMU process exited")

// Lookup returns the provider of that name.
func Lookup(name string) (Provider, bool) {
	p, ok := providers[name]
	return p, ok
}

// providerNames lists the providers, sorted, for messages.
func providerNames() []string {
	names := make([]string, 0, len(providers))
	for n := range providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Check says what this host lacks to run s, nil when it can, wrapping
// ErrUnavailable.
func Check(s Spec, env Env) error {
	p, ok := Lookup(s.Provider)
	if !ok {
		return errors.New("no provider " + s.Provider)
	}
	if err := p.Check(s, env); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// CanKeep says why s cannot be kept running after a run, or nil.
func CanKeep(s Spec) error {
	p, _ := Lookup(s.Provider)
	if k, ok := p.(Keeper); ok {
		return k.CanKeep(s)
	}
	return errors.New("provider " + s.Provider + " cannot keep machines running")
}

// BuildImage builds what s needs before it can start, if anything.
func BuildImage(ctx context.Context, s Spec, env Env) (string, bool, error) {
	p, _ := Lookup(s.Provider)
	if b, ok := p.(ImageBuilder); ok {
		return b.BuildImage(ctx, s, env)
	}
	return "", false, nil
}

var (
	_ Keeper       = qemuProvider{}
	_ ImageBuilder = qemuProvider{}
	_ Keeper       = vagrantProvider{}
)
