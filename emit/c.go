package emit

import (
	"fmt"
	"strings"

	"lab/wire"
)

// COption changes the program C writes.
type COption int

// Rump makes C write the program against a NetBSD rump kernel linked into
// it, as lab's netbsd-rump target runs its agent: rump_sys_* calls with
// NetBSD's ABI (rump/rumpdefs.h's RUMP_ constants, sockaddrs with sin_len),
// a kernel booted by the program with lo0 configured as the agent does.
// Build it against lab's rump libraries with RumpLinkFlags.
const Rump COption = 1

// RumpLinkFlags are the libraries a Rump program links, after -I, -L and
// -Wl,-rpath for the rump libraries' dirs. --no-as-needed keeps the
// components no symbol is taken from: they register from ELF constructors.
var RumpLinkFlags = []string{"-Wl,--no-as-needed", "-lrumpnet_config", "-lrumpnet_netinet6", "-lrumpnet_netinet",
	"-lrumpnet_net", "-lrumpnet", "-lrump", "-lrumpuser", "-lpthread", "-ldl"}

// cDialect is the socket API an emitted program calls.
type cDialect struct {
	build    string // the header's build line
	prelude  string
	names    map[string]string // constants as the API names them; absent: as POSIX does
	socket   string            // socket(2)
	setopt   string            // setsockopt(2), a format of socket, level, name
	listen   string
	read     string // a format of socket, buffer: reads into buffer, returns the count
	initLine func(res *wire.Result) []string
}

var posixDialect = cDialect{
	build:   "cc -O2 -o repro repro.c   (Windows: cl repro.c ws2_32.lib)",
	prelude: cPrelude,
	socket:  "socket",
	setopt:  "setsockopt(%s, %s, %s, (const char *)&v, sizeof v)",
	listen:  "listen",
	read:    "recv(%s, %s, sizeof %[2]s, 0)",
}

var rumpDialect = cDialect{
	build:   "cc -O2 -o repro repro.c -I<rump>/include -L<rump>/lib -Wl,-rpath,<rump>/lib " + strings.Join(RumpLinkFlags, " "),
	prelude: cRumpHead + cTrace + cRumpSockets,
	names: map[string]string{
		"AF_INET": "RUMP_AF_INET", "AF_INET6": "RUMP_AF_INET6", "SOCK_STREAM": "RUMP_SOCK_STREAM", "SOCK_DGRAM": "RUMP_SOCK_DGRAM",
		"SOL_SOCKET": "RUMP_SOL_SOCKET", "IPPROTO_IPV6": "RUMP_IPPROTO_IPV6", "IPV6_V6ONLY": "LAB_IPV6_V6ONLY",
	},
	socket: "rump_sys_socket",
	setopt: "rump_sys_setsockopt(%s, %s, %s, &v, sizeof v)",
	listen: "rump_sys_listen",
	read:   "rump_sys_read(%s, %s, sizeof %[2]s)",
	initLine: func(res *wire.Result) []string {
		// The agent adds addr1 and addr2 to lo0 as it does on any BSD.
		var lines []string
		for _, a := range []string{"addr1", "addr2"} {
			if ip, ok := res.Addrs[a]; ok {
				lines = append(lines, fmt.Sprintf("lo0_alias(%s);", cString(ip)))
			}
		}
		return lines
	},
}

// c is the API's name for a POSIX constant. An option it does not know is
// RUMP_-prefixed, for the program's #ifdef to find undefined.
func (d *cDialect) c(name string) string {
	if d.names == nil {
		return name
	}
	if n, ok := d.names[name]; ok {
		return n
	}
	return "RUMP_" + name
}

