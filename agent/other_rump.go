//go:build rump

package agent

import (
	"errors"
	"fmt"
	"slices"
)

// rumpProc holds a scenario's proc=NAME or user=other sockets in a process
// of the rump kernel of its own: forked from the agent's with a clean
// descriptor table (newProcess), with the agent's uid for proc=NAME and
// another for user=other. Its descriptors carry that process
// (kernel_rump.go), so the table's calls on them are made there.
type rumpProc struct {
	*table
	proc  int
	pid   int  // the process's pid in the rump kernel, for the trace
	ended bool // by exit, kill or stop: the kernel has closed its sockets
}

// startProcess gives a scenario's proc= or user=other sockets a process of
// the rump kernel: user "" is the agent's own uid (proc=NAME), else the uid
// otherUser chose (user=other), whose sockets NetBSD's bind then compares
// with the agent's, as on a NetBSD machine.
func startProcess(user string) (process, error) {
	uid := rumpAgentUID
	if user != "" {
		var err error
		if uid, err = parseUID(user); err != nil {
			return nil, err
		}
	}
	proc, pid, err := newProcess(uid, uid)
	if err != nil {
		return nil, fmt.Errorf("creating a rump process with uid %d: %w", uid, err)
	}
	return &rumpProc{table: newTable(), proc: proc, pid: pid}, nil
}

// errProcessEnded is what a call on a socket of a process that has ended
// returns, as on the host (errHelperDead).
var errProcessEnded = errors.New("the rump process holding these sockets has ended")

func (o *rumpProc) open(name string, ip6 bool, proto string) error {
	if o.ended {
		return errProcessEnded
	}
	fd, err := socketIn(o.proc, ip6, proto)
	if err != nil {
		return err
	}
	return o.put(name, &sock{fd: fd, ip6: ip6, proto: proto})
}

// fd is the descriptor as the rump kernel numbers it in that process.
func (o *rumpProc) fd(name string) int {
	if n := o.table.fd(name); n >= 0 {
		return n & fdMask
	}
	return -1
}

// exit releases the process's only lwp, which is how a rump kernel's
// process exits: rump_lwproc_switch (sys/rump/librump/rumpkern/lwproc.c)
// then calls fd_free() in its context, closing every descriptor as exit1
// (sys/kern/kern_exit.c:286) does for exit(2), and frees the process.
func (o *rumpProc) exit() (string, error) {
	call := fmt.Sprintf("exit(0) in rump process %d: rump_pub_lwproc_releaselwp, fd_free", o.pid)
	if o.ended {
		return call, errProcessEnded
	}
	o.end()
	return call, nil
}

// kill ends the process as the signal's default action would. A rump kernel
// cannot deliver a signal to its processes: its signal model raises it in
// the host process (rumpsig_raise, sys/rump/librump/rumpkern/signals.c),
// which would end the agent. On NetBSD the four signals a kill step may send
// terminate by default (SA_KILL in sigprop, sys/sys/signalvar.h), SIGSEGV and
// SIGABRT after a core dump, and sigexit (sys/kern/kern_sig.c:1956-2055)
// then calls exit1, the path of exit(2): what the process's sockets see is
// that exit, which is what the process's release makes (exit).
func (o *rumpProc) kill(sig string) (string, error) {
	call := fmt.Sprintf("kill(%d, %s) in the rump kernel: its default action, exit1, as rump_pub_lwproc_releaselwp, fd_free", o.pid, sig)
	if !slices.Contains(rumpFatalSignals, sig) {
		return call, fmt.Errorf("%w: signal %s", errUnsupported, sig)
	}
	if o.ended {
		return call, errProcessEnded
	}
	o.end()
	return call, nil
}

// rumpFatalSignals are the signals kill models: those whose default action
// on NetBSD ends the process (sigprop's SA_KILL).
var rumpFatalSignals = []string{"SIGKILL", "SIGTERM", "SIGSEGV", "SIGABRT"}

// stop ends the process when its scenario ends; its sockets close with it.
func (o *rumpProc) stop() {
	if !o.ended {
		o.end()
	}
}

// end releases the process and forgets its sockets, which the kernel closed.
func (o *rumpProc) end() {
	o.ended = true
	releaseProcess(o.proc)
	o.abandon(errProcessEnded)
}
