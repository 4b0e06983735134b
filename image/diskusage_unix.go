//go:build unix

package image

import (
	"io/fs"
	"syscall"
)

// diskUsage is what the file takes on disk when it is sparse (a snapshot's RAM file), else
// its size: a small file a file system keeps inline has no blocks but still takes room.
func diskUsage(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Blocks > 0 && int64(st.Blocks)*512 < info.Size() {
		return int64(st.Blocks) * 512
	}
	return info.Size()
}
