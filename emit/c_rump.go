package emit

// cRumpHead: includes, types and errno names of a program that calls a
// NetBSD rump kernel linked into it (the Rump option). The constants are
// rump/rumpdefs.h's, NetBSD's values with a RUMP_ prefix, so the host's
// headers (whose AF_INET6 is 10, SOL_SOCKET 1, EADDRINUSE 98) are used for
// nothing but inet_pton and printing.
const cRumpHead = `
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
`

// cRumpSockets: NetBSD's socket addresses (sys/netinet/in.h,
// sys/netinet6/in6.h: a length byte, a one-byte family) and the waits, on
// the rump kernel.
const cRumpSockets = `/* NetBSD's struct sockaddr_in and sockaddr_in6. */
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
`
