//go:build fstack

package agent

// The agent's socket calls made on F-Stack instead of the host kernel, with
// the same signatures as sys_unix.go's. Each call runs on the F-Stack thread
// (onLoop); a call that waits for traffic polls there, once per loop
// iteration, until its deadline (pollLoop), since lo0's packets move only
// between iterations. Sockets are non-blocking (FIONBIO) for the same
// reason.

/*
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <ff_api.h>

// ff_ioctl_freebsd is variadic, which cgo cannot call.
static int lab_ff_ioctl(int fd, unsigned long req, void *arg) { return ff_ioctl_freebsd(fd, req, arg); }
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"lab/wire"
)

// sysFD is a socket descriptor in F-Stack's descriptor table (not the
// host's).
type sysFD = int

// ffError turns what an ff_* call left in errno (Linux numbering: F-Stack
// translates FreeBSD's) into a call error named as FreeBSD names it, with
// FreeBSD's number.
func ffError(call string, e error) error {
	var errno syscall.Errno
	if !errors.As(e, &errno) {
		return fmt.Errorf("%s: %w", call, e)
	}
	name, num := errnoName(errno)
	return os.NewSyscallError(call, &callError{Name: name, Errno: num})
}

// isErrno reports whether err is the Linux errno e, as ff_* calls set it.
func isErrno(err error, e syscall.Errno) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && errno == e
}

// linuxSockaddr is a struct sockaddr_in or sockaddr_in6 in Linux's layout,
// which F-Stack's ff_bind, ff_connect and ff_sendto take.
type linuxSockaddr struct {
	buf [C.sizeof_struct_sockaddr_in6]byte
	len C.socklen_t
}

func (sa *linuxSockaddr) ptr() *C.struct_linux_sockaddr {
	return (*C.struct_linux_sockaddr)(unsafe.Pointer(&sa.buf[0]))
}

// sockaddr lays out ap for F-Stack. As on the host, an IPv6 address given
// to an IPv4 socket is passed as such, for the kernel to refuse.
func sockaddr(ip6 bool, ap netip.AddrPort) *linuxSockaddr {
	sa := &linuxSockaddr{}
	if !ip6 && (ap.Addr().Is4() || ap.Addr().Is4In6()) {
		var sin C.struct_sockaddr_in
		sin.sin_family = C.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sin.sin_port))[:], ap.Port())
		a := ap.Addr().Unmap().As4()
		C.memcpy(unsafe.Pointer(&sin.sin_addr), unsafe.Pointer(&a[0]), 4)
		C.memcpy(unsafe.Pointer(&sa.buf[0]), unsafe.Pointer(&sin), C.sizeof_struct_sockaddr_in)
		sa.len = C.sizeof_struct_sockaddr_in
		return sa
	}
	var sin6 C.struct_sockaddr_in6
	sin6.sin6_family = C.AF_INET6 // Linux's 10: F-Stack turns it into FreeBSD's 28
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sin6.sin6_port))[:], ap.Port())
	a := ap.Addr().As16()
	C.memcpy(unsafe.Pointer(&sin6.sin6_addr), unsafe.Pointer(&a[0]), 16)
	C.memcpy(unsafe.Pointer(&sa.buf[0]), unsafe.Pointer(&sin6), C.sizeof_struct_sockaddr_in6)
	sa.len = C.sizeof_struct_sockaddr_in6
	return sa
}

// ffIoctl is ff_ioctl_freebsd: req and what arg points to are FreeBSD's.
func ffIoctl(fd C.int, req uint64, arg unsafe.Pointer) (C.int, error) {
	r, err := C.lab_ff_ioctl(fd, C.ulong(req), arg)
	return r, err
}

// setNonblock sets FIONBIO (FreeBSD's number) on fd.
func setNonblock(fd C.int) error {
	on := C.int(1)
	if r, err := ffIoctl(fd, fbFIONBIO, unsafe.Pointer(&on)); r < 0 {
		return ffError("ioctl(FIONBIO)", err)
	}
	return nil
}

func sysSocket(ip6 bool, proto string) (sysFD, error) {
	family := C.int(C.AF_INET)
	if ip6 {
		family = C.AF_INET6 // Linux's number, which ff_socket converts
	}
	typ := C.int(C.SOCK_STREAM)
	if proto == "udp" {
		typ = C.SOCK_DGRAM
	}
	fd, callErr := -1, error(nil)
	err := onLoop(func() {
		r, err := C.ff_socket(family, typ, 0)
		if r < 0 {
			callErr = ffError("socket", err)
			return
		}
		if err := setNonblock(r); err != nil {
			C.ff_close(r)
			callErr = err
			return
		}
		fd = int(r)
	})
	if err != nil {
		return -1, err
	}
	return fd, callErr
}

func sysSetopt(fd sysFD, ip6 bool, o wire.Option) error {
	level, opt, ok := sockopt(o.Name, ip6)
	if !ok {
		return errUnsupported
	}
	var callErr error
	err := onLoop(func() {
		v := C.int(o.Value)
		r, err := C.ff_setsockopt_freebsd(C.int(fd), C.int(level), C.int(opt), unsafe.Pointer(&v), C.socklen_t(unsafe.Sizeof(v)))
		if r < 0 {
			// An option this FreeBSD does not know at the socket level is
			// refused with ENOPROTOOPT (sosetopt): it is not defined here.
			if level == fbSolSocket && isErrno(err, syscall.ENOPROTOOPT) {
				callErr = fmt.Errorf("%w: %w", errUnsupported, ffError("setsockopt", err))
				return
			}
			callErr = ffError("setsockopt", err)
		}
	})
	if err != nil {
		return err
	}
	return callErr
}

func sysBind(fd sysFD, ip6 bool, ap netip.AddrPort) error {
	sa := sockaddr(ip6, ap)
	return callOnLoop("bind", func() (C.int, error) {
		injectFault(ap) // only in the fault tests' build
		r, err := C.ff_bind(C.int(fd), sa.ptr(), sa.len)
		return r, err
	})
}

func sysListen(fd sysFD) error {
	return callOnLoop("listen", func() (C.int, error) {
		r, err := C.ff_listen(C.int(fd), 128)
		return r, err
	})
}

// callOnLoop makes one call that returns -1 and errno on failure.
func callOnLoop(name string, call func() (C.int, error)) error {
	var callErr error
	err := onLoop(func() {
		if r, err := call(); r < 0 {
			callErr = ffError(name, err)
		}
	})
	if err != nil {
		return err
	}
	return callErr
}

// errWait is what a wait that reached its deadline returns, as on the host:
// EAGAIN (ETIMEDOUT would be mistaken for a TCP timeout).
func errWait(call string) error {
	return os.NewSyscallError(call, &callError{Name: "EAGAIN", Errno: fbErrno["EAGAIN"]})
}

// sysConnect connects and, for TCP, waits for the handshake to finish:
// F-Stack's poll says the socket is writable once it is connected or has
// failed, and SO_ERROR (a FreeBSD errno) says which.
func sysConnect(fd sysFD, ip6 bool, ap netip.AddrPort, deadline time.Time) error {
	sa := sockaddr(ip6, ap)
	var callErr error
	inProgress := false
	err := onLoop(func() {
		r, err := C.ff_connect(C.int(fd), sa.ptr(), sa.len)
		if r < 0 {
			if isErrno(err, syscall.EINPROGRESS) {
				inProgress = true
				return
			}
			callErr = ffError("connect", err)
		}
	})
	if err != nil {
		return err
	}
	if !inProgress {
		return callErr
	}
	finished, err := pollLoop(deadline, func() bool {
		pfd := C.struct_pollfd{fd: C.int(fd), events: fbPollOut}
		r, err := C.ff_poll(&pfd, 1, 0)
		if r < 0 {
			callErr = ffError("poll", err)
			return true
		}
		if r == 0 {
			return false
		}
		var soerr C.int
		n := C.socklen_t(unsafe.Sizeof(soerr))
		if r, err := C.ff_getsockopt_freebsd(C.int(fd), fbSolSocket, fbSoError, unsafe.Pointer(&soerr), &n); r < 0 {
			callErr = ffError("getsockopt", err)
			return true
		}
		if soerr != 0 {
			callErr = os.NewSyscallError("connect", freebsdErrno(int(soerr)))
		}
		return true
	})
	if err != nil {
		return err
	}
	if !finished {
		return errWait("poll")
	}
	return callErr
}

// freebsdErrno is a call error for an errno in FreeBSD's numbering.
func freebsdErrno(num int) *callError {
	if name, ok := fbErrnoName[num]; ok {
		return &callError{Name: name, Errno: num}
	}
	return &callError{Name: fmt.Sprintf("errno%d", num), Errno: num}
}

func sysAccept(fd sysFD, deadline time.Time) (sysFD, error) {
	nfd, callErr := -1, error(nil)
	finished, err := pollLoop(deadline, func() bool {
		r, err := C.ff_accept(C.int(fd), nil, nil)
		if r < 0 {
			if isErrno(err, syscall.EAGAIN) || isErrno(err, syscall.EINTR) {
				return false
			}
			callErr = ffError("accept", err)
			return true
		}
		if err := setNonblock(r); err != nil {
			C.ff_close(r)
			callErr = err
			return true
		}
		nfd = int(r)
		return true
	})
	if err != nil {
		return -1, err
	}
	if !finished {
		return -1, errWait("poll")
	}
	return nfd, callErr
}

func sysClose(fd sysFD) error {
	return callOnLoop("close", func() (C.int, error) {
		r, err := C.ff_close(C.int(fd))
		return r, err
	})
}

func sysLocal(fd sysFD) (netip.AddrPort, error) {
	var ap netip.AddrPort
	var callErr error
	err := onLoop(func() {
		var ss C.struct_sockaddr_storage
		n := C.socklen_t(unsafe.Sizeof(ss))
		r, err := C.ff_getsockname(C.int(fd), (*C.struct_linux_sockaddr)(unsafe.Pointer(&ss)), &n)
		if r < 0 {
			callErr = ffError("getsockname", err)
			return
		}
		ap, callErr = fromSockaddr("getsockname", &ss)
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ap, callErr
}

// fromSockaddr reads the Linux-layout address F-Stack's getsockname or
// getpeername (call) wrote.
func fromSockaddr(call string, ss *C.struct_sockaddr_storage) (netip.AddrPort, error) {
	switch ss.ss_family {
	case C.AF_INET:
		sin := (*C.struct_sockaddr_in)(unsafe.Pointer(ss))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sin.sin_port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(*(*[4]byte)(unsafe.Pointer(&sin.sin_addr))), port), nil
	case C.AF_INET6:
		sin6 := (*C.struct_sockaddr_in6)(unsafe.Pointer(ss))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sin6.sin6_port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(*(*[16]byte)(unsafe.Pointer(&sin6.sin6_addr))), port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("%s: unexpected address family %d", call, ss.ss_family)
}

var datagram = []byte("lab")

func sysSendto(fd sysFD, ip6 bool, ap netip.AddrPort) error {
	sa := sockaddr(ip6, ap)
	return callOnLoop("sendto", func() (C.int, error) {
		buf := C.CBytes(datagram)
		defer C.free(buf)
		r, err := C.ff_sendto(C.int(fd), buf, C.size_t(len(datagram)), 0, sa.ptr(), sa.len)
		return C.int(r), err
	})
}

// sysDrain takes what is waiting on fd in one turn of the loop.
func sysDrain(fd sysFD, proto string) int {
	n := 0
	onLoop(func() {
		buf := (*C.char)(C.malloc(64))
		defer C.free(unsafe.Pointer(buf))
		for {
			if proto == "udp" {
				if r, _ := C.ff_recvfrom(C.int(fd), unsafe.Pointer(buf), 64, 0, nil, nil); r < 0 {
					return
				}
			} else {
				r, _ := C.ff_accept(C.int(fd), nil, nil)
				if r < 0 {
					return
				}
				C.ff_close(r)
			}
			n++
		}
	})
	return n
}

// sysWaitEOF reads until the peer's FIN arrives.
func sysWaitEOF(fd sysFD, deadline time.Time) error {
	var callErr error
	finished, err := pollLoop(deadline, func() bool {
		buf := (*C.char)(C.malloc(64))
		defer C.free(unsafe.Pointer(buf))
		r, err := C.ff_read(C.int(fd), unsafe.Pointer(buf), 64)
		switch {
		case r == 0:
			return true
		case r > 0:
			return false // data before the FIN: keep reading
		case isErrno(err, syscall.EAGAIN) || isErrno(err, syscall.EINTR):
			return false
		}
		callErr = ffError("read", err)
		return true
	})
	if err != nil {
		return err
	}
	if !finished {
		return errWait("poll")
	}
	return callErr
}

// errWouldBlock is what a call that would have to wait fails with:
// FreeBSD's EAGAIN, as ffError and errWait report it.
var errWouldBlock error = &callError{Name: "EAGAIN", Errno: fbErrno["EAGAIN"]}

// sysPeer is the address the socket is connected to; ENOTCONN when it is
// not connected.
func sysPeer(fd sysFD) (netip.AddrPort, error) {
	var ap netip.AddrPort
	var callErr error
	err := onLoop(func() {
		var ss C.struct_sockaddr_storage
		n := C.socklen_t(unsafe.Sizeof(ss))
		r, err := C.ff_getpeername(C.int(fd), (*C.struct_linux_sockaddr)(unsafe.Pointer(&ss)), &n)
		if r < 0 {
			callErr = ffError("getpeername", err)
			return
		}
		ap, callErr = fromSockaddr("getpeername", &ss)
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ap, callErr
}

// fbLinger is FreeBSD's struct linger (sys/socket.h): int l_onoff; int
// l_linger, in seconds.
type fbLinger struct {
	onoff, linger int32
}

// sysSetLinger sets SO_LINGER, FreeBSD's number and struct, on or off.
func sysSetLinger(fd sysFD, on bool, secs int) error {
	l := fbLinger{linger: int32(secs)}
	if on {
		l.onoff = 1
	}
	return callOnLoop("setsockopt", func() (C.int, error) {
		r, err := C.ff_setsockopt_freebsd(C.int(fd), fbSolSocket, fbSoLinger, unsafe.Pointer(&l), C.socklen_t(unsafe.Sizeof(l)))
		return r, err
	})
}

// sysSetBlocking clears FIONBIO. It serves a close with SO_LINGER on, which
// a plain program makes blocking; FreeBSD's soclose waits only when the
// linger time is not 0 (uipc_socket.c:1198), and that wait cannot happen
// here: F-Stack's _sleep returns EPERM at once (lib/ff_kern_synch.c), the
// loop being the only thread. notMeasurable skips such scenarios.
func sysSetBlocking(fd sysFD) error {
	return callOnLoop("ioctl(FIONBIO)", func() (C.int, error) {
		off := C.int(0)
		return ffIoctl(C.int(fd), fbFIONBIO, unsafe.Pointer(&off))
	})
}

// sysSend queues b on a connected socket without waiting, and says how much
// the stack took; EAGAIN when it took nothing. ff_send passes its flags to
// FreeBSD's sendit as they are, so MSG_NOSIGNAL is FreeBSD's: a send on a
// reset connection fails with EPIPE and raises no SIGPIPE (kern_sendit,
// kern/uipc_syscalls.c:810).
func sysSend(fd sysFD, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n := 0
	err := callOnLoop("send", func() (C.int, error) {
		r, err := C.ff_send(C.int(fd), unsafe.Pointer(&b[0]), C.size_t(len(b)), fbMsgNoSignal)
		if r >= 0 {
			n = int(r)
			return 0, nil
		}
		return -1, err
	})
	return n, err
}

// sysRecv reads once into b, from the loop in each iteration until data,
// the peer's FIN (0) or an error (ECONNRESET after a reset) is there, or
// the deadline passes (EAGAIN).
func sysRecv(fd sysFD, b []byte, deadline time.Time) (int, error) {
	n := 0
	var callErr error
	finished, err := pollLoop(deadline, func() bool {
		r, err := C.ff_read(C.int(fd), unsafe.Pointer(&b[0]), C.size_t(len(b)))
		switch {
		case r >= 0:
			n = int(r)
			return true
		case isErrno(err, syscall.EAGAIN) || isErrno(err, syscall.EINTR):
			return false
		}
		callErr = ffError("read", err)
		return true
	})
	if err != nil {
		return 0, err
	}
	if !finished {
		return 0, errWait("poll")
	}
	return n, callErr
}

// sysEphemeralPorts reads the range FreeBSD picks local ports from for
// port 0 and an unbound connect: net.inet.ip.portrange.first and last
// (ipport_firstauto, ipport_lastauto in netinet/in_pcb.c), which IPv6
// shares. FreeBSD accepts the pair reversed and means the same range.
func sysEphemeralPorts() (lo, hi int, err error) {
	var callErr error
	err = onLoop(func() {
		if lo, callErr = ffSysctlInt("net.inet.ip.portrange.first"); callErr != nil {
			return
		}
		hi, callErr = ffSysctlInt("net.inet.ip.portrange.last")
	})
	if err == nil {
		err = callErr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: %w", err)
	}
	return min(lo, hi), max(lo, hi), nil
}

// ffSysctlInt reads the int sysctl name, on the loop thread: its mib from
// FreeBSD's {CTL_SYSCTL, CTL_SYSCTL_NAME2OID} (sysctl_sysctl_name2oid in
// kern/kern_sysctl.c), then its value.
func ffSysctlInt(name string) (int, error) {
	q := [2]C.int{fbCtlSysctl, fbCtlSysctlName2OID}
	var mib [fbCtlMaxName]C.int
	n := C.size_t(unsafe.Sizeof(mib))
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	if r, err := C.ff_sysctl(&q[0], 2, unsafe.Pointer(&mib[0]), &n, unsafe.Pointer(cname), C.size_t(len(name))); r < 0 {
		return 0, fmt.Errorf("sysctl %s: %w", name, ffError("sysctl(name2oid)", err))
	}
	var v C.int
	vn := C.size_t(unsafe.Sizeof(v))
	if r, err := C.ff_sysctl(&mib[0], C.u_int(n/C.size_t(unsafe.Sizeof(mib[0]))), unsafe.Pointer(&v), &vn, nil, 0); r < 0 {
		return 0, fmt.Errorf("sysctl %s: %w", name, ffError("sysctl", err))
	}
	return int(v), nil
}

// errnoName names the errno behind err as FreeBSD does, with FreeBSD's
// number. ff_* calls leave Linux numbers (F-Stack translates FreeBSD's), so
// the number goes through its name.
func errnoName(err error) (string, int) {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return wire.Error, 0
	}
	name := unix.ErrnoName(errno)
	if alias, ok := fbErrnoAlias[name]; ok {
		name = alias
	}
	if num, ok := fbErrno[name]; ok {
		return name, num
	}
	if name != "" {
		return name, int(errno)
	}
	return fmt.Sprintf("errno%d", int(errno)), int(errno)
}

// fbErrnoAlias maps Linux's name for a number to FreeBSD's where they
// differ: FreeBSD defines ENOTSUP and EWOULDBLOCK as aliases (sys/errno.h).
var fbErrnoAlias = map[string]string{"ENOTSUP": "EOPNOTSUPP", "EWOULDBLOCK": "EAGAIN"}

// fbErrnoName is fbErrno the other way round.
var fbErrnoName = func() map[int]string {
	m := map[int]string{}
	for name, num := range fbErrno {
		m[num] = name
	}
	return m
}()
