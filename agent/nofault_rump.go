//go:build rump && !rumpfault

package agent

import "net/netip"

// faultBind does nothing outside the fault-test build (fault_rump.go).
func faultBind(netip.AddrPort) {}
