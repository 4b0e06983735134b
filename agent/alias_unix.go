//go:build unix && !linux

package agent

import (
	"fmt"
	"os"
	"os/exec"
)

// aliasLoopback adds ips to the loopback interface, which the BSDs and
// Solaris need because only 127.0.0.1 is local there by default. It runs
// only as root, which the agent has only inside disposable guests.
func aliasLoopback(ips []string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root")
	}
	for _, ip := range ips {
		args := aliasArgs(ip)
		cmd := exec.Command(args[0], args[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", cmd, err, out)
		}
	}
	return nil
}
