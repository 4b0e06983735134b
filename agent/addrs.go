package agent

import (
	"fmt"
	"net/netip"
	"strings"
)

// Fixed symbolic addresses; addr1 and addr2 are chosen per machine.
var fixedAddrs = map[string]string{
	"any":   "0.0.0.0",
	"any6":  "::",
	"loop":  "127.0.0.1",
	"loop6": "::1",
	"mcast": "239.255.42.42",
}

// chooseAddrs settles every symbolic address. addr1 and addr2 must be two
// distinct, non-wildcard local unicast addresses: 127.0.0.2 and 127.0.0.3
// where the loopback network holds them (Linux and Windows route all of
// 127/8 to loopback), else addresses this machine already has, so that
// scenarios never send traffic off the machine. override (from the request)
// wins. unalias removes the loopback aliases it added, if any; call it before
// the agent exits.
func chooseAddrs(override map[string]string) (addrs map[string]string, note string, unalias func() error) {
	addrs = map[string]string{}
	unalias = func() error { return nil }
	for k, v := range fixedAddrs {
		addrs[k] = v
	}
	var notes []string
	cands := []string{"127.0.0.2", "127.0.0.3"}
	if !bindable(cands[0]) || !bindable(cands[1]) {
		if added, remove, err := aliasLoopback(cands); err != nil {
			notes = append(notes, "127.0.0.2 and 127.0.0.3 are not local here and could not be added to loopback: "+err.Error())
			if local := localUnicast(); len(local) >= 2 {
				cands = local[:2]
				notes = append(notes, "using this machine's own addresses instead")
			} else {
				notes = append(notes, fmt.Sprintf("found only %d other local addresses; addr1/addr2 scenarios will fail with EADDRNOTAVAIL", len(local)))
			}
		} else {
			unalias = remove
			notes = append(notes, "added "+strings.Join(added, " and ")+" to the loopback interface for this run")
		}
	}
	addrs["addr1"], addrs["addr2"] = cands[0], cands[1]
	for k, v := range override {
		addrs[k] = v
	}
	return addrs, strings.Join(notes, "; "), unalias
}

// bindable reports whether a UDP socket can bind ip, i.e. ip is local.
func bindable(ip string) bool {
	t := newTable()
	defer t.closeAll()
	if t.open("b", false, "udp") != nil {
		return false
	}
	return t.bind("b", netip.AddrPortFrom(netip.MustParseAddr(ip), 0)) == nil
}
