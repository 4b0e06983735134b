package qemu

import (
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"time"
)

// startLocked starts cmd from a goroutine locked to its own OS thread, keeps that thread
// until cmd has exited and then calls done with Wait's result.
//
// Why the locked thread: Linux sends the Pdeathsig signal when the thread that forked the
// child ends, not when the process ends. Go may end an arbitrary thread (one whose locked
// goroutine exited), and a QEMU forked from it would be killed for no reason. A thread that
// lives exactly as long as QEMU turns Pdeathsig into what we want: QEMU dies with lab.
func startLocked(cmd *exec.Cmd, done func(error)) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: when this goroutine returns QEMU is gone, and the runtime then
		// retires the thread, which is harmless.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done(cmd.Wait())
	}()
	return <-started
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. The port is free only at the
// moment of asking; Start copes with losing the race to another process.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pickPort is freePort, replaceable by tests that need to lose the race on purpose.
var pickPort = freePort

// dialCheckTimeout bounds dialListening's connection to the forwarded port on loopback,
// which answers in microseconds when something listens.
const dialCheckTimeout = 200 * time.Millisecond

// dialListening reports whether something accepts connections on 127.0.0.1:port. It is the
// portable fallback for listeningOn where /proc cannot say who owns a socket.
func dialListening(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dialCheckTimeout)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
