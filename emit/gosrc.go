package emit

import (
	"fmt"
	"go/format"
	"strings"

	"lab/wire"
)

// optionNumbers holds the values of the options the syscall package does not
// define on every OS, by GOOS: the emitted Go file is for one target and
// imports nothing but the standard library.
var optionNumbers = map[string]map[string]int{
	"linux":     {"SO_REUSEPORT": 0xf},
	"freebsd":   {"SO_REUSEPORT": 0x200, "SO_REUSEPORT_LB": 0x10000},
	"darwin":    {"SO_REUSEPORT": 0x200},
	"openbsd":   {"SO_REUSEPORT": 0x200},
	"netbsd":    {"SO_REUSEPORT": 0x200},
	"dragonfly": {"SO_REUSEPORT": 0x200},
	"solaris":   {"SO_EXCLBIND": 0x1015},
	"illumos":   {"SO_EXCLBIND": 0x1015},
}

// Go returns a standalone Go program (standard library only, `go run`-able,
// for unix systems) that performs sc's steps with the ports and addresses of
// res on an OS goos and prints the trace Parse reads.
func Go(sc wire.Scenario, res *wire.Result, target, goos string) ([]byte, error) {
	p, err := newPlan(sc, res)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "// lab repro --emit go: scenario %s (%s), as measured on %s (%s).\n", p.id, p.proto, target, goos)
	b.WriteString("// Run: go run repro.go (or CGO_ENABLED=0 go build repro.go). Prints one line per step:\n")
	b.WriteString("// \"step N: <text>: ok\" or \"...: ERRNAME (number)\".\n\n")
	b.WriteString("//go:build unix\n\n")
	b.WriteString(goPrelude)
	if len(p.ports) > 0 {
		b.WriteString("\n// The ports the agent used; built with -ldflags=-X=main.freshPorts=1 the program picks free ones.\nvar (\n\tfreshPorts string\n")
		for _, sym := range p.ports {
			fmt.Fprintf(&b, "\tport_%s = %d\n", sym, p.portValue[sym])
		}
		b.WriteString(")\n")
	}
	b.WriteString("\nfunc main() {\n")
	if len(p.ports) > 0 {
		b.WriteString("\tif freshPorts != \"\" {\n")
		for _, sym := range p.ports {
			fmt.Fprintf(&b, "\t\tport_%s = freePort()\n", sym)
		}
		b.WriteString("\t}\n")
	}
	for _, s := range p.socks {
		fmt.Fprintf(&b, "\tvar %s int\n", ident(s))
	}
	if len(p.socks) > 0 {
		b.WriteString("\t_ = []int{")
		for i, s := range p.socks {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(ident(s))
		}
		b.WriteString("}\n")
	}
	b.WriteString("\tvar err error\n\t_ = err\n")
	typ := "syscall.SOCK_STREAM"
	if p.proto == "udp" {
		typ = "syscall.SOCK_DGRAM"
	}
	for _, o := range p.ops {
		s := ident(o.sock)
		text := fmt.Sprintf("%q", o.text)
		fmt.Fprintf(&b, "\n\t// step %d: %s\n", o.n, o.text)
		check := fmt.Sprintf("\tif err != nil {\n\t\tfail(%d, %s, err)\n\t\treturn\n\t}\n", o.n, text)
		switch o.verb {
		case wire.VerbSocket:
			fam := "syscall.AF_INET"
			if o.ip6 {
				fam = "syscall.AF_INET6"
			}
			fmt.Fprintf(&b, "\t%s, err = syscall.Socket(%s, %s, 0)\n%s", s, fam, typ, check)
			for _, opt := range o.opts {
				goSetopt(&b, o.n, text, s, opt, goos)
			}
		case wire.VerbSetopt:
			goSetopt(&b, o.n, text, s, o.opts[0], goos)
		case wire.VerbBind:
			fmt.Fprintf(&b, "\terr = syscall.Bind(%s, sockaddr(%q, %s))\n%s", s, o.addr, o.port, check)
		case wire.VerbConnect:
			fmt.Fprintf(&b, "\terr = syscall.Connect(%s, sockaddr(%q, %s))\n%s", s, o.addr, o.port, check)
		case wire.VerbListen:
			fmt.Fprintf(&b, "\terr = syscall.Listen(%s, 128)\n%s", s, check)
		case wire.VerbAccept:
			fmt.Fprintf(&b, "\t%s, err = acceptWait(%s)\n%s", ident(o.newSoc), s, check)
		case wire.VerbTimewait:
			b.WriteString("\t{\n\t\tvar tl, tc, ts int\n")
			fmt.Fprintf(&b, "\t\ttl, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)\n%s", check)
			for _, opt := range o.opts {
				goSetopt(&b, o.n, text, "tl", opt, goos)
			}
			fmt.Fprintf(&b, "\t\terr = syscall.Bind(tl, sockaddr(%q, %s))\n%s", o.addr, o.port, check)
			fmt.Fprintf(&b, "\t\terr = syscall.Listen(tl, 128)\n%s", check)
			fmt.Fprintf(&b, "\t\ttc, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)\n%s", check)
			fmt.Fprintf(&b, "\t\terr = syscall.Connect(tc, sockaddr(%q, %s))\n%s", o.dst, o.port, check)
			fmt.Fprintf(&b, "\t\tts, err = acceptWait(tl)\n%s", check)
			b.WriteString("\t\tsyscall.Close(tl)\n\t\tsyscall.Close(ts)\n")
			b.WriteString("\t\t// The client waits for the server's FIN, so the server closed first.\n")
			b.WriteString("\t\tbuf := make([]byte, 64)\n\t\tfor {\n\t\t\tif n, err := syscall.Read(tc, buf); n <= 0 && err != syscall.EINTR {\n\t\t\t\tbreak\n\t\t\t}\n\t\t}\n")
			b.WriteString("\t\tsyscall.Close(tc)\n\t\ttime.Sleep(10 * time.Millisecond) // the ACK that moves the server to TIME_WAIT is processed asynchronously\n\t}\n")
		case wire.VerbClose:
			fmt.Fprintf(&b, "\terr = syscall.Close(%s)\n%s", s, check)
		}
		fmt.Fprintf(&b, "\tok(%d, %s)\n", o.n, text)
	}
	b.WriteString("}\n")
	return format.Source([]byte(b.String()))
}

