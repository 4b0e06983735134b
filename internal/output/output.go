// Package output trims what commands print for error messages.
package output

import "strings"

// Tail is the last n non-blank lines of s, each without surrounding
// space: the part of a failed command's output worth quoting in an error.
func Tail(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
