//go:build fstack

package agent

// sockopt maps an option name to FreeBSD's level and number, which
// ff_setsockopt_freebsd takes as they are. FreeBSD has SO_REUSEPORT and,
// since 12, SO_REUSEPORT_LB (SO_REUSEPORT with load balancing across the
// group, in_pcblbgroup in in_pcb.c); it has none of the exclusive-binding
// options of Windows and Solaris.
func sockopt(name string, ip6 bool) (level, opt int, ok bool) {
	switch name {
	case "SO_REUSEADDR":
		return fbSolSocket, fbSoReuseAddr, true
	case "SO_REUSEPORT":
		return fbSolSocket, fbSoReusePort, true
	case "SO_REUSEPORT_LB":
		return fbSolSocket, fbSoReusePortLB, true
	case "IPV6_V6ONLY":
		return fbIPProtoIPv6, fbIPv6V6Only, true
	}
	return 0, 0, false
}
