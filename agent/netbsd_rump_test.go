//go:build rump

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

// netbsdInclude is where package rump copied the NetBSD headers of the
// sources the libraries were built from (Libs.NetBSDInclude). go test ./rump
// -run TestAgentBackend builds the libraries and runs these tests with it
// set, as with the cgo flags they need to compile.
func netbsdInclude(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LAB_RUMP_DIR")
	if dir == "" {
		t.Fatal("LAB_RUMP_DIR is not set: run these tests with go test ./rump -run TestAgentBackend, which builds the libraries and sets it")
	}
	return filepath.Join(dir, "netbsd")
}

// defines reads the #define NAME VALUE lines of a header whose value is a
// number.
func defines(t *testing.T, header string) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(netbsdInclude(t), header))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	re := regexp.MustCompile(`(?m)^#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)\s+\(?(-?(?:0x[0-9a-fA-F]+|[0-9]+))\)?(?:\s|$)`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		v, err := strconv.ParseInt(m[2], 0, 64)
		if err == nil {
			out[m[1]] = v
		}
	}
	return out
}

func TestConstantsMatchNetBSDHeaders(t *testing.T) {
	for _, c := range []struct {
		header, name string
		value        int64
	}{
		{"sys/socket.h", "AF_INET", nbAF_INET},
		{"sys/socket.h", "AF_INET6", nbAF_INET6},
		{"sys/socket.h", "SOCK_STREAM", nbSOCK_STREAM},
		{"sys/socket.h", "SOCK_DGRAM", nbSOCK_DGRAM},
		{"sys/socket.h", "SOL_SOCKET", nbSOL_SOCKET},
		{"sys/socket.h", "SO_REUSEADDR", nbSO_REUSEADDR},
		{"sys/socket.h", "SO_REUSEPORT", nbSO_REUSEPORT},
		{"sys/socket.h", "SO_ERROR", nbSO_ERROR},
		{"sys/socket.h", "SO_LINGER", nbSO_LINGER},
		{"sys/socket.h", "MSG_NOSIGNAL", nbMSG_NOSIGNAL},
		{"netinet/in.h", "IPPROTO_IPV6", nbIPPROTO_IPV6},
		{"netinet6/in6.h", "IPV6_V6ONLY", nbIPV6_V6ONLY},
		{"sys/fcntl.h", "F_GETFL", nbF_GETFL},
		{"sys/fcntl.h", "F_SETFL", nbF_SETFL},
		{"sys/fcntl.h", "O_NONBLOCK", nbO_NONBLOCK},
		{"sys/poll.h", "POLLIN", nbPOLLIN},
		{"sys/poll.h", "POLLOUT", nbPOLLOUT},
		{"sys/sysctl.h", "CTL_QUERY", nbCTL_QUERY},
		{"sys/sysctl.h", "SYSCTL_VERS_1", nbSYSCTL_VERSION},
		{"sys/sysctl.h", "SYSCTL_NAMELEN", nbSYSCTL_NAMELEN},
		{"sys/errno.h", "EINTR", nbEINTR},
		{"sys/errno.h", "EAGAIN", nbEAGAIN},
		{"sys/errno.h", "EINPROGRESS", nbEINPROGRESS},
		{"sys/errno.h", "ENOPROTOOPT", nbENOPROTOOPT},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := defines(t, c.header)[c.name]
			if !ok {
				t.Fatalf("%s defines no %s", c.header, c.name)
			}
			if got != c.value {
				t.Errorf("%s: %s is %#x, the agent uses %#x", c.header, c.name, got, c.value)
			}
		})
	}
}

// TestErrnoNamesMatchHeader: every errno of sys/errno.h up to ELAST has its
// number and name in netbsdErrnoNames, and the table has nothing else.
func TestErrnoNamesMatchHeader(t *testing.T) {
	d := defines(t, "sys/errno.h")
	last := d["ELAST"]
	if last == 0 || int(last) != len(netbsdErrnoNames)-1 {
		t.Fatalf("ELAST is %d; the table goes to %d", last, len(netbsdErrnoNames)-1)
	}
	byNumber := map[int64]string{}
	for name, v := range d {
		if strings.HasPrefix(name, "E") && name != "ELAST" && v > 0 && v <= last {
			byNumber[v] = name
		}
	}
	for n := int64(1); n <= last; n++ {
		if got := netbsdErrnoNames[n]; got != byNumber[n] {
			t.Errorf("errno %d: the table says %q, sys/errno.h %q", n, got, byNumber[n])
		}
	}
}