// C returns a standalone C program (POSIX sockets; Winsock under _WIN32;
// with Rump, a rump kernel's calls) that performs sc's steps with the ports
// and addresses of res and prints the trace Parse reads. target names where
// res was measured, for the header.
func C(sc wire.Scenario, res *wire.Result, target string, opts ...COption) ([]byte, error) {
	d := &posixDialect
	for _, o := range opts {
		if o == Rump {
			d = &rumpDialect
		}
	}
	p, err := newPlan(sc, res)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "/* lab repro --emit c: scenario %s (%s), as measured on %s.\n", p.id, p.proto, target)
	fmt.Fprintf(&b, " * Build: %s\n", d.build)
	b.WriteString(" * Prints the trace lab repro prints: per step \"step N: <text>: ok\" or \"...: ERRNAME (number)\",\n")
	b.WriteString(" * then the call with its arguments, what it returned and how long the step took. */\n")
	b.WriteString(d.prelude)
	if len(p.ports) > 0 {
		b.WriteString("\n/* The ports the agent used; built with -DLAB_FRESH_PORTS the program picks free ones. */\n")
	}
	for _, sym := range p.ports {
		fmt.Fprintf(&b, "static int port_%s = %d;\n", sym, p.portValue[sym])
	}
	b.WriteString("\nint main(void)\n{\n")
	b.WriteString("\tint v = 0;\n\tchar call[256];\n")
	for _, s := range p.socks {
		fmt.Fprintf(&b, "\tsock_t %s = BAD_SOCK;\n", ident(s))
	}
	b.WriteString("\n\tnet_init();\n")
	if d.initLine != nil {
		for _, l := range d.initLine(res) {
			fmt.Fprintf(&b, "\t%s\n", l)
		}
	}
	if len(p.ports) > 0 {
		b.WriteString("#ifdef LAB_FRESH_PORTS\n")
		for _, sym := range p.ports {
			fmt.Fprintf(&b, "\tport_%s = free_port();\n", sym)
		}
		b.WriteString("#endif\n")
	}
	format, args := p.values(res)
	fmt.Fprintf(&b, "\tprintf(%s%s);\n", cString(format+"\n"), strings.Join(args, ""))
	typ := "SOCK_STREAM"
	if p.proto == "udp" {
		typ = "SOCK_DGRAM"
	}
	for _, o := range p.ops {
		s := ident(o.sock)
		fmt.Fprintf(&b, "\n\t/* step %d: %s */\n", o.n, o.text)
		family := cString(familyName(o.ip6))
		if o.verb == wire.VerbTimewait {
			family = "NULL" // the agent records no family, options or return value for it
		}
		fmt.Fprintf(&b, "\tstep(%d, %s, %s, %s);\n", o.n, cString(o.text), family, cString(o.optionFields()))
		switch o.verb {
		case wire.VerbSocket:
			fam := "AF_INET"
			if o.ip6 {
				fam = "AF_INET6"
			}
			call := fmt.Sprintf("socket(%s, %s)", familyName(o.ip6), p.proto)
			fmt.Fprintf(&b, "\t%s = %s(%s, %s, 0);\n", s, d.socket, d.c(fam), d.c(typ))
			fmt.Fprintf(&b, "\tif (%s == BAD_SOCK)\n\t\treturn fail(%s, ERRNO());\n", s, cString(call))
			for _, opt := range o.opts {
				call += "; " + optCall(opt)
				d.setsockopt(&b, s, opt, cString(call))
			}
			fmt.Fprintf(&b, "\tok(%s, FD(%s));\n", cString(call), s)
		case wire.VerbSetopt:
			call := cString(optCall(o.opts[0]))
			d.setsockopt(&b, s, o.opts[0], call)
			fmt.Fprintf(&b, "\tok(%s, 0);\n", call)
		case wire.VerbBind, wire.VerbConnect:
			fmt.Fprintf(&b, "\tsnprintf(call, sizeof call, %s, %s);\n", cString(o.verb+"("+cFormat(o.addrColon())+"%d)"), o.port)
			fmt.Fprintf(&b, "\tif (%s(%s, %s, %s) != 0)\n\t\treturn fail(call, ERRNO());\n", o.verb+"_to", s, cString(o.addr), o.port)
			b.WriteString("\tok(call, 0);\n")
		case wire.VerbListen:
			fmt.Fprintf(&b, "\tif (%s(%s, 128) != 0)\n\t\treturn fail(\"listen()\", ERRNO());\n", d.listen, s)
			b.WriteString("\tok(\"listen()\", 0);\n")
		case wire.VerbAccept:
			fmt.Fprintf(&b, "\t%s = accept_wait(%s);\n", ident(o.newSoc), s)
			fmt.Fprintf(&b, "\tif (%s == BAD_SOCK)\n\t\treturn fail(\"accept()\", ERRNO());\n", ident(o.newSoc))
			fmt.Fprintf(&b, "\tok(\"accept()\", FD(%s));\n", ident(o.newSoc))
		case wire.VerbTimewait:
			d.timewait(&b, o)
		case wire.VerbClose:
			fmt.Fprintf(&b, "\tif (CLOSE(%s) != 0)\n\t\treturn fail(\"close()\", ERRNO());\n", s)
			fmt.Fprintf(&b, "\t%s = BAD_SOCK;\n", s)
			b.WriteString("\tok(\"close()\", 0);\n")
		}
	}
	b.WriteString("\n\t(void)v;\n\t(void)call;\n")
	for _, s := range p.socks {
		fmt.Fprintf(&b, "\t(void)%s;\n", ident(s))
	}
	b.WriteString("\treturn 0;\n}\n")
	return []byte(b.String()), nil
}

