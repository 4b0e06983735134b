// Package shell writes commands for a POSIX shell on another machine.
package shell

import "strings"

// Quote quotes s as one word for a POSIX shell.
func Quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
