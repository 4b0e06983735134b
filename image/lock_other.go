//go:build !unix || solaris || illumos

package image

import (
	"context"
	"errors"
)

// lockFile is unsupported where there is no flock (Windows, Solaris); images are built with Debian's tools, which
// only run on Linux anyway.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	return nil, errors.New("image building needs a Unix host")
}
