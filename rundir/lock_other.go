//go:build !unix || solaris || illumos

package rundir

import "os"

// lockWriter does nothing where there is no flock: a reader cannot tell a
// live journal from a dead one there, and says so.
func lockWriter(f *os.File) error { return nil }

// writerAlive cannot know without flock; it answers no.
func writerAlive(f *os.File) bool { return false }

// syncDir does nothing where a directory cannot be opened for fsync
// (Windows); a rename there is durable by the file system's own journal.
func syncDir(dir string) error { return nil }
