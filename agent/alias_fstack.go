//go:build fstack

package agent

/*
#include <ff_api.h>
*/
import "C"

import (
	"fmt"
	"net/netip"
	"unsafe"
)

// aliasLoopback adds each of ips to F-Stack's lo0 as a /32, as FreeBSD's
// ifconfig lo0 alias does: SIOCAIFADDR with a struct ifaliasreq in
// FreeBSD's layout (sockaddrs with sin_len) on an AF_INET datagram socket.
// lo0 starts with 127.0.0.1/8 only. The aliases live in this process's
// stack and go with it: remove has nothing to do.
func aliasLoopback(ips []string) (added []string, remove func() error, err error) {
	if err := addAliases(ips); err != nil {
		return nil, nil, err
	}
	return ips, func() error { return nil }, nil
}

func addAliases(ips []string) error {
	var reqs [][fbIfaliasreqSize]byte
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			return fmt.Errorf("alias %q: not an IPv4 address", ip)
		}
		reqs = append(reqs, ifaliasreq("lo0", a, netip.MustParseAddr("255.255.255.255")))
	}
	var callErr error
	err := onLoop(func() {
		s, err := C.ff_socket(C.AF_INET, C.SOCK_DGRAM, 0)
		if s < 0 {
			callErr = ffError("socket", err)
			return
		}
		defer C.ff_close(s)
		for i := range reqs {
			if r, err := ffIoctl(s, fbSIOCAIFADDR, unsafe.Pointer(&reqs[i][0])); r < 0 {
				callErr = fmt.Errorf("adding %s to lo0: %w", ips[i], ffError("ioctl(SIOCAIFADDR)", err))
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return callErr
}

// ifaliasreq lays out FreeBSD's struct ifaliasreq: the interface name, the
// address, no broadcast address (sin_len 0: none), the mask, vhid 0.
func ifaliasreq(ifname string, addr, mask netip.Addr) [fbIfaliasreqSize]byte {
	var b [fbIfaliasreqSize]byte
	copy(b[:fbIFNameSize-1], ifname)
	putSockaddrIn(b[fbIFNameSize:], addr)
	putSockaddrIn(b[fbIFNameSize+2*fbSockaddrInSize:], mask)
	return b
}

// putSockaddrIn writes FreeBSD's struct sockaddr_in for addr, port 0.
func putSockaddrIn(b []byte, addr netip.Addr) {
	b[0] = fbSockaddrInSize // sin_len
	b[1] = fbAFInet         // sin_family
	a := addr.As4()
	copy(b[4:8], a[:]) // after sin_port
}
