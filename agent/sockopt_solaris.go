//go:build illumos || solaris

package agent

import "golang.org/x/sys/unix"

// osSockopt: Solaris and illumos have SO_EXCLBIND, which makes a binding
// immune to another socket's SO_REUSEADDR. x/sys/unix defines no
// SO_REUSEPORT for them, so it is reported as unsupported.
func osSockopt(name string) (int, bool) {
	if name == "SO_EXCLBIND" {
		return unix.SO_EXCLBIND, true
	}
	return 0, false
}
