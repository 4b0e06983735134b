//go:build unix

package agent

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// sysSignal sends the named signal (SIGKILL, SIGTERM, SIGSEGV, SIGABRT) to
// a helper process.
func sysSignal(p *os.Process, name string) error {
	sig := unix.SignalNum(name)
	if sig == 0 {
		return fmt.Errorf("%w: signal %s", errUnsupported, name)
	}
	return p.Signal(sig)
}
