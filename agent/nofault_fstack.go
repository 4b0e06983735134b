//go:build fstack && !fstackfault

package agent

import "net/netip"

// injectFault does nothing outside the fault tests' build (fault_fstack.go).
func injectFault(netip.AddrPort) {}
