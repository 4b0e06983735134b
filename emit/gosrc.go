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
	b.WriteString("// Run: go run repro.go (or CGO_ENABLED=0 go build repro.go). Prints the trace lab repro\n")
	b.WriteString("// prints: per step \"step N: <text>: ok\" or \"...: ERRNAME (number)\", then the call with\n")
	b.WriteString("// its arguments, what it returned and how long the step took.\n\n")
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
	values, args := p.values(res)
	fmt.Fprintf(&b, "\tfmt.Printf(%q%s)\n", values+"\n", strings.Join(args, ""))
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
	b.WriteString("\tvar err error\n\tvar call string\n\t_, _ = err, call\n")
	typ := "syscall.SOCK_STREAM"
	if p.proto == "udp" {
		typ = "syscall.SOCK_DGRAM"
	}
	for _, o := range p.ops {
		s := ident(o.sock)
		fmt.Fprintf(&b, "\n\t// step %d: %s\n", o.n, o.text)
		family := familyName(o.ip6)
		if o.verb == wire.VerbTimewait {
			family = "" // the agent records no family, options or return value for it
		}
		fmt.Fprintf(&b, "\tstep(%d, %q, %q, %q)\n", o.n, o.text, family, o.optionFields())
		check := func(call string) string {
			return fmt.Sprintf("\tif err != nil {\n\t\tfail(%s, err)\n\t\treturn\n\t}\n", call)
		}
		switch o.verb {
		case wire.VerbSocket:
			fam := "syscall.AF_INET"
			if o.ip6 {
				fam = "syscall.AF_INET6"
			}
			call := fmt.Sprintf("socket(%s, %s)", familyName(o.ip6), p.proto)
			fmt.Fprintf(&b, "\t%s, err = syscall.Socket(%s, %s, 0)\n%s", s, fam, typ, check(fmt.Sprintf("%q", call)))
			for _, opt := range o.opts {
				call += "; " + optCall(opt)
				goSetopt(&b, s, opt, goos, fmt.Sprintf("%q", call))
			}
			fmt.Fprintf(&b, "\tok(%q, %s)\n", call, s)
		case wire.VerbSetopt:
			call := fmt.Sprintf("%q", optCall(o.opts[0]))
			goSetopt(&b, s, o.opts[0], goos, call)
			fmt.Fprintf(&b, "\tok(%s, 0)\n", call)
		case wire.VerbBind, wire.VerbConnect:
			fmt.Fprintf(&b, "\tcall = fmt.Sprintf(%q, %s)\n", o.verb+"("+cFormat(o.addrColon())+"%d)", o.port)
			fmt.Fprintf(&b, "\terr = syscall.%s(%s, sockaddr(%q, %s))\n%s", strings.ToUpper(o.verb[:1])+o.verb[1:], s, o.addr, o.port, check("call"))
			b.WriteString("\tok(call, 0)\n")
		case wire.VerbListen:
			fmt.Fprintf(&b, "\terr = syscall.Listen(%s, 128)\n%s\tok(\"listen()\", 0)\n", s, check(`"listen()"`))
		case wire.VerbAccept:
			fmt.Fprintf(&b, "\t%s, err = acceptWait(%s)\n%s\tok(\"accept()\", %s)\n", ident(o.newSoc), s, check(`"accept()"`), ident(o.newSoc))
		case wire.VerbTimewait:
			goTimewait(&b, o, goos)
		case wire.VerbClose:
			fmt.Fprintf(&b, "\terr = syscall.Close(%s)\n%s\tok(\"close()\", 0)\n", s, check(`"close()"`))
		}
	}
	b.WriteString("}\n")
	return format.Source([]byte(b.String()))
}