// structFields lists the members of struct name in header, as "type name"
// with whitespace collapsed and comments dropped.
func structFields(t *testing.T, header, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(netbsdInclude(t), header))
	if err != nil {
		t.Fatal(err)
	}
	src := regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(string(b), "")
	m := regexp.MustCompile(`(?s)\nstruct\s+` + name + `\s*\{\n(.*?)\n\};`).FindStringSubmatch(src)
	if m == nil {
		t.Fatalf("%s declares no struct %s", header, name)
	}
	var out []string
	depth := 0
	for _, line := range strings.Split(m[1], "\n") {
		line = strings.Join(strings.Fields(line), " ")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// Members of nested unions count as one, by the union's name.
		if strings.HasSuffix(line, "{") {
			depth++
			continue
		}
		if strings.HasPrefix(line, "}") {
			depth--
			if depth == 0 {
				out = append(out, "union "+strings.TrimSuffix(strings.TrimPrefix(line, "} "), ";"))
			}
			continue
		}
		if depth == 0 {
			out = append(out, strings.TrimSuffix(line, ";"))
		}
	}
	return out
}

// TestStructLayouts checks the structs whose bytes the agent writes or reads
// itself against their declarations, field by field, and the typedefs that
// give their sizes.
func TestStructLayouts(t *testing.T) {
	for _, c := range []struct {
		header, name string
		want         []string
	}{
		// 1+1+2+4+8 = nbSizeofSockaddrIn
		{"netinet/in.h", "sockaddr_in", []string{"uint8_t sin_len", "sa_family_t sin_family", "in_port_t sin_port", "struct in_addr sin_addr", "__int8_t sin_zero[8]"}},
		// 1+1+2+4+16+4 = nbSizeofSockaddrIn6
		{"netinet6/in6.h", "sockaddr_in6", []string{"uint8_t sin6_len", "sa_family_t sin6_family", "in_port_t sin6_port", "uint32_t sin6_flowinfo", "struct in6_addr sin6_addr", "uint32_t sin6_scope_id"}},
		// the Go struct linger, nbSizeofLinger bytes
		{"sys/socket.h", "linger", []string{"int l_onoff", "int l_linger"}},
		// the Go struct pollfd
		{"sys/poll.h", "pollfd", []string{"int fd", "short events", "short revents"}},
		// 4+4+32+4+4 + 16 (union) + 4*8 (padded) = nbSizeofSysctlnode
		{"sys/sysctl.h", "sysctlnode", []string{"uint32_t sysctl_flags", "int32_t sysctl_num", "char sysctl_name[SYSCTL_NAMELEN]",
			"uint32_t sysctl_ver", "uint32_t __rsvd", "union sysctl_un", "__sysc_pad(size_t) _sysctl_size",
			"__sysc_pad(sysctlfn) _sysctl_func", "__sysc_pad(struct sysctlnode*) _sysctl_parent", "__sysc_pad(const char *) _sysctl_desc"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := structFields(t, c.header, c.name)
			if strings.Join(got, "; ") != strings.Join(c.want, "; ") {
				t.Errorf("struct %s in %s:\n got  %q\n want %q", c.name, c.header, got, c.want)
			}
		})
	}
	ansi, err := os.ReadFile(filepath.Join(netbsdInclude(t), "sys/ansi.h"))
	if err != nil {
		t.Fatal(err)
	}
	for _, typedef := range []string{`__uint8_t\s+__sa_family_t;`, `__uint16_t\s+__in_port_t;`} {
		if !regexp.MustCompile(`typedef\s+` + typedef).Match(ansi) {
			t.Errorf("sys/ansi.h lacks typedef %s", typedef)
		}
	}
	if unsafe.Sizeof(linger{}) != nbSizeofLinger || nbSizeofLinger != 4+4 {
		t.Errorf("struct linger is %d bytes here", unsafe.Sizeof(linger{}))
	}
	if nbSizeofSockaddrIn != 1+1+2+4+8 || nbSizeofSockaddrIn6 != 1+1+2+4+16+4 {
		t.Errorf("sockaddr sizes %d, %d", nbSizeofSockaddrIn, nbSizeofSockaddrIn6)
	}
}
