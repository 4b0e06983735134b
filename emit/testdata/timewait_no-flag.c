/* lab repro --emit c: scenario timewait/no-flag (tcp), as measured on local.
 * Build: cc -O2 -o repro repro.c   (Windows: cl repro.c ws2_32.lib)
 * Prints one line per step: "step N: <text>: ok" or "...: ERRNAME (number)". */

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

/* The ports the agent used; built with -DLAB_FRESH_PORTS the program picks free ones. */
static int port_P = 40001;

int main(void)
{
	int v = 0;
	sock_t s_B = BAD_SOCK;

	net_init();
#ifdef LAB_FRESH_PORTS
	port_P = free_port();
#endif

	/* step 1: timewait addr1:P */
	{
		sock_t tl, tc, ts;
		char buf[64];
		tl = socket(AF_INET, SOCK_STREAM, 0);
		if (tl == BAD_SOCK)
			return fail(1, "timewait addr1:P", ERRNO());
		if (bind_to(tl, "127.0.0.2", port_P) != 0 || listen(tl, 128) != 0)
			return fail(1, "timewait addr1:P", ERRNO());
		tc = socket(AF_INET, SOCK_STREAM, 0);
		if (tc == BAD_SOCK)
			return fail(1, "timewait addr1:P", ERRNO());
		if (connect_to(tc, "127.0.0.2", port_P) != 0)
			return fail(1, "timewait addr1:P", ERRNO());
		ts = accept_wait(tl);
		if (ts == BAD_SOCK)
			return fail(1, "timewait addr1:P", ERRNO());
		CLOSE(tl);
		CLOSE(ts);
		while (recv(tc, buf, sizeof buf, 0) > 0)
			;
		CLOSE(tc);
		sleep_ms(10); /* the ACK that moves the server to TIME_WAIT is processed asynchronously */
	}
	ok(1, "timewait addr1:P");

	/* step 2: socket B */
	s_B = socket(AF_INET, SOCK_STREAM, 0);
	if (s_B == BAD_SOCK)
		return fail(2, "socket B", ERRNO());
	ok(2, "socket B");

	/* step 3: bind B addr1:P */
	if (bind_to(s_B, "127.0.0.2", port_P) != 0)
		return fail(3, "bind B addr1:P", ERRNO());
	ok(3, "bind B addr1:P");

	(void)v;
	(void)s_B;
	return 0;
}
