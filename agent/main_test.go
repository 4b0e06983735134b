//go:build !rump && !fstack

package agent

import (
	"fmt"
	"os"
	"testing"
)

// TestMain lets the test binary serve as the agent's helper process: a
// scenario with proc= sockets re-executes the running binary with
// HelperFlag, which under go test is this one.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == HelperFlag {
		if err := ServeHelper(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
