//go:build !unix

package image

import "io/fs"

// diskUsage is the file's size where the block count is not known.
func diskUsage(info fs.FileInfo) int64 { return info.Size() }
