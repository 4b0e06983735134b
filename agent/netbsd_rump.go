//go:build rump

package agent

import "strconv"

// NetBSD's ABI, which the rump kernel's rump_sys_* calls take and return:
// these numbers come from the headers of the src-netbsd tree the kernel is
// built from (the file each block names), not from the host's headers, whose
// numbers differ (Linux's AF_INET6 is 10, SOL_SOCKET 1, EADDRINUSE 98).
// netbsd_rump_test.go checks every one against those headers.

// sys/sys/socket.h
const (
	nbAF_INET      = 2
	nbAF_INET6     = 24
	nbSOCK_STREAM  = 1
	nbSOCK_DGRAM   = 2
	nbSOL_SOCKET   = 0xffff
	nbSO_REUSEADDR = 0x0004
	nbSO_REUSEPORT = 0x0200
	nbSO_ERROR     = 0x1007
	nbSO_LINGER    = 0x0080
	nbMSG_NOSIGNAL = 0x0400
	// struct linger { int l_onoff; int l_linger; }: 8 bytes.
	nbSizeofLinger = 8
)

// sys/netinet/in.h and sys/netinet6/in6.h
const (
	nbIPPROTO_IPV6 = 41
	nbIPV6_V6ONLY  = 27
)

// The socket addresses NetBSD takes, as sys/netinet/in.h and
// sys/netinet6/in6.h declare them: a length byte first (sin_len), then a
// one-byte family (sa_family_t is uint8_t), the port in network order, and
// the address.
//
//	struct sockaddr_in  { uint8_t sin_len; sa_family_t sin_family; in_port_t sin_port;
//	                      struct in_addr sin_addr; __int8_t sin_zero[8]; };              16 bytes
//	struct sockaddr_in6 { uint8_t sin6_len; sa_family_t sin6_family; in_port_t sin6_port;
//	                      uint32_t sin6_flowinfo; struct in6_addr sin6_addr;
//	                      uint32_t sin6_scope_id; };                                     28 bytes
const (
	nbSizeofSockaddrIn  = 16
	nbSizeofSockaddrIn6 = 28
)

// sys/sys/fcntl.h
const (
	nbF_GETFL    = 3
	nbF_SETFL    = 4
	nbO_NONBLOCK = 0x00000004
	nbPOLLIN     = 0x0001 // sys/sys/poll.h
	nbPOLLOUT    = 0x0004 // sys/sys/poll.h
)

// sys/sys/sysctl.h. struct sysctlnode is 96 bytes on every architecture
// (its pointers and sizes are padded to 64 bits, __sysc_pad): sysctl_flags
// (uint32) at 0, sysctl_num (int32) at 4, sysctl_name[SYSCTL_NAMELEN] at 8,
// sysctl_ver, __rsvd, a 16-byte union, then four padded 64-bit fields.
const (
	nbCTL_QUERY        = -2
	nbSYSCTL_VERSION   = 0x01000000
	nbSYSCTL_NAMELEN   = 32
	nbSizeofSysctlnode = 96
)

// sys/sys/errno.h: the errnos the calls below look for by number.
const (
	nbEINTR       = 4
	nbEAGAIN      = 35
	nbEINPROGRESS = 36
	nbENOPROTOOPT = 42
)

// netbsdErrnoNames names every errno of sys/sys/errno.h (1 to ELAST, 96) as
// NetBSD does; EWOULDBLOCK is EAGAIN there, as on Linux.
var netbsdErrnoNames = [...]string{
	1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 8: "ENOEXEC",
	9: "EBADF", 10: "ECHILD", 11: "EDEADLK", 12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 15: "ENOTBLK",
	16: "EBUSY", 17: "EEXIST", 18: "EXDEV", 19: "ENODEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL",
	23: "ENFILE", 24: "EMFILE", 25: "ENOTTY", 26: "ETXTBSY", 27: "EFBIG", 28: "ENOSPC", 29: "ESPIPE",
	30: "EROFS", 31: "EMLINK", 32: "EPIPE", 33: "EDOM", 34: "ERANGE", 35: "EAGAIN", 36: "EINPROGRESS",
	37: "EALREADY", 38: "ENOTSOCK", 39: "EDESTADDRREQ", 40: "EMSGSIZE", 41: "EPROTOTYPE",
	42: "ENOPROTOOPT", 43: "EPROTONOSUPPORT", 44: "ESOCKTNOSUPPORT", 45: "EOPNOTSUPP",
	46: "EPFNOSUPPORT", 47: "EAFNOSUPPORT", 48: "EADDRINUSE", 49: "EADDRNOTAVAIL", 50: "ENETDOWN",
	51: "ENETUNREACH", 52: "ENETRESET", 53: "ECONNABORTED", 54: "ECONNRESET", 55: "ENOBUFS",
	56: "EISCONN", 57: "ENOTCONN", 58: "ESHUTDOWN", 59: "ETOOMANYREFS", 60: "ETIMEDOUT",
	61: "ECONNREFUSED", 62: "ELOOP", 63: "ENAMETOOLONG", 64: "EHOSTDOWN", 65: "EHOSTUNREACH",
	66: "ENOTEMPTY", 67: "EPROCLIM", 68: "EUSERS", 69: "EDQUOT", 70: "ESTALE", 71: "EREMOTE",
	72: "EBADRPC", 73: "ERPCMISMATCH", 74: "EPROGUNAVAIL", 75: "EPROGMISMATCH", 76: "EPROCUNAVAIL",
	77: "ENOLCK", 78: "ENOSYS", 79: "EFTYPE", 80: "EAUTH", 81: "ENEEDAUTH", 82: "EIDRM", 83: "ENOMSG",
	84: "EOVERFLOW", 85: "EILSEQ", 86: "ENOTSUP", 87: "ECANCELED", 88: "EBADMSG", 89: "ENODATA",
	90: "ENOSR", 91: "ENOSTR", 92: "ETIME", 93: "ENOATTR", 94: "EMULTIHOP", 95: "ENOLINK", 96: "EPROTO",
}

// netbsdErrno is an errno as the rump kernel returns it: NetBSD's number.
type netbsdErrno int

func (e netbsdErrno) Error() string { return e.name() }

// name is the errno's portable name: NetBSD's, which the other systems
// share for every errno a socket call returns.
func (e netbsdErrno) name() string {
	if e > 0 && int(e) < len(netbsdErrnoNames) && netbsdErrnoNames[e] != "" {
		return netbsdErrnoNames[e]
	}
	return "errno" + strconv.Itoa(int(e))
}