// goTimewait is cTimewait in Go.
func goTimewait(b *strings.Builder, o op, goos string) {
	// failIf checks err after a call of the list, given as a format and
	// its arguments.
	failIf := func(format string, args ...string) {
		c := fmt.Sprintf("%q", format) + strings.Join(args, "")
		fmt.Fprintf(b, "\t\tif err != nil {\n\t\t\ttwFail(err, %s)\n\t\t\treturn\n\t\t}\n\t\ttw(0, %s)\n", c, c)
	}
	port := ", " + o.port
	b.WriteString("\t{\n\t\tvar tl, tc, ts, n int\n")
	fmt.Fprintf(b, "\t\ttwBegin(%q%s)\n", "timewait("+cFormat(o.addrColon())+"%d)", port)
	b.WriteString("\t\ttl, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)\n")
	b.WriteString("\t\tif err != nil {\n\t\t\ttwFail(err, \"socket(inet, tcp)\")\n\t\t\treturn\n\t\t}\n\t\ttw(tl, \"socket(inet, tcp)\")\n")
	for _, opt := range o.opts {
		format := fmt.Sprintf("setsockopt(%%d, %s=%d)", opt.Name, opt.Value)
		level, name, ok := goOption(opt.Name, goos)
		if !ok {
			fmt.Fprintf(b, "\t\ttwUnsupported(%q, tl) // %s is not defined on %s\n\t\treturn\n", format, opt.Name, goos)
			continue
		}
		fmt.Fprintf(b, "\t\terr = syscall.SetsockoptInt(tl, %s, %s, %d)\n", level, name, opt.Value)
		if level == "syscall.SOL_SOCKET" {
			fmt.Fprintf(b, "\t\tif err == syscall.ENOPROTOOPT {\n\t\t\ttwUnsupported(%q, tl)\n\t\t\treturn\n\t\t}\n", format)
		}
		failIf(format, ", tl")
	}
	fmt.Fprintf(b, "\t\terr = syscall.Bind(tl, sockaddr(%q%s))\n", o.addr, port)
	failIf("bind(%d, "+cFormat(o.addrColon())+"%d)", ", tl", port)
	b.WriteString("\t\terr = syscall.Listen(tl, 128)\n")
	failIf("listen(%d)", ", tl")
	b.WriteString("\t\ttc, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)\n")
	b.WriteString("\t\tif err != nil {\n\t\t\ttwFail(err, \"socket(inet, tcp)\")\n\t\t\treturn\n\t\t}\n\t\ttw(tc, \"socket(inet, tcp)\")\n")
	fmt.Fprintf(b, "\t\terr = syscall.Connect(tc, sockaddr(%q%s))\n", o.dst, port)
	failIf("connect(%d, "+cFormat(o.dst)+":%d)", ", tc", port)
	b.WriteString("\t\tts, err = acceptWait(tl)\n")
	b.WriteString("\t\tif err != nil {\n\t\t\ttwFail(err, \"accept(%d)\", tl)\n\t\t\treturn\n\t\t}\n\t\ttw(ts, \"accept(%d)\", tl)\n")
	b.WriteString("\t\terr = syscall.Close(tl)\n")
	failIf("close(%d)", ", tl")
	b.WriteString("\t\terr = syscall.Close(ts)\n")
	failIf("close(%d)", ", ts")
	b.WriteString("\t\t// The client waits for the server's FIN: the read that sees it returns 0.\n")
	b.WriteString("\t\tbuf := make([]byte, 64)\n\t\tfor {\n\t\t\tn, err = syscall.Read(tc, buf)\n")
	b.WriteString("\t\t\tif n == 0 || err != nil && err != syscall.EINTR {\n\t\t\t\tbreak\n\t\t\t}\n\t\t}\n")
	failIf("read(%d)", ", tc")
	b.WriteString("\t\terr = syscall.Close(tc)\n")
	failIf("close(%d)", ", tc")
	b.WriteString("\t\ttime.Sleep(10 * time.Millisecond) // the ACK that moves the server to TIME_WAIT is processed asynchronously\n")
	b.WriteString("\t\tok(twCalls(), 0)\n\t}\n")
}

// goOption is an option's level and name in an emitted Go file for goos;
// false where goos does not define it.
func goOption(opt, goos string) (level, name string, ok bool) {
	switch opt {
	case "SO_REUSEADDR":
		return "syscall.SOL_SOCKET", "syscall.SO_REUSEADDR", true
	case "IPV6_V6ONLY":
		return "syscall.IPPROTO_IPV6", "syscall.IPV6_V6ONLY", true
	}
	num, ok := optionNumbers[goos][opt]
	if !ok {
		return "", "", false
	}
	return "syscall.SOL_SOCKET", fmt.Sprintf("%#x /* %s */", num, opt), true
}

