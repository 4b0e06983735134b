package emit

import (
	"fmt"
	"strings"

	"lab/wire"
)

// C returns a standalone C program (POSIX sockets; Winsock under _WIN32)
// that performs sc's steps with the ports and addresses of res and prints
// the trace Parse reads. target names where res was measured, for the header.
func C(sc wire.Scenario, res *wire.Result, target string) ([]byte, error) {
	p, err := newPlan(sc, res)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "/* lab repro --emit c: scenario %s (%s), as measured on %s.\n", p.id, p.proto, target)
	b.WriteString(" * Build: cc -O2 -o repro repro.c   (Windows: cl repro.c ws2_32.lib)\n")
	b.WriteString(" * Prints one line per step: \"step N: <text>: ok\" or \"...: ERRNAME (number)\". */\n")
	b.WriteString(cPrelude)
	if len(p.ports) > 0 {
		b.WriteString("\n/* The ports the agent used; built with -DLAB_FRESH_PORTS the program picks free ones. */\n")
	}
	for _, sym := range p.ports {
		fmt.Fprintf(&b, "static int port_%s = %d;\n", sym, p.portValue[sym])
	}
	b.WriteString("\nint main(void)\n{\n")
	b.WriteString("\tint v = 0;\n")
	for _, s := range p.socks {
		fmt.Fprintf(&b, "\tsock_t %s = BAD_SOCK;\n", ident(s))
	}
	b.WriteString("\n\tnet_init();\n")
	if len(p.ports) > 0 {
		b.WriteString("#ifdef LAB_FRESH_PORTS\n")
		for _, sym := range p.ports {
			fmt.Fprintf(&b, "\tport_%s = free_port();\n", sym)
		}
		b.WriteString("#endif\n")
	}
	typ := "SOCK_STREAM"
	if p.proto == "udp" {
		typ = "SOCK_DGRAM"
	}
	for _, o := range p.ops {
		s := ident(o.sock)
		text := cString(o.text)
		fmt.Fprintf(&b, "\n\t/* step %d: %s */\n", o.n, o.text)
		switch o.verb {
		case wire.VerbSocket:
			fam := "AF_INET"
			if o.ip6 {
				fam = "AF_INET6"
			}
			fmt.Fprintf(&b, "\t%s = socket(%s, %s, 0);\n", s, fam, typ)
			fmt.Fprintf(&b, "\tif (%s == BAD_SOCK)\n\t\treturn fail(%d, %s, ERRNO());\n", s, o.n, text)
			for _, opt := range o.opts {
				cSetopt(&b, o.n, text, s, opt)
			}
			fmt.Fprintf(&b, "\tok(%d, %s);\n", o.n, text)
		case wire.VerbSetopt:
			cSetopt(&b, o.n, text, s, o.opts[0])
			fmt.Fprintf(&b, "\tok(%d, %s);\n", o.n, text)
		case wire.VerbBind, wire.VerbConnect:
			fmt.Fprintf(&b, "\tif (%s(%s, %s, %s) != 0)\n\t\treturn fail(%d, %s, ERRNO());\n", o.verb+"_to", s, cString(o.addr), o.port, o.n, text)
			fmt.Fprintf(&b, "\tok(%d, %s);\n", o.n, text)
		case wire.VerbListen:
			fmt.Fprintf(&b, "\tif (listen(%s, 128) != 0)\n\t\treturn fail(%d, %s, ERRNO());\n", s, o.n, text)
			fmt.Fprintf(&b, "\tok(%d, %s);\n", o.n, text)
		case wire.VerbAccept:
			fmt.Fprintf(&b, "\t%s = accept_wait(%s);\n", ident(o.newSoc), s)
			fmt.Fprintf(&b, "\tif (%s == BAD_SOCK)\n\t\treturn fail(%d, %s, ERRNO());\n", ident(o.newSoc), o.n, text)
			fmt.Fprintf(&b, "\tok(%d, %s);\n", o.n, text)
		case wire.VerbTimewait:
			cTimewait(&b, o, text)
		case wire.VerbClose:
			fmt.Fprintf(&b, "\tif (CLOSE(%s) != 0)\n\t\treturn fail(%d, %s, ERRNO());\n", s, o.n, text)
			fmt.Fprintf(&b, "\t%s = BAD_SOCK;\n", s)
			fmt.Fprintf(&b, "\tok(%d, %s);\n", o.n, text)
		}
	}
	b.WriteString("\n\t(void)v;\n")
	for _, s := range p.socks {
		fmt.Fprintf(&b, "\t(void)%s;\n", ident(s))
	}
	b.WriteString("\treturn 0;\n}\n")
	return []byte(b.String()), nil
}

