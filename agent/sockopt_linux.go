//go:build !rump && !fstack

package agent

import "golang.org/x/sys/unix"

// osSockopt: Linux has SO_REUSEPORT since 3.9; older kernels refuse it with
// ENOPROTOOPT, which sysSetopt reports as unsupported.
func osSockopt(name string) (int, bool) {
	if name == "SO_REUSEPORT" {
		return unix.SO_REUSEPORT, true
	}
	return 0, false
}