// goSetopt sets one option, call being the step's call up to it;
// "unsupported" where goos lacks it or the kernel refuses it with
// ENOPROTOOPT at SOL_SOCKET, as the agent says.
func goSetopt(b *strings.Builder, s string, o wire.Option, goos, call string) {
	level, name, ok := goOption(o.Name, goos)
	if !ok {
		fmt.Fprintf(b, "\tunsupported(%s) // %s is not defined on %s\n\treturn\n", call, o.Name, goos)
		return
	}
	fmt.Fprintf(b, "\terr = syscall.SetsockoptInt(%s, %s, %s, %d)\n", s, level, name, o.Value)
	if level == "syscall.SOL_SOCKET" {
		fmt.Fprintf(b, "\tif err == syscall.ENOPROTOOPT {\n\t\tunsupported(%s)\n\t\treturn\n\t}\n", call)
	}
	fmt.Fprintf(b, "\tif err != nil {\n\t\tfail(%s, err)\n\t\treturn\n\t}\n", call)
}

// goPrelude is the package clause, imports and helpers of an emitted Go file.
const goPrelude = `package main

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// errnoNames names an errno as lab's agent does.
var errnoNames = map[syscall.Errno]string{
	syscall.EADDRINUSE: "EADDRINUSE", syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL", syscall.EACCES: "EACCES",
	syscall.EPERM: "EPERM", syscall.EINVAL: "EINVAL", syscall.ECONNREFUSED: "ECONNREFUSED",
	syscall.EAGAIN: "EAGAIN", syscall.ENOPROTOOPT: "ENOPROTOOPT", syscall.EAFNOSUPPORT: "EAFNOSUPPORT",
	syscall.EOPNOTSUPP: "EOPNOTSUPP", syscall.EISCONN: "EISCONN", syscall.ENOTCONN: "ENOTCONN",
	syscall.ETIMEDOUT: "ETIMEDOUT", syscall.EBADF: "EBADF", syscall.ENOTSOCK: "ENOTSOCK",
	syscall.EPROTONOSUPPORT: "EPROTONOSUPPORT", syscall.ECONNRESET: "ECONNRESET", syscall.ENETUNREACH: "ENETUNREACH",
}

// cur is the step being run, as step announced it.
var cur struct {
	n                    int
	text, family, opts   string
	start                time.Time
}

// step starts step n: its text, its socket's family and the options it sets
// as the trace shows them.
func step(n int, text, family, opts string) {
	cur.n, cur.text, cur.family, cur.opts, cur.start = n, text, family, opts, time.Now()
}

// trace prints the step as lab repro prints the agent's: its result, then
// the call as the OS saw it, the family, the options, what the call returned
// and how long the step took, separated by two spaces. A step without a
// family (timewait) shows neither options nor a return value: the agent
// records none for it.
func trace(result, call string, ret int) {
	us := time.Since(cur.start).Microseconds()
	fmt.Printf("step %d: %s: %s\n", cur.n, cur.text, result)
	fmt.Printf("        %s", call)
	if cur.family != "" {
		fmt.Printf("  family %s", cur.family)
		if cur.opts != "" {
			fmt.Printf("  %s", cur.opts)
		}
		fmt.Printf("  returned %d", ret)
	}
	fmt.Printf("  %d\u00b5s\n", us)
}

func ok(call string, ret int) { trace("ok", call, ret) }

func unsupported(call string) { trace("unsupported", call, -1) }

// errName is err as the agent names it, with its number.
func errName(err error) string {
	e, _ := err.(syscall.Errno)
	name, found := errnoNames[e]
	if !found {
		name = fmt.Sprintf("errno%d", int(e))
	}
	return fmt.Sprintf("%s (%d)", name, int(e))
}

// fail reports the step's failure; the program ends there, as the agent
// ends a scenario at its first step that fails.
func fail(call string, err error) { trace(errName(err), call, -1) }

// twList is a timewait step's call: its endpoint, then every call it made
// with what it returned, strace-style, as the agent lists them.
var twHead string
var twList []string

func twBegin(format string, port int) { twHead, twList = fmt.Sprintf(format, port), nil }

func twCalls() string { return twHead + ": " + strings.Join(twList, "; ") }

// tw adds a call that returned ret.
func tw(ret int, format string, args ...any) {
	twList = append(twList, fmt.Sprintf(format, args...)+fmt.Sprintf(" = %d", ret))
}

// twFail adds a call that failed with err and fails the step.
func twFail(err error, format string, args ...any) {
	name, _, _ := strings.Cut(errName(err), " (")
	twList = append(twList, fmt.Sprintf(format, args...)+" = -1 "+name)
	fail(twCalls(), err)
}

// twUnsupported adds a setsockopt the OS lacks and ends the step.
func twUnsupported(format string, args ...any) {
	twList = append(twList, fmt.Sprintf(format, args...)+" = -1 unsupported")
	unsupported(twCalls())
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
