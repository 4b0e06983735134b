//go:build !rump && !fstack

package agent

import "errors"

// aliasLoopback is never needed on Linux, whose loopback holds all of 127/8.
func aliasLoopback(ips []string) error {
	return errors.New("127/8 should be local on Linux; is the loopback interface down?")
}
