/* lab repro --emit c: scenario bsd-table/row6/on (tcp), as measured on local.
 * Build: cc -O2 -o repro repro.c   (Windows: cl repro.c ws2_32.lib)
 * Prints the trace lab repro prints: per step "step N: <text>: ok" or "...: ERRNAME (number)",
 * then the call with its arguments, what it returned and how long the step took. */

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

/* The step being run, as step() announced it. */
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

/* The ports the agent used; built with -DLAB_FRESH_PORTS the program picks free ones. */
static int port_P = 40001;

int main(void)
{
	int v = 0;
	char call[256];
	sock_t s_A = BAD_SOCK;
	sock_t s_B = BAD_SOCK;

	net_init();
#ifdef LAB_FRESH_PORTS
	port_P = free_port();
#endif
	printf("values   P=%d Q=40002 addr1=127.0.0.2 addr2=127.0.0.3 any6=:: any=0.0.0.0 loop6=::1 loop=127.0.0.1\n", port_P);

	/* step 1: socket A */
	step(1, "socket A", "inet", "");
	s_A = socket(AF_INET, SOCK_STREAM, 0);
	if (s_A == BAD_SOCK)
		return fail("socket(inet, tcp)", ERRNO());
	ok("socket(inet, tcp)", FD(s_A));

	/* step 2: bind A any:P */
	step(2, "bind A any:P", "inet", "");
	snprintf(call, sizeof call, "bind(0.0.0.0:%d)", port_P);
	if (bind_to(s_A, "0.0.0.0", port_P) != 0)
		return fail(call, ERRNO());
	ok(call, 0);

	/* step 3: socket B SO_REUSEADDR */
	step(3, "socket B SO_REUSEADDR", "inet", "setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)");
	s_B = socket(AF_INET, SOCK_STREAM, 0);
	if (s_B == BAD_SOCK)
		return fail("socket(inet, tcp)", ERRNO());
#ifdef SO_REUSEADDR
	v = 1;
	if (setsockopt(s_B, SOL_SOCKET, SO_REUSEADDR, (const char *)&v, sizeof v) != 0)
		return ERRNO() == LAB_ENOPROTOOPT ? unsupported("socket(inet, tcp); setsockopt(SO_REUSEADDR=1)") : fail("socket(inet, tcp); setsockopt(SO_REUSEADDR=1)", ERRNO());
#else
	return unsupported("socket(inet, tcp); setsockopt(SO_REUSEADDR=1)");
#endif
	ok("socket(inet, tcp); setsockopt(SO_REUSEADDR=1)", FD(s_B));

	/* step 4: bind B addr1:P */
	step(4, "bind B addr1:P", "inet", "");
	snprintf(call, sizeof call, "bind(127.0.0.2:%d)", port_P);
	if (bind_to(s_B, "127.0.0.2", port_P) != 0)
		return fail(call, ERRNO());
	ok(call, 0);

	(void)v;
	(void)call;
	(void)s_A;
	(void)s_B;
	return 0;
}
