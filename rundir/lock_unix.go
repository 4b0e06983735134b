//go:build unix && !solaris && !illumos

package rundir

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockWriter takes an exclusive flock on a journal for as long as f is open:
// the kernel drops it when lab exits, however it exits, so a reader that
// finds the journal unlocked knows no lab writes it any more.
func lockWriter(f *os.File) error {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%s: another lab writes it", f.Name())
		}
		return fmt.Errorf("locking %s: %w", f.Name(), os.NewSyscallError("flock", err))
	}
	return nil
}

// writerAlive reports whether a lab holds the journal open for writing.
func writerAlive(f *os.File) bool {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false
	}
	return errors.Is(err, syscall.EWOULDBLOCK)
}

// syncDir makes the names in dir durable: a file created, renamed or
// removed there.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
