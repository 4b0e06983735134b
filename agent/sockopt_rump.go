//go:build rump

package agent

// sockopt maps an option name to its level and number in NetBSD's headers
// (netbsd_rump.go); ok is false for the options NetBSD does not define
// (SO_REUSEPORT_LB is FreeBSD's, SO_EXCLUSIVEADDRUSE Windows', SO_EXCLBIND
// Solaris').
func sockopt(name string, ip6 bool) (level, opt int, ok bool) {
	switch name {
	case "SO_REUSEADDR":
		return nbSOL_SOCKET, nbSO_REUSEADDR, true
	case "SO_REUSEPORT":
		return nbSOL_SOCKET, nbSO_REUSEPORT, true
	case "IPV6_V6ONLY":
		return nbIPPROTO_IPV6, nbIPV6_V6ONLY, true
	}
	return 0, 0, false
}