// goSetopt sets one option, "unsupported" where goos lacks it or the kernel
// refuses it with ENOPROTOOPT at SOL_SOCKET, as the agent says.
func goSetopt(b *strings.Builder, n int, text, s string, o wire.Option, goos string) {
	var level, name string
	switch o.Name {
	case "SO_REUSEADDR":
		level, name = "syscall.SOL_SOCKET", "syscall.SO_REUSEADDR"
	case "IPV6_V6ONLY":
		level, name = "syscall.IPPROTO_IPV6", "syscall.IPV6_V6ONLY"
	default:
		num, ok := optionNumbers[goos][o.Name]
		if !ok {
			fmt.Fprintf(b, "\tunsupported(%d, %s) // %s is not defined on %s\n\treturn\n", n, text, o.Name, goos)
			return
		}
		level, name = "syscall.SOL_SOCKET", fmt.Sprintf("%#x /* %s */", num, o.Name)
	}
	fmt.Fprintf(b, "\terr = syscall.SetsockoptInt(%s, %s, %s, %d)\n", s, level, name, o.Value)
	if level == "syscall.SOL_SOCKET" {
		fmt.Fprintf(b, "\tif err == syscall.ENOPROTOOPT {\n\t\tunsupported(%d, %s)\n\t\treturn\n\t}\n", n, text)
	}
	fmt.Fprintf(b, "\tif err != nil {\n\t\tfail(%d, %s, err)\n\t\treturn\n\t}\n", n, text)
}

// goPrelude is the package clause, imports and helpers of an emitted Go file.
const goPrelude = `package main

import (
	"fmt"
	"net/netip"
	"syscall"
	"time"
)

var _ = time.Millisecond

// errnoNames names an errno as lab's agent does.
var errnoNames = map[syscall.Errno]string{
	syscall.EADDRINUSE: "EADDRINUSE", syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL", syscall.EACCES: "EACCES",
	syscall.EPERM: "EPERM", syscall.EINVAL: "EINVAL", syscall.ECONNREFUSED: "ECONNREFUSED",
	syscall.EAGAIN: "EAGAIN", syscall.ENOPROTOOPT: "ENOPROTOOPT", syscall.EAFNOSUPPORT: "EAFNOSUPPORT",
	syscall.EOPNOTSUPP: "EOPNOTSUPP", syscall.EISCONN: "EISCONN", syscall.ENOTCONN: "ENOTCONN",
	syscall.ETIMEDOUT: "ETIMEDOUT", syscall.EBADF: "EBADF", syscall.ENOTSOCK: "ENOTSOCK",
	syscall.EPROTONOSUPPORT: "EPROTONOSUPPORT", syscall.ECONNRESET: "ECONNRESET", syscall.ENETUNREACH: "ENETUNREACH",
}

func ok(n int, text string) { fmt.Printf("step %d: %s: ok\n", n, text) }

func unsupported(n int, text string) { fmt.Printf("step %d: %s: unsupported\n", n, text) }

func fail(n int, text string, err error) {
	e, _ := err.(syscall.Errno)
	name, found := errnoNames[e]
	if !found {
		name = fmt.Sprintf("errno%d", int(e))
	}
	fmt.Printf("step %d: %s: %s (%d)\n", n, text, name, int(e))
}

// sockaddr is addr:port; the address, not the socket, decides the family,
// so an IPv6 address on an IPv4 socket is the kernel's to refuse.
func sockaddr(addr string, port int) syscall.Sockaddr {
	ip := netip.MustParseAddr(addr)
	if ip.Is4() {
		return &syscall.SockaddrInet4{Port: port, Addr: ip.As4()}
	}
	return &syscall.SockaddrInet6{Port: port, Addr: ip.As16()}
}

// freePort asks the kernel for a free TCP port on the wildcard address.
func freePort() int {
	fd, _ := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	defer syscall.Close(fd)
	syscall.Bind(fd, &syscall.SockaddrInet4{})
	sa, _ := syscall.Getsockname(fd)
	if sa, ok := sa.(*syscall.SockaddrInet4); ok {
		return sa.Port
	}
	return 0
}

// acceptWait accepts a pending connection, waiting 500 ms as the agent
// does; none yields EAGAIN.
func acceptWait(fd int) (int, error) {
	tv := syscall.Timeval{Usec: 500000}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return -1, err
	}
	for {
		nfd, _, err := syscall.Accept(fd)
		if err != syscall.EINTR {
			return nfd, err
		}
	}
}
`