// cTimewait leaves a TIME_WAIT entry on o's endpoint as the agent does: a
// listener with the options accepts one connection, and the accepted side
// closes first; the client waits for its FIN before closing. Like the
// agent, it lists every call it makes, strace-style, as the step's call.
func (d *cDialect) timewait(b *strings.Builder, o op) {
	// call is a printf format and its arguments: descriptors and ports
	// are known when the program runs.
	call := func(format string, args ...string) string {
		return cString(format) + strings.Join(args, "")
	}
	fd := func(s string) string { return ", FD(" + s + ")" }
	port := ", " + o.port
	failIf := func(cond, c string) {
		fmt.Fprintf(b, "\t\tif (%s)\n\t\t\treturn tw_fail(ERRNO(), NULL, %s);\n\t\ttw(0, %s);\n", cond, c, c)
	}
	b.WriteString("\t{\n\t\tsock_t tl, tc, ts;\n\t\tchar buf[64];\n\t\tint r;\n\n")
	fmt.Fprintf(b, "\t\ttw_begin(%s%s);\n", cString("timewait("+cFormat(o.addrColon())+"%d)"), port)
	fmt.Fprintf(b, "\t\ttl = %s(%s, %s, 0);\n", d.socket, d.c("AF_INET"), d.c("SOCK_STREAM"))
	b.WriteString("\t\tif (tl == BAD_SOCK)\n\t\t\treturn tw_fail(ERRNO(), NULL, \"socket(inet, tcp)\");\n")
	b.WriteString("\t\ttw(FD(tl), \"socket(inet, tcp)\");\n")
	for _, opt := range o.opts {
		c := call(fmt.Sprintf("setsockopt(%%lld, %s=%d)", opt.Name, opt.Value), fd("tl"))
		level := optLevel(opt.Name)
		fmt.Fprintf(b, "#ifdef %s\n", d.c(opt.Name))
		fmt.Fprintf(b, "\t\tv = %d;\n", opt.Value)
		fmt.Fprintf(b, "\t\tif (%s != 0)\n", fmt.Sprintf(d.setopt, "tl", d.c(level), d.c(opt.Name)))
		if level == "SOL_SOCKET" {
			fmt.Fprintf(b, "\t\t\treturn tw_fail(ERRNO(), ERRNO() == LAB_ENOPROTOOPT ? \"unsupported\" : NULL, %s);\n", c)
		} else {
			fmt.Fprintf(b, "\t\t\treturn tw_fail(ERRNO(), NULL, %s);\n", c)
		}
		fmt.Fprintf(b, "\t\ttw(0, %s);\n", c)
		b.WriteString("#else\n")
		fmt.Fprintf(b, "\t\treturn tw_fail(0, \"unsupported\", %s);\n", c)
		b.WriteString("#endif\n")
	}
	failIf(fmt.Sprintf("bind_to(tl, %s, %s) != 0", cString(o.addr), o.port), call("bind(%lld, "+cFormat(o.addrColon())+"%d)", fd("tl"), port))
	failIf(d.listen+"(tl, 128) != 0", call("listen(%lld)", fd("tl")))
	fmt.Fprintf(b, "\t\ttc = %s(%s, %s, 0);\n", d.socket, d.c("AF_INET"), d.c("SOCK_STREAM"))
	b.WriteString("\t\tif (tc == BAD_SOCK)\n\t\t\treturn tw_fail(ERRNO(), NULL, \"socket(inet, tcp)\");\n")
	b.WriteString("\t\ttw(FD(tc), \"socket(inet, tcp)\");\n")
	failIf(fmt.Sprintf("connect_to(tc, %s, %s) != 0", cString(o.dst), o.port), call("connect(%lld, "+cFormat(o.dst)+":%d)", fd("tc"), port))
	b.WriteString("\t\tts = accept_wait(tl);\n")
	fmt.Fprintf(b, "\t\tif (ts == BAD_SOCK)\n\t\t\treturn tw_fail(ERRNO(), NULL, %s);\n", call("accept(%lld)", fd("tl")))
	fmt.Fprintf(b, "\t\ttw(FD(ts), %s);\n", call("accept(%lld)", fd("tl")))
	failIf("CLOSE(tl) != 0", call("close(%lld)", fd("tl")))
	failIf("CLOSE(ts) != 0", call("close(%lld)", fd("ts")))
	b.WriteString("\t\t/* The client waits for the server's FIN: the read that sees it returns 0. */\n")
	fmt.Fprintf(b, "\t\twhile ((r = (int)%s) > 0)\n\t\t\t;\n", fmt.Sprintf(d.read, "tc", "buf"))
	failIf("r < 0", call("read(%lld)", fd("tc")))
	failIf("CLOSE(tc) != 0", call("close(%lld)", fd("tc")))
	b.WriteString("\t\tsleep_ms(10); /* the ACK that moves the server to TIME_WAIT is processed asynchronously */\n")
	b.WriteString("\t\tok(tw_calls, 0);\n\t}\n")
}

