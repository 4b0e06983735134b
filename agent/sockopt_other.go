//go:build unix && !linux && !freebsd && !darwin && !dragonfly && !netbsd && !openbsd && !illumos && !solaris

package agent

// osSockopt: on the remaining Unix systems only the common options are
// known.
func osSockopt(name string) (int, bool) { return 0, false }
