//go:build unix && !solaris && !illumos

// Package flock queues processes on a lock file, so that two builds of one
// image wait for each other instead of both doing the work.
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Lock takes an exclusive flock on path, creating it if needed, and waits for it until ctx
// ends. apt refuses to run twice on one state dir rather than waiting, and two builds of one image
// would duplicate work, so concurrent builders queue here instead. The lock dies with the process,
// so a killed build never leaves it held.
func Lock(ctx context.Context, path string) (unlock func(), err error) {
	return lock(ctx, path, syscall.LOCK_EX)
}

// LockShared takes a shared flock on path, as Lock does an exclusive one:
// any number of holders at once, none while someone holds it exclusively.
func LockShared(ctx context.Context, path string) (unlock func(), err error) {
	return lock(ctx, path, syscall.LOCK_SH)
}

func lock(ctx context.Context, path string, how int) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		ok, err := try(f, how)
		if ok {
			return func() { f.Close() }, nil
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TryLock takes an exclusive flock on path, creating it if needed, without
// waiting: ok is false when another process holds it.
func TryLock(path string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	ok, err = try(f, syscall.LOCK_EX)
	if !ok {
		f.Close()
		return nil, false, err
	}
	return func() { f.Close() }, true, nil
}

// try makes one attempt at the lock on f; ok is false when another process
// holds it (or a signal cut the attempt short: the caller may try again).
func try(f *os.File, how int) (ok bool, err error) {
	switch err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EWOULDBLOCK), errors.Is(err, syscall.EINTR):
		return false, nil
	default:
		return false, fmt.Errorf("lock %s: %w", f.Name(), os.NewSyscallError("flock", err))
	}
}
