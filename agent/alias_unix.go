//go:build unix && !rump && !fstack

package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// aliasLoopback adds those of ips that are not local to the loopback
// interface, which the BSDs and Solaris need because only 127.0.0.1 is local
// there by default, and returns a function that removes exactly the ones it
// added (also listed in added): on a host lab does not own (the ssh provider)
// nothing may stay. It runs only as root. If one cannot be added, those added
// are removed again.
func aliasLoopback(ips []string) (added []string, remove func() error, err error) {
	if os.Geteuid() != 0 {
		return nil, nil, errors.New("not root")
	}
	tool := ""
	for _, p := range aliasTool {
		if _, err := os.Stat(p); err == nil {
			tool = p
			break
		}
	}
	if tool == "" {
		return nil, nil, fmt.Errorf("none of %s found", strings.Join(aliasTool, ", "))
	}
	remove = func() error {
		var errs []error
		for i := len(added) - 1; i >= 0; i-- {
			errs = append(errs, runTool(tool, unaliasArgs(added[i])))
		}
		added = nil
		return errors.Join(errs...)
	}
	for _, ip := range ips {
		if bindable(ip) {
			continue
		}
		if err := runTool(tool, aliasArgs(ip)); err != nil {
			return nil, nil, errors.Join(err, remove())
		}
		added = append(added, ip)
	}
	return append([]string(nil), added...), remove, nil
}

func runTool(tool string, args []string) error {
	cmd := exec.Command(tool, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", cmd, err, strings.TrimSpace(string(out)))
	}
	return nil
}
