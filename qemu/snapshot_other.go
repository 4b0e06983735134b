//go:build !linux

package qemu

import (
	"context"
	"errors"
)

// snapshotsSupported is false: snapshots use Linux's O_TMPFILE, SEEK_DATA and /proc/self/fd.
const snapshotsSupported = false

func startSnapshotted(context.Context, *runner) (*VM, error) {
	return nil, errors.New("snapshots need a Linux host")
}
