package target

import (
	"bytes"
	"fmt"
	"os"
)

// processHasArg reports whether process pid runs with arg on its command
// line, which /proc tells on Linux.
func processHasArg(pid int, arg string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for _, a := range bytes.Split(b, []byte{0}) {
		if string(a) == arg {
			return true
		}
	}
	return false
}