// setsockopt sets one option, call being the step's call up to it; an option
// this OS does not define is "unsupported", as the agent says, and so is
// ENOPROTOOPT at SOL_SOCKET (a kernel older than the option).
func (d *cDialect) setsockopt(b *strings.Builder, s string, o wire.Option, call string) {
	level := optLevel(o.Name)
	fmt.Fprintf(b, "#ifdef %s\n", d.c(o.Name))
	fmt.Fprintf(b, "\tv = %d;\n", o.Value)
	fmt.Fprintf(b, "\tif (%s != 0)\n", fmt.Sprintf(d.setopt, s, d.c(level), d.c(o.Name)))
	if level == "SOL_SOCKET" {
		fmt.Fprintf(b, "\t\treturn ERRNO() == LAB_ENOPROTOOPT ? unsupported(%s) : fail(%s, ERRNO());\n", call, call)
	} else {
		fmt.Fprintf(b, "\t\treturn fail(%s, ERRNO());\n", call)
	}
	b.WriteString("#else\n")
	fmt.Fprintf(b, "\treturn unsupported(%s);\n", call)
	b.WriteString("#endif\n")
}

// cFormat escapes s for a printf format.
func cFormat(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// cPrelude holds the includes and the helpers every emitted program uses:
// the platform's (POSIX sockets, Winsock), then the trace's.
const cPrelude = cPosixHead + cTrace + cPosixSockets

// cPosixHead: includes, types and errno names of POSIX sockets and Winsock.
const cPosixHead = `
#if defined(__GNUC__) || defined(__clang__)
#define UNUSED __attribute__((unused))
#else
#define UNUSED
#endif

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
typedef SOCKET sock_t;
#define BAD_SOCK INVALID_SOCKET
#define ERRNO() WSAGetLastError()
#define CLOSE closesocket
#define LAB_ENOPROTOOPT WSAENOPROTOOPT
static UNUSED void net_init(void) { WSADATA d; WSAStartup(MAKEWORD(2, 2), &d); }
static UNUSED void sleep_ms(int ms) { Sleep(ms); }
#else
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
typedef int sock_t;
#define BAD_SOCK (-1)
#define ERRNO() errno
#define CLOSE close
#define LAB_ENOPROTOOPT ENOPROTOOPT
static UNUSED void net_init(void) { }
static UNUSED void sleep_ms(int ms) { struct timespec ts = { 0, ms * 1000000L }; nanosleep(&ts, NULL); }
#endif

/* errname names an errno as lab's agent does. */
static UNUSED const char *errname(int e)
{
	static char unknown[32];
	switch (e) {
#ifdef _WIN32
	case WSAEADDRINUSE: return "EADDRINUSE";
	case WSAEADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case WSAEACCES: return "EACCES";
	case WSAEINVAL: return "EINVAL";
	case WSAECONNREFUSED: return "ECONNREFUSED";
	case WSAEWOULDBLOCK: return "EAGAIN";
	case WSAENOPROTOOPT: return "ENOPROTOOPT";
	case WSAEAFNOSUPPORT: return "EAFNOSUPPORT";
	case WSAEOPNOTSUPP: return "EOPNOTSUPP";
	case WSAEISCONN: return "EISCONN";
	case WSAENOTCONN: return "ENOTCONN";
	case WSAETIMEDOUT: return "ETIMEDOUT";
	case WSAENOTSOCK: return "ENOTSOCK";
#else
	case EADDRINUSE: return "EADDRINUSE";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case EINVAL: return "EINVAL";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EAGAIN: return "EAGAIN";
	case ENOPROTOOPT: return "ENOPROTOOPT";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EISCONN: return "EISCONN";
	case ENOTCONN: return "ENOTCONN";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EBADF: return "EBADF";
	case ENOTSOCK: return "ENOTSOCK";
	case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
	case ECONNRESET: return "ECONNRESET";
	case ENETUNREACH: return "ENETUNREACH";
#endif
	}
#ifdef _WIN32
	snprintf(unknown, sizeof unknown, "WSA%d", e);
#else
	snprintf(unknown, sizeof unknown, "errno%d", e);
#endif
	return unknown;
}

`

// cTrace prints the trace, whatever the platform.
const cTrace = `/* The step being run, as step() announced it. */
static int cur_n;
static const char *cur_text, *cur_family, *cur_opts;
static long long cur_start;

static UNUSED long long now_us(void)
{
#ifdef _WIN32
	LARGE_INTEGER c, f;
	QueryPerformanceCounter(&c);
	QueryPerformanceFrequency(&f);
	return (long long)(c.QuadPart * 1000000 / f.QuadPart);
#else
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
#endif
}

/* step starts step n: its text, its socket's family and the options it sets
 * as the trace shows them. A step without a family (timewait) shows neither
 * options nor a return value: the agent records none for it. */
static UNUSED void step(int n, const char *text, const char *family, const char *opts)
{
	cur_n = n;
	cur_text = text;
	cur_family = family;
	cur_opts = opts;
	cur_start = now_us();
}

/* trace prints the step as lab repro prints the agent's: its result (an
 * errno name and number when result is NULL), then the call as the OS saw
 * it, the family, the options, what the call returned and how long the step
 * took, separated by two spaces. */
static UNUSED void trace(const char *result, int e, const char *call, long long ret)
{
	long long us = now_us() - cur_start;
	if (result != NULL)
		printf("step %d: %s: %s\n", cur_n, cur_text, result);
	else
		printf("step %d: %s: %s (%d)\n", cur_n, cur_text, errname(e), e);
	printf("        %s", call);
	if (cur_family != NULL) {
		printf("  family %s", cur_family);
		if (cur_opts[0] != '\0')
			printf("  %s", cur_opts);
		printf("  returned %lld", ret);
	}
	printf("  %lld\xc2\xb5s\n", us);
	fflush(stdout);
}

static UNUSED int ok(const char *call, long long ret) { trace("ok", 0, call, ret); return 1; }

/* fail ends the program as the agent ends a scenario: at its first step
 * that fails. */
static UNUSED int fail(const char *call, int e) { trace(NULL, e, call, -1); return 0; }

static UNUSED int unsupported(const char *call) { trace("unsupported", 0, call, -1); return 0; }

/* FD is a descriptor (a SOCKET handle on Windows) as the trace prints it. */
#define FD(s) ((long long)(s))

/* tw_calls is a timewait step's call: its endpoint, then every call it
 * made with what it returned, strace-style, as the agent lists them. */
static char tw_calls[2048];

static UNUSED void tw_begin(const char *format, int port)
{
	snprintf(tw_calls, sizeof tw_calls, format, port);
	strcat(tw_calls, ": ");
}

static UNUSED void tw_add(const char *ret, const char *format, va_list ap)
{
	size_t n = strlen(tw_calls);
	if (tw_calls[n - 1] != ' ')
		n += (size_t)snprintf(tw_calls + n, sizeof tw_calls - n, "; ");
	if (n < sizeof tw_calls)
		n += (size_t)vsnprintf(tw_calls + n, sizeof tw_calls - n, format, ap);
	if (n < sizeof tw_calls)
		snprintf(tw_calls + n, sizeof tw_calls - n, " = %s", ret);
}

/* tw adds a call that returned ret to tw_calls. */
static UNUSED void tw(long long ret, const char *format, ...)
{
	char r[32];
	va_list ap;
	snprintf(r, sizeof r, "%lld", ret);
	va_start(ap, format);
	tw_add(r, format, ap);
	va_end(ap);
}

/* tw_fail adds a call that failed with e (or, with result set, for that
 * reason) to tw_calls and fails the step. */
static UNUSED int tw_fail(int e, const char *result, const char *format, ...)
{
	char r[64];
	va_list ap;
	snprintf(r, sizeof r, "-1 %s", result != NULL ? result : errname(e));
	va_start(ap, format);
	tw_add(r, format, ap);
	va_end(ap);
	if (result != NULL) {
		trace(result, 0, tw_calls, -1);
		return 0;
	}
	return fail(tw_calls, e);
}

`

// cPosixSockets: addresses and waits with POSIX sockets and Winsock.
const cPosixSockets = `/* sockaddr_for fills sa with addr:port; the address, not the socket, decides
 * the family, so an IPv6 address on an IPv4 socket is the kernel's to refuse. */
static UNUSED socklen_t sockaddr_for(struct sockaddr_storage *sa, const char *addr, int port)
{
	memset(sa, 0, sizeof *sa);
	if (strchr(addr, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((unsigned short)port);
		inet_pton(AF_INET6, addr, &s6->sin6_addr);
		return sizeof *s6;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((unsigned short)port);
		inet_pton(AF_INET, addr, &s4->sin_addr);
		return sizeof *s4;
	}
}

static UNUSED int bind_to(sock_t s, const char *addr, int port)
{
	struct sockaddr_storage sa;
	socklen_t n = sockaddr_for(&sa, addr, port);
	return bind(s, (struct sockaddr *)&sa, n);
}

static UNUSED int connect_to(sock_t s, const char *addr, int port)
{
	struct sockaddr_storage sa;
	socklen_t n = sockaddr_for(&sa, addr, port);
	return connect(s, (struct sockaddr *)&sa, n);
}

/* free_port asks the kernel for a free TCP port on the wildcard address. */
static UNUSED int free_port(void)
{
	struct sockaddr_in sa;
	socklen_t n = sizeof sa;
	sock_t s = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	bind(s, (struct sockaddr *)&sa, sizeof sa);
	getsockname(s, (struct sockaddr *)&sa, &n);
	CLOSE(s);
	return ntohs(sa.sin_port);
}

/* accept_wait accepts a pending connection, waiting 500 ms as the agent does;
 * none yields EAGAIN. */
static UNUSED sock_t accept_wait(sock_t s)
{
#ifdef _WIN32
	WSAPOLLFD p;
	p.fd = s;
	p.events = POLLRDNORM;
	if (WSAPoll(&p, 1, 500) == 0) {
		WSASetLastError(WSAEWOULDBLOCK);
		return BAD_SOCK;
	}
#else
	struct pollfd p;
	p.fd = s;
	p.events = POLLIN;
	if (poll(&p, 1, 500) == 0) {
		errno = EAGAIN;
		return BAD_SOCK;
	}
#endif
	return accept(s, NULL, NULL);
}
`
