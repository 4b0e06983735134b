//go:build unix && !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd && !illumos && !solaris

package agent

import "errors"

// sysEphemeralPorts: lab knows no way to read the range on this system.
func sysEphemeralPorts() (lo, hi int, err error) {
	return 0, 0, errors.New("reading the ephemeral port range is not implemented on this OS")
}
