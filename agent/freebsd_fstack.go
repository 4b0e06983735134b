//go:build fstack

package agent

// FreeBSD 13's own values, from the headers in F-Stack's tree
// (freebsd/sys/socket.h, netinet/in.h, netinet6/in6.h, sys/sockio.h,
// sys/filio.h, sys/poll.h, net/if.h, sys/errno.h). F-Stack converts
// sockaddrs and errno for its Linux-style calls, but the *_freebsd calls
// (options, ioctls) and values the stack hands back (SO_ERROR) are
// FreeBSD's. TestFreeBSDConstants checks every value here against those
// headers.
const (
	fbSolSocket         = 0xffff     // SOL_SOCKET
	fbSoReuseAddr       = 0x00000004 // SO_REUSEADDR
	fbSoReusePort       = 0x00000200 // SO_REUSEPORT
	fbSoReusePortLB     = 0x00010000 // SO_REUSEPORT_LB
	fbSoError           = 0x1007     // SO_ERROR
	fbSoLinger          = 0x00000080 // SO_LINGER; struct linger is two ints (fbSizeofLinger bytes)
	fbSizeofLinger      = 8
	fbMsgNoSignal       = 0x00020000 // MSG_NOSIGNAL
	fbCtlSysctl         = 0          // CTL_SYSCTL (sys/sysctl.h)
	fbCtlSysctlName2OID = 3          // CTL_SYSCTL_NAME2OID
	fbCtlMaxName        = 24         // CTL_MAXNAME
	fbAFInet            = 2          // AF_INET
	fbAFInet6           = 28         // AF_INET6
	fbIPProtoIPv6       = 41         // IPPROTO_IPV6
	fbIPv6V6Only        = 27         // IPV6_V6ONLY
	fbIFNameSize        = 16         // IFNAMSIZ
	fbPollIn            = 0x0001     // POLLIN
	fbPollOut           = 0x0004     // POLLOUT
	fbIPPortReserved    = 1024       // IPPORT_RESERVED: ports below need PRIV_NETINET_RESERVEDPORT
	fbFreeBSDVersion    = 1300139    // __FreeBSD_version (sys/param.h): 13.0-stable

	// ioctl numbers are _IOW(group, num, type): IOC_IN (0x80000000) | the
	// argument's size << 16 | group << 8 | num.
	fbFIONBIO     = 0x8004667e // _IOW('f', 126, int)
	fbSIOCAIFADDR = 0x8044692b // _IOW('i', 43, struct ifaliasreq): 68 bytes

	// struct ifaliasreq: ifra_name[IFNAMSIZ], then three struct sockaddr of
	// 16 bytes (ifra_addr, ifra_broadaddr, ifra_mask), then int ifra_vhid.
	fbIfaliasreqSize = fbIFNameSize + 3*fbSockaddrInSize + 4
	fbSockaddrInSize = 16 // struct sockaddr_in: sin_len, sin_family, sin_port, sin_addr, sin_zero[8]
)

// fbErrno is FreeBSD's errno numbering (sys/errno.h, 1 to ELAST), by name.
// Results carry FreeBSD's numbers, as on a booted FreeBSD.
var fbErrno = map[string]int{
	"EPERM":           1,
	"ENOENT":          2,
	"ESRCH":           3,
	"EINTR":           4,
	"EIO":             5,
	"ENXIO":           6,
	"E2BIG":           7,
	"ENOEXEC":         8,
	"EBADF":           9,
	"ECHILD":          10,
	"EDEADLK":         11,
	"ENOMEM":          12,
	"EACCES":          13,
	"EFAULT":          14,
	"ENOTBLK":         15,
	"EBUSY":           16,
	"EEXIST":          17,
	"EXDEV":           18,
	"ENODEV":          19,
	"ENOTDIR":         20,
	"EISDIR":          21,
	"EINVAL":          22,
	"ENFILE":          23,
	"EMFILE":          24,
	"ENOTTY":          25,
	"ETXTBSY":         26,
	"EFBIG":           27,
	"ENOSPC":          28,
	"ESPIPE":          29,
	"EROFS":           30,
	"EMLINK":          31,
	"EPIPE":           32,
	"EDOM":            33,
	"ERANGE":          34,
	"EAGAIN":          35,
	"EINPROGRESS":     36,
	"EALREADY":        37,
	"ENOTSOCK":        38,
	"EDESTADDRREQ":    39,
	"EMSGSIZE":        40,
	"EPROTOTYPE":      41,
	"ENOPROTOOPT":     42,
	"EPROTONOSUPPORT": 43,
	"ESOCKTNOSUPPORT": 44,
	"EOPNOTSUPP":      45,
	"EPFNOSUPPORT":    46,
	"EAFNOSUPPORT":    47,
	"EADDRINUSE":      48,
	"EADDRNOTAVAIL":   49,
	"ENETDOWN":        50,
	"ENETUNREACH":     51,
	"ENETRESET":       52,
	"ECONNABORTED":    53,
	"ECONNRESET":      54,
	"ENOBUFS":         55,
	"EISCONN":         56,
	"ENOTCONN":        57,
	"ESHUTDOWN":       58,
	"ETOOMANYREFS":    59,
	"ETIMEDOUT":       60,
	"ECONNREFUSED":    61,
	"ELOOP":           62,
	"ENAMETOOLONG":    63,
	"EHOSTDOWN":       64,
	"EHOSTUNREACH":    65,
	"ENOTEMPTY":       66,
	"EPROCLIM":        67,
	"EUSERS":          68,
	"EDQUOT":          69,
	"ESTALE":          70,
	"EREMOTE":         71,
	"EBADRPC":         72,
	"ERPCMISMATCH":    73,
	"EPROGUNAVAIL":    74,
	"EPROGMISMATCH":   75,
	"EPROCUNAVAIL":    76,
	"ENOLCK":          77,
	"ENOSYS":          78,
	"EFTYPE":          79,
	"EAUTH":           80,
	"ENEEDAUTH":       81,
	"EIDRM":           82,
	"ENOMSG":          83,
	"EOVERFLOW":       84,
	"ECANCELED":       85,
	"EILSEQ":          86,
	"ENOATTR":         87,
	"EDOOFUS":         88,
	"EBADMSG":         89,
	"EMULTIHOP":       90,
	"ENOLINK":         91,
	"EPROTO":          92,
	"ENOTCAPABLE":     93,
	"ECAPMODE":        94,
	"ENOTRECOVERABLE": 95,
	"EOWNERDEAD":      96,
	"EINTEGRITY":      97,
}
