package agent

import (
	"fmt"
	"os"
)

// sysSignal: Windows has no signals; SIGKILL is TerminateProcess, the
// others cannot be sent.
func sysSignal(p *os.Process, name string) error {
	if name != "SIGKILL" {
		return fmt.Errorf("%w: signal %s on Windows", errUnsupported, name)
	}
	return p.Kill()
}
