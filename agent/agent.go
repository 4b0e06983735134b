// Package agent runs scenarios of socket calls against the kernel it runs on
// and reports what each call did.
//
// The agent is a small static binary pushed to every target, so this package
// depends on the standard library, lab/wire and golang.org/x/sys only. The
// socket calls themselves live in per-backend files (sys_unix.go,
// sys_windows.go, sys_rump.go, sys_fstack.go, sockopt_*.go; each sys file
// names its errnos) in the manner of the standard library's net package;
// the code here never asks which OS it is on.
package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"lab/wire"
)

// Version identifies the agent's behaviour in results; bump it when a
// change could alter what a scenario reports.
const Version = "3"

// Emit receives the agent's output lines in order.
type Emit func(wire.Line) error

// Run runs every scenario of req, emitting the environment first, a result
// as soon as each scenario finishes, and a final Done line. Scenarios run in
// order. On a kernel whose calls may come from any thread (slowBeside), the
// slow ones (a TIME_WAIT length takes a minute) run beside the others from
// the start instead: they mostly wait. Run returns early only when ctx is
// cancelled or emit fails; a scenario that fails is a result, not an error.
// Loopback aliases it added for addr1/addr2 are removed before it returns,
// however it returns; failing to remove them is an error.
func Run(ctx context.Context, req wire.Request, emit Emit) error {
	var err error
	onKernelThread(func() { err = run(ctx, req, emit) })
	return err
}

func run(ctx context.Context, req wire.Request, emit Emit) (err error) {
	start := time.Now()
	env, renv, unalias := environment(req)
	defer func() {
		if uerr := unalias(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("removing the loopback aliases it added: %w", uerr))
		}
	}()
	if err := emit(wire.Line{Env: env}); err != nil {
		return fmt.Errorf("writing environment: %w", err)
	}
	var mu sync.Mutex // emit is called from the slow scenarios' goroutines too
	var emitErr error
	send := func(l wire.Line) error {
		mu.Lock()
		defer mu.Unlock()
		if emitErr != nil {
			return emitErr
		}
		if err := emit(l); err != nil {
			emitErr = err
		}
		return emitErr
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	one := func(i int, sc wire.Scenario) error {
		if err := send(wire.Line{Progress: &wire.Progress{Index: i + 1, Total: len(req.Scenarios), ID: sc.ID}}); err != nil {
			return fmt.Errorf("writing progress: %w", err)
		}
		res := runScenario(ctx, sc, renv)
		if err := send(wire.Line{Result: res}); err != nil {
			return fmt.Errorf("writing result of %s: %w", sc.ID, err)
		}
		return nil
	}
	beside := func(sc wire.Scenario) bool { return sc.Slow && slowBeside }
	var wg sync.WaitGroup
	errs := make(chan error, len(req.Scenarios))
	for i, sc := range req.Scenarios {
		if beside(sc) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := one(i, sc); err != nil {
					errs <- err
					cancel()
				}
			}()
		}
	}
	for i, sc := range req.Scenarios {
		if beside(sc) {
			continue
		}
		if err = ctx.Err(); err != nil {
			break
		}
		if err = one(i, sc); err != nil {
			cancel()
			break
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		if err == nil {
			err = e
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if emitErr != nil && !errors.Is(err, emitErr) {
			return fmt.Errorf("%w (after %w)", err, emitErr)
		}
		return err
	}
	return send(wire.Line{Done: &wire.Done{Scenarios: len(req.Scenarios), Micros: time.Since(start).Microseconds()}})
}

// needsOther reports whether a scenario has sockets of the other user.
func needsOther(sc wire.Scenario) bool {
	for _, st := range sc.Steps {
		if st.User == "other" {
			return true
		}
	}
	return false
}

// runEnv is what every scenario of a run shares: the symbolic addresses,
// the OS's ephemeral port range and the other user.
type runEnv struct {
	addrs map[string]string
	// ephemeral is the OS's ephemeral port range; {0, 0} when it could not
	// be read.
	ephemeral [2]int
	// otherUser runs user=other sockets; "" when none can, and otherNote
	// says why.
	otherUser, otherNote string
}

// environment describes this machine and settles the symbolic addresses;
// unalias undoes what settling them changed.
func environment(req wire.Request) (env *wire.Env, renv runEnv, unalias func() error) {
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
	renv = runEnv{addrs: addrs, otherUser: env.OtherUser, otherNote: env.OtherUserNote}
	if lo, hi, err := sysEphemeralPorts(); err != nil {
		env.EphemeralNote = err.Error()
	} else {
		env.EphemeralPorts = fmt.Sprintf("%d-%d", lo, hi)
		renv.ephemeral = [2]int{lo, hi}
	}
	return env, renv, unalias
}

// process holds the sockets a scenario puts in a process other than the
// agent's: proc=NAME sockets in one of the agent's own user, user=other
// sockets in one of another user. On a host kernel it is the helper, this
// binary run again (helper.go); on the rump kernel a second process of that
// kernel (other_rump.go). Each scenario starts its own and ends them when it
// ends (startProcess, per backend).
type process interface {
	sockets
	// exit ends the process as a program calling exit(0) does, with its
	// sockets still open, and waits until it has ended; kill does the same
	// by the named signal. The string describes the call for the trace.
	exit() (string, error)
	kill(sig string) (string, error)
	// stop ends the process at the end of its scenario, its sockets closed.
	stop()
}

// errUnsupported marks an option this OS does not define.
var errUnsupported = errors.New("option not defined on this OS")
