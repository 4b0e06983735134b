//go:build !unix || solaris || illumos

package flock

import (
	"context"
	"errors"
)

// Lock is unsupported where there is no flock (Windows, Solaris); lab builds
// images with Debian's tools, which only run on Linux.
func Lock(ctx context.Context, path string) (unlock func(), err error) {
	return nil, errors.New("building images needs a Linux host")
}

// LockShared is unsupported where Lock is.
func LockShared(ctx context.Context, path string) (unlock func(), err error) {
	return nil, errors.New("building images needs a Linux host")
}

// TryLock is unsupported where Lock is.
func TryLock(path string) (unlock func(), ok bool, err error) {
	return nil, false, errors.New("building images needs a Linux host")
}
