/* lab repro --emit c: scenario ipv6/v6only1-any6-then-v4-any/tcp (tcp), as measured on netbsd-rump.
 * Build: cc -O2 -o repro repro.c -I<rump>/include -L<rump>/lib -Wl,-rpath,<rump>/lib -Wl,--no-as-needed -lrumpnet_config -lrumpnet_netinet6 -lrumpnet_netinet -lrumpnet_net -lrumpnet -lrump -lrumpuser -lpthread -ldl
 * Prints the trace lab repro prints: per step "step N: <text>: ok" or "...: ERRNAME (number)",
 * then the call with its arguments, what it returned and how long the step took. */

#if defined(__GNUC__) || defined(__clang__)
#define UNUSED __attribute__((unused))
#else
#define UNUSED
#endif

#include <sys/types.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <rump/rump.h>
#include <rump/rump_syscalls.h>
#include <rump/netconfig.h>
typedef int sock_t;
#define BAD_SOCK (-1)
/* rump_sys_* set the host's errno to NetBSD's number. */
#define ERRNO() errno
#define CLOSE rump_sys_close
#define LAB_ENOPROTOOPT RUMP_ENOPROTOOPT
/* sys/netinet6/in6.h; rumpdefs.h has no IPV6_ options. */
#define LAB_IPV6_V6ONLY 27

static UNUSED void die(const char *what, int e)
{
	fprintf(stderr, "repro: %s: NetBSD errno %d\n", what, e);
	exit(2);
}

/* net_init boots the rump kernel, gives lo0 127.0.0.1/8 and ::1, as lab's
 * agent does, and makes the process the calls are made in: a child of the
 * kernel's init with a descriptor table of its own. */
static UNUSED void net_init(void)
{
	int e;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((e = rump_init()) != 0)
		die("rump_init", e);
	if ((e = rump_pub_netconfig_ipv4_ifaddr_cidr("lo0", "127.0.0.1", 8)) != 0)
		die("lo0 127.0.0.1/8", e);
	if ((e = rump_pub_netconfig_ifup("lo0")) != 0)
		die("lo0 up", e);
	if ((e = rump_pub_netconfig_ipv6_ifaddr("lo0", "::1", 128)) != 0 && e != RUMP_EEXIST)
		die("lo0 ::1", e);
	if ((e = rump_pub_lwproc_rfork(RUMP_RFCFDG)) != 0)
		die("rump_pub_lwproc_rfork", e);
}

/* lo0_alias adds ip to lo0 as a /32 alias, as ifconfig lo0 alias does. */
static UNUSED void lo0_alias(const char *ip)
{
	int e = rump_pub_netconfig_ipv4_ifaddr_cidr("lo0", ip, 32);

	if (e != 0)
		die(ip, e);
}

static UNUSED void sleep_ms(int ms) { struct timespec ts = { 0, ms * 1000000L }; nanosleep(&ts, NULL); }