// cTimewait leaves a TIME_WAIT entry on o's endpoint as the agent does: a
// listener with the options accepts one connection, and the accepted side
// closes first; the client waits for its FIN before closing.
func cTimewait(b *strings.Builder, o op, text string) {
	fail := fmt.Sprintf("\t\t\treturn fail(%d, %s, ERRNO());\n", o.n, text)
	b.WriteString("\t{\n\t\tsock_t tl, tc, ts;\n\t\tchar buf[64];\n")
	b.WriteString("\t\ttl = socket(AF_INET, SOCK_STREAM, 0);\n\t\tif (tl == BAD_SOCK)\n" + fail)
	for _, opt := range o.opts {
		var sb strings.Builder
		cSetopt(&sb, o.n, text, "tl", opt)
		for _, line := range strings.SplitAfter(sb.String(), "\n") {
			if line != "" && !strings.HasPrefix(line, "#") {
				line = "\t" + line
			}
			b.WriteString(line)
		}
	}
	fmt.Fprintf(b, "\t\tif (bind_to(tl, %s, %s) != 0 || listen(tl, 128) != 0)\n%s", cString(o.addr), o.port, fail)
	b.WriteString("\t\ttc = socket(AF_INET, SOCK_STREAM, 0);\n\t\tif (tc == BAD_SOCK)\n" + fail)
	fmt.Fprintf(b, "\t\tif (connect_to(tc, %s, %s) != 0)\n%s", cString(o.dst), o.port, fail)
	b.WriteString("\t\tts = accept_wait(tl);\n\t\tif (ts == BAD_SOCK)\n" + fail)
	b.WriteString("\t\tCLOSE(tl);\n\t\tCLOSE(ts);\n")
	b.WriteString("\t\twhile (recv(tc, buf, sizeof buf, 0) > 0)\n\t\t\t;\n")
	b.WriteString("\t\tCLOSE(tc);\n\t\tsleep_ms(10); /* the ACK that moves the server to TIME_WAIT is processed asynchronously */\n\t}\n")
	fmt.Fprintf(b, "\tok(%d, %s);\n", o.n, text)
}

// cSetopt sets one option; an option this OS does not define is
// "unsupported", as the agent says, and so is ENOPROTOOPT at SOL_SOCKET
// (a kernel older than the option).
func cSetopt(b *strings.Builder, n int, text, s string, o wire.Option) {
	level := "SOL_SOCKET"
	if strings.HasPrefix(o.Name, "IPV6_") {
		level = "IPPROTO_IPV6"
	}
	fmt.Fprintf(b, "#ifdef %s\n", o.Name)
	fmt.Fprintf(b, "\tv = %d;\n", o.Value)
	fmt.Fprintf(b, "\tif (setsockopt(%s, %s, %s, (const char *)&v, sizeof v) != 0)\n", s, level, o.Name)
	if level == "SOL_SOCKET" {
		fmt.Fprintf(b, "\t\treturn ERRNO() == LAB_ENOPROTOOPT ? unsupported(%d, %s) : fail(%d, %s, ERRNO());\n", n, text, n, text)
	} else {
		fmt.Fprintf(b, "\t\treturn fail(%d, %s, ERRNO());\n", n, text)
	}
	b.WriteString("#else\n")
	fmt.Fprintf(b, "\treturn unsupported(%d, %s);\n", n, text)
	b.WriteString("#endif\n")
}

// cPrelude holds the includes and the helpers every emitted program uses.
const cPrelude = `
#if defined(__GNUC__) || defined(__clang__)
#define UNUSED __attribute__((unused))
#else
#define UNUSED
#endif

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
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
	return "errno";
}

static UNUSED void ok(int n, const char *text) { printf("step %d: %s: ok\n", n, text); fflush(stdout); }

static UNUSED int fail(int n, const char *text, int e)
{
	const char *name = errname(e);
	if (strcmp(name, "errno") == 0)
		printf("step %d: %s: errno%d (%d)\n", n, text, e, e);
	else
		printf("step %d: %s: %s (%d)\n", n, text, name, e);
	return 0;
}

static UNUSED int unsupported(int n, const char *text) { printf("step %d: %s: unsupported\n", n, text); return 0; }

/* sockaddr_for fills sa with addr:port; the address, not the socket, decides
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
