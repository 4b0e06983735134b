//go:build !fstack

package agent

import "lab/wire"

// notMeasurable says why a scenario cannot be measured here, "" when it
// can. A kernel that checks privileges can measure every scenario
// (user=other has its own check); F-Stack, which grants every privilege,
// cannot (env_fstack.go).
func notMeasurable(wire.Scenario) string { return "" }
