// Package agent runs scenarios of socket calls against the kernel it runs on
// and reports what each call did.
//
// The agent is a small static binary pushed to every target, so this package
// depends on the standard library, lab/wire and golang.org/x/sys only. The
// socket calls themselves live in per-OS files (sys_unix.go, sys_windows.go,
// sockopt_*.go, errno_*.go) in the manner of the standard library's net
// package; the code here never asks which OS it is on.
package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"lab/wire"
)

// Version identifies the agent's behaviour in results; bump it when a
// change could alter what a scenario reports.
const Version = "2"

// Emit receives the agent's output lines in order.
type Emit func(wire.Line) error

// Run runs every scenario of req in order, emitting the environment first, a
// result as soon as each scenario finishes, and a final Done line. It returns
// early only when ctx is cancelled or emit fails; a scenario that fails is a
// result, not an error. Loopback aliases it added for addr1/addr2 are removed
// before it returns, however it returns; failing to remove them is an error.
func Run(ctx context.Context, req wire.Request, emit Emit) error {
	var err error
	onKernelThread(func() { err = run(ctx, req, emit) })
	return err
}

func run(ctx context.Context, req wire.Request, emit Emit) (err error) {
	start := time.Now()
	env, addrs, unalias := environment(req)
	defer func() {
		if uerr := unalias(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("removing the loopback aliases it added: %w", uerr))
		}
	}()
	if err := emit(wire.Line{Env: env}); err != nil {
		return fmt.Errorf("writing environment: %w", err)
	}
	var other otherProcess
	defer func() {
		if other != nil {
			other.stop()
		}
	}()
	for i, sc := range req.Scenarios {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := emit(wire.Line{Progress: &wire.Progress{Index: i + 1, Total: len(req.Scenarios), ID: sc.ID}}); err != nil {
			return fmt.Errorf("writing progress: %w", err)
		}
		if other == nil && needsOther(sc) && env.OtherUser != "" {
			h, err := startOther(env.OtherUser)
			if err != nil {
				env.OtherUser, env.OtherUserNote = "", "could not start the second user's helper: "+err.Error()
			} else {
				other = h
			}
		}
		var otherSocks sockets
		if other != nil {
			otherSocks = other
		}
		res := runScenario(ctx, sc, addrs, otherSocks, env.OtherUserNote)
		if other != nil && other.broken() {
			other.stop()
			other = nil
		}
		if err := emit(wire.Line{Result: res}); err != nil {
			return fmt.Errorf("writing result of %s: %w", sc.ID, err)
		}
	}
	return emit(wire.Line{Done: &wire.Done{Scenarios: len(req.Scenarios), Micros: time.Since(start).Microseconds()}})
}

func needsOther(sc wire.Scenario) bool {
	for _, st := range sc.Steps {
		if st.User == "other" {
			return true
		}
	}
	return false
}

// environment describes this machine and settles the symbolic addresses;
// unalias undoes what settling them changed.
func environment(req wire.Request) (env *wire.Env, addrs map[string]string, unalias func() error) {
	addrs, note, unalias := chooseAddrs(req.Addrs)
	env = &wire.Env{
		OS:           kernelOS(),
		Family:       wire.Family(kernelOS()),
		Arch:         runtime.GOARCH,
		Addrs:        addrs,
		AddrsNote:    note,
		AgentVersion: Version,
	}
	env.KernelRelease, env.KernelVersion = kernelRelease()
	env.Hostname = hostname()
	env.UID = uid()
	env.OtherUser, env.OtherUserNote = otherUser(req.OtherUser)
	return env, addrs, unalias
}

// otherProcess holds a scenario's user=other sockets in a process of
// another user: the helper (helper.go) on a host kernel.
type otherProcess interface {
	sockets
	// broken says the process died; the next scenario that needs one starts
	// another.
	broken() bool
	stop()
}

// errUnsupported marks an option this OS does not define.
var errUnsupported = errors.New("option not defined on this OS")
