//go:build fstack

package agent

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// HeadersEnv names the directory of FreeBSD headers from the F-Stack tree
// the library was built from (fstack.Lib.FreeBSD), which package fstack's
// tests set when they run these.
const headersEnv = "LAB_FSTACK_HEADERS"

func freebsdHeaders(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(headersEnv)
	if dir == "" {
		t.Skip(headersEnv + " is not set: go test ./fstack builds the library and runs this test with it")
	}
	return dir
}

func readHeader(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	// Comments would otherwise be read as values.
	s := regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(string(b), " ")
	return strings.ReplaceAll(s, "\\\n", " ") // continued lines
}

// define returns the value a header #defines name as, or "".
func define(hdr, name string) string {
	m := regexp.MustCompile(`(?m)^#define[ \t]+` + regexp.QuoteMeta(name) + `[ \t]+(.+?)[ \t]*$`).FindStringSubmatch(hdr)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestFreeBSDConstants checks every FreeBSD value the backend uses against
// the FreeBSD headers in the F-Stack tree, and the errno table against
// sys/errno.h entry by entry.
func TestFreeBSDConstants(t *testing.T) {
	dir := freebsdHeaders(t)
	// Sizes of the types ioctls pass, from their definitions (checked
	// below): int, and struct ifaliasreq.
	sizes := map[string]int{"int": 4, "struct ifaliasreq": fbIfaliasreqSize}
	ioc := regexp.MustCompile(`^_IOW\('(.)',\s*(\d+),\s*([^)]+)\)$`)
	value := func(t *testing.T, hdr, name string) int {
		t.Helper()
		v := define(hdr, name)
		if v == "" {
			t.Fatalf("%s is not #defined", name)
		}
		if m := ioc.FindStringSubmatch(v); m != nil {
			num, _ := strconv.Atoi(m[2])
			size, ok := sizes[strings.TrimSpace(m[3])]
			if !ok {
				t.Fatalf("%s: no size known for %q", name, m[3])
			}
			// _IOC(IOC_IN, g, n, sizeof(t)) in sys/ioccom.h
			return 0x80000000 | (size&(1<<13-1))<<16 | int(m[1][0])<<8 | num
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(v, "UL"), 0, 64)
		if err != nil {
			t.Fatalf("%s is #defined as %q, not a number", name, v)
		}
		return int(n)
	}
	for _, c := range []struct {
		header, name string
		got          int
	}{
		{"sys/socket.h", "SOL_SOCKET", fbSolSocket},
		{"sys/socket.h", "SO_REUSEADDR", fbSoReuseAddr},
		{"sys/socket.h", "SO_REUSEPORT", fbSoReusePort},
		{"sys/socket.h", "SO_REUSEPORT_LB", fbSoReusePortLB},
		{"sys/socket.h", "SO_ERROR", fbSoError},
		{"sys/socket.h", "SO_LINGER", fbSoLinger},
		{"sys/socket.h", "MSG_NOSIGNAL", fbMsgNoSignal},
		{"sys/sysctl.h", "CTL_SYSCTL", fbCtlSysctl},
		{"sys/sysctl.h", "CTL_SYSCTL_NAME2OID", fbCtlSysctlName2OID},
		{"sys/sysctl.h", "CTL_MAXNAME", fbCtlMaxName},
		{"sys/socket.h", "AF_INET", fbAFInet},
		{"sys/socket.h", "AF_INET6", fbAFInet6},
		{"netinet/in.h", "IPPROTO_IPV6", fbIPProtoIPv6},
		{"netinet/in.h", "IPPORT_RESERVED", fbIPPortReserved},
		{"netinet6/in6.h", "IPV6_V6ONLY", fbIPv6V6Only},
		{"net/if.h", "IF_NAMESIZE", fbIFNameSize},
		{"sys/poll.h", "POLLIN", fbPollIn},
		{"sys/poll.h", "POLLOUT", fbPollOut},
		{"sys/filio.h", "FIONBIO", fbFIONBIO},
		{"sys/sockio.h", "SIOCAIFADDR", fbSIOCAIFADDR},
		{"sys/param.h", "__FreeBSD_version", fbFreeBSDVersion},
	} {
		t.Run(c.name, func(t *testing.T) {
			if want := value(t, readHeader(t, dir, c.header), c.name); c.got != want {
				t.Errorf("%s is %#x here, %#x in %s", c.name, c.got, want, c.header)
			}
		})
	}
	t.Run("ioctl encoding", func(t *testing.T) {
		hdr := readHeader(t, dir, "sys/ioccom.h")
		if v := define(hdr, "IOC_IN"); v != "0x80000000UL" {
			t.Errorf("IOC_IN is %q", v)
		}
		if v := define(hdr, "IOCPARM_SHIFT"); v != "13" {
			t.Errorf("IOCPARM_SHIFT is %q", v)
		}
		if v := strings.Join(strings.Fields(define(hdr, "_IOW(g,n,t)")), " "); v != "_IOC(IOC_IN, (g), (n), sizeof(t))" {
			t.Errorf("_IOW is %q", v)
		}
		// value() computes IOC_IN | (size & IOCPARM_MASK) << 16 | group << 8 | num.
		ioc := strings.Join(strings.Fields(define(hdr, "_IOC(inout,group,num,len)")), " ")
		if ioc != "((unsigned long) ((inout) | (((len) & IOCPARM_MASK) << 16) | ((group) << 8) | (num)))" {
			t.Errorf("_IOC is %q", ioc)
		}
	})
	t.Run("struct layouts", func(t *testing.T) {
		for _, s := range []struct{ header, name, fields string }{
			{"net/if.h", "ifaliasreq", "char ifra_name[IFNAMSIZ]; struct sockaddr ifra_addr; struct sockaddr ifra_broadaddr; struct sockaddr ifra_mask; int ifra_vhid;"},
			{"sys/socket.h", "sockaddr", "unsigned char sa_len; sa_family_t sa_family; char sa_data[14];"},
			{"netinet/in.h", "sockaddr_in", "uint8_t sin_len; sa_family_t sin_family; in_port_t sin_port; struct in_addr sin_addr; char sin_zero[8];"},
			{"sys/socket.h", "linger", "int l_onoff; int l_linger;"},
		} {
			hdr := readHeader(t, dir, s.header)
			m := regexp.MustCompile(`(?s)\nstruct\s+` + s.name + `\s*\{(.*?)\};`).FindStringSubmatch(hdr)
			if m == nil {
				t.Errorf("%s: no struct %s", s.header, s.name)
				continue
			}
			if got := strings.Join(strings.Fields(m[1]), " "); got != s.fields {
				t.Errorf("struct %s in %s is {%s}; the backend lays out {%s}", s.name, s.header, got, s.fields)
			}
		}
		// The sizes the layouts give: sockaddr and sockaddr_in 1+1+14 and
		// 1+1+2+4+8 bytes, ifaliasreq IFNAMSIZ + 3 sockaddrs + an int.
		if unsafe.Sizeof(fbLinger{}) != fbSizeofLinger || fbSizeofLinger != 4+4 {
			t.Errorf("struct linger is %d bytes here", unsafe.Sizeof(fbLinger{}))
		}
		if fbSockaddrInSize != 16 || fbIfaliasreqSize != 16+3*16+4 {
			t.Errorf("sizes %d, %d", fbSockaddrInSize, fbIfaliasreqSize)
		}
	})
	t.Run("errno", func(t *testing.T) {
		hdr := readHeader(t, dir, "sys/errno.h")
		defined := map[string]int{}
		for _, m := range regexp.MustCompile(`(?m)^#define[ \t]+(E[A-Z0-9]+)[ \t]+(\d+)`).FindAllStringSubmatch(hdr, -1) {
			n, _ := strconv.Atoi(m[2])
			if m[1] != "ELAST" {
				defined[m[1]] = n
			}
		}
		if len(defined) < 90 {
			t.Fatalf("found only %d errno values in sys/errno.h", len(defined))
		}
		for name, n := range defined {
			if got, ok := fbErrno[name]; !ok || got != n {
				t.Errorf("%s is %d in sys/errno.h, %d (%v) here", name, n, got, ok)
			}
		}
		for name := range fbErrno {
			if _, ok := defined[name]; !ok {
				t.Errorf("%s is not in sys/errno.h", name)
			}
		}
		for alias, name := range fbErrnoAlias {
			if v := define(hdr, alias); v != name {
				t.Errorf("sys/errno.h defines %s as %q, the backend as %s", alias, v, name)
			}
		}
	})
}
