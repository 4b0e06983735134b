//go:build darwin || dragonfly || netbsd || openbsd

package agent

import "golang.org/x/sys/unix"

// osSockopt: the BSDs that descend from 4.4BSD have SO_REUSEPORT and none of
// the exclusive-binding options.
func osSockopt(name string) (int, bool) {
	if name == "SO_REUSEPORT" {
		return unix.SO_REUSEPORT, true
	}
	return 0, false
}
