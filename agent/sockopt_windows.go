package agent

import "golang.org/x/sys/windows"

// soExclusiveAddrUse is SO_EXCLUSIVEADDRUSE, defined by winsock2.h as
// ((int)(~SO_REUSEADDR)); x/sys/windows does not name it.
const soExclusiveAddrUse = ^windows.SO_REUSEADDR

// sockopt maps an option name to its level and number on Windows, which has
// no SO_REUSEPORT: its SO_REUSEADDR is the answer's "REUSEADDR plus
// REUSEPORT", and SO_EXCLUSIVEADDRUSE guards against port stealing.
func sockopt(name string, ip6 bool) (level, opt int, ok bool) {
	switch name {
	case "SO_REUSEADDR":
		return windows.SOL_SOCKET, windows.SO_REUSEADDR, true
	case "SO_EXCLUSIVEADDRUSE":
		return windows.SOL_SOCKET, soExclusiveAddrUse, true
	case "IPV6_V6ONLY":
		return windows.IPPROTO_IPV6, windows.IPV6_V6ONLY, true
	}
	return 0, 0, false
}
