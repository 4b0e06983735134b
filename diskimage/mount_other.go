//go:build !linux

package diskimage

// unmountUnder has nothing to do where images are not built: mmdebstrap,
// which mounts in the chroot, runs only on Linux.
func unmountUnder(dir string) error { return nil }
