//go:build fstack

package main

import (
	"os"

	"lab/agent"
)

// With build tag fstack the agent measures FreeBSD's stack in F-Stack,
// which must run in a process of its own that a supervisor cleans up after
// (see agent.Supervise). init makes this binary the supervisor when it is
// started, and lets main run the scenarios when the supervisor starts it
// again as the F-Stack process.
func init() {
	if agent.IsFStackChild() || len(os.Args) > 1 {
		return // the F-Stack process, or flags main handles
	}
	os.Exit(agent.Supervise(os.Stdin, os.Stdout, os.Stderr))
}
