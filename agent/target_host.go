//go:build !rump && !fstack

package agent

import (
	"runtime"

	"lab/wire"
)

// kernelOS is the OS whose kernel the agent's calls reach: the one it runs
// on. A backend that runs another kernel's code in user space (build tag
// fstack) names that kernel's OS instead.
func kernelOS() string { return runtime.GOOS }

// notMeasurable says why a scenario cannot be measured here, "" when it
// can: on a real kernel every scenario can (user=other has its own check).
func notMeasurable(wire.Scenario) string { return "" }