/* errname names a NetBSD errno as lab's agent does. */
static UNUSED const char *errname(int e)
{
	static char unknown[32];
	switch (e) {
	case RUMP_EADDRINUSE: return "EADDRINUSE";
	case RUMP_EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case RUMP_EACCES: return "EACCES";
	case RUMP_EPERM: return "EPERM";
	case RUMP_EINVAL: return "EINVAL";
	case RUMP_ECONNREFUSED: return "ECONNREFUSED";
	case RUMP_EAGAIN: return "EAGAIN";
	case RUMP_ENOPROTOOPT: return "ENOPROTOOPT";
	case RUMP_EAFNOSUPPORT: return "EAFNOSUPPORT";
	case RUMP_EOPNOTSUPP: return "EOPNOTSUPP";
	case RUMP_EISCONN: return "EISCONN";
	case RUMP_ENOTCONN: return "ENOTCONN";
	case RUMP_ETIMEDOUT: return "ETIMEDOUT";
	case RUMP_EBADF: return "EBADF";
	case RUMP_ENOTSOCK: return "ENOTSOCK";
	case RUMP_EPROTONOSUPPORT: return "EPROTONOSUPPORT";
	case RUMP_ECONNRESET: return "ECONNRESET";
	case RUMP_ENETUNREACH: return "ENETUNREACH";
	case RUMP_ENOBUFS: return "ENOBUFS";
	}
	snprintf(unknown, sizeof unknown, "errno%d", e);
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

/* NetBSD's struct sockaddr_in and sockaddr_in6. */
struct nb_sockaddr_in {
	uint8_t sin_len;
	uint8_t sin_family;
	uint16_t sin_port;
	uint8_t sin_addr[4];
	uint8_t sin_zero[8];
};

struct nb_sockaddr_in6 {
	uint8_t sin6_len;
	uint8_t sin6_family;
	uint16_t sin6_port;
	uint32_t sin6_flowinfo;
	uint8_t sin6_addr[16];
	uint32_t sin6_scope_id;
};

union nb_sockaddr {
	struct nb_sockaddr_in in;
	struct nb_sockaddr_in6 in6;
};

/* sockaddr_for fills sa with addr:port; the address, not the socket, decides
 * the family, so an IPv6 address on an IPv4 socket is the kernel's to refuse. */
static UNUSED int sockaddr_for(union nb_sockaddr *sa, const char *addr, int port)
{
	memset(sa, 0, sizeof *sa);
	if (strchr(addr, ':') != NULL) {
		sa->in6.sin6_len = sizeof sa->in6;
		sa->in6.sin6_family = RUMP_AF_INET6;
		sa->in6.sin6_port = htons((unsigned short)port);
		inet_pton(AF_INET6, addr, sa->in6.sin6_addr); /* the host's inet_pton: only bytes */
		return sizeof sa->in6;
	}
	sa->in.sin_len = sizeof sa->in;
	sa->in.sin_family = RUMP_AF_INET;
	sa->in.sin_port = htons((unsigned short)port);
	inet_pton(AF_INET, addr, sa->in.sin_addr);
	return sizeof sa->in;
}

static UNUSED int bind_to(sock_t s, const char *addr, int port)
{
	union nb_sockaddr sa;
	int n = sockaddr_for(&sa, addr, port);
	return rump_sys_bind(s, (const struct sockaddr *)&sa, (socklen_t)n);
}

static UNUSED int connect_to(sock_t s, const char *addr, int port)
{
	union nb_sockaddr sa;
	int n = sockaddr_for(&sa, addr, port);
	return rump_sys_connect(s, (const struct sockaddr *)&sa, (socklen_t)n);
}

/* free_port asks the kernel for a free TCP port on the wildcard address. */
static UNUSED int free_port(void)
{
	union nb_sockaddr sa;
	socklen_t n = sizeof sa.in;
	sock_t s = rump_sys_socket(RUMP_AF_INET, RUMP_SOCK_STREAM, 0);

	sockaddr_for(&sa, "0.0.0.0", 0);
	rump_sys_bind(s, (const struct sockaddr *)&sa, sizeof sa.in);
	rump_sys_getsockname(s, (struct sockaddr *)&sa, &n);
	CLOSE(s);
	return ntohs(sa.in.sin_port);
}

/* NetBSD's struct pollfd (sys/sys/poll.h) and POLLIN. */
struct nb_pollfd {
	int fd;
	short events;
	short revents;
};
#define LAB_POLLIN 0x0001

/* accept_wait accepts a pending connection, waiting 500 ms as the agent does;
 * none yields EAGAIN. */
static UNUSED sock_t accept_wait(sock_t s)
{
	struct nb_pollfd p;

	p.fd = s;
	p.events = LAB_POLLIN;
	p.revents = 0;
	if (rump_sys_poll((struct pollfd *)&p, 1, 500) == 0) {
		errno = RUMP_EAGAIN;
		return BAD_SOCK;
	}
	return rump_sys_accept(s, NULL, NULL);
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
	lo0_alias("127.0.0.2");
	lo0_alias("127.0.0.3");
#ifdef LAB_FRESH_PORTS
	port_P = free_port();
#endif
	printf("values   P=%d Q=40002 addr1=127.0.0.2 addr2=127.0.0.3 any6=:: any=0.0.0.0 loop6=::1 loop=127.0.0.1\n", port_P);

	/* step 1: socket A ip6 IPV6_V6ONLY=1 */
	step(1, "socket A ip6 IPV6_V6ONLY=1", "inet6", "setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1)");
	s_A = rump_sys_socket(RUMP_AF_INET6, RUMP_SOCK_STREAM, 0);
	if (s_A == BAD_SOCK)
		return fail("socket(inet6, tcp)", ERRNO());
#ifdef LAB_IPV6_V6ONLY
	v = 1;
	if (rump_sys_setsockopt(s_A, RUMP_IPPROTO_IPV6, LAB_IPV6_V6ONLY, &v, sizeof v) != 0)
		return fail("socket(inet6, tcp); setsockopt(IPV6_V6ONLY=1)", ERRNO());
#else
	return unsupported("socket(inet6, tcp); setsockopt(IPV6_V6ONLY=1)");
#endif
	ok("socket(inet6, tcp); setsockopt(IPV6_V6ONLY=1)", FD(s_A));

	/* step 2: bind A any6:P */
	step(2, "bind A any6:P", "inet6", "");
	snprintf(call, sizeof call, "bind([::]:%d)", port_P);
	if (bind_to(s_A, "::", port_P) != 0)
		return fail(call, ERRNO());
	ok(call, 0);

	/* step 3: socket B */
	step(3, "socket B", "inet", "");
	s_B = rump_sys_socket(RUMP_AF_INET, RUMP_SOCK_STREAM, 0);
	if (s_B == BAD_SOCK)
		return fail("socket(inet, tcp)", ERRNO());
	ok("socket(inet, tcp)", FD(s_B));

	/* step 4: bind B any:P */
	step(4, "bind B any:P", "inet", "");
	snprintf(call, sizeof call, "bind(0.0.0.0:%d)", port_P);
	if (bind_to(s_B, "0.0.0.0", port_P) != 0)
		return fail(call, ERRNO());
	ok(call, 0);

	(void)v;
	(void)call;
	(void)s_A;
	(void)s_B;
	return 0;
}
