//go:build !rump && !fstack

package agent

// Linux routes all of 127/8 to loopback, so aliases are needed only where lo
// holds 127.0.0.1/32 alone (a network namespace set up that way, as the
// alias test does); iproute2's ip then adds and removes them.
var aliasTool = []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}

func aliasArgs(ip string) []string   { return []string{"-4", "addr", "add", ip + "/32", "dev", "lo"} }
func unaliasArgs(ip string) []string { return []string{"-4", "addr", "del", ip + "/32", "dev", "lo"} }
