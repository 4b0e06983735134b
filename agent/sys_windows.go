package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"

	"lab/wire"
)

// sysFD is a socket handle.
type sysFD = windows.Handle

// errWouldBlock is what a call that would have to wait fails with.
var errWouldBlock error = windows.WSAEWOULDBLOCK

// Winsock calls x/sys/windows does not wrap.
var (
	ws2            = windows.NewLazySystemDLL("ws2_32.dll")
	procIoctl      = ws2.NewProc("ioctlsocket")
	procAccept     = ws2.NewProc("accept")
	procRecv       = ws2.NewProc("recv")
	procSend       = ws2.NewProc("send")
	procWSAPoll    = ws2.NewProc("WSAPoll")
	procWSAStartup = ws2.NewProc("WSAStartup")
)

const (
	fionbio    = 0x8004667e // _IOW('f', 126, u_long)
	soError    = 0x1007     // SO_ERROR
	pollRdNorm = 0x0100
	pollWrNorm = 0x0010
)

// wsaPollFD is WSAPOLLFD.
type wsaPollFD struct {
	fd      windows.Handle
	events  int16
	revents int16
}

func init() {
	var d windows.WSAData
	windows.WSAStartup(uint32(0x202), &d)
	_ = procWSAStartup
}

func wsaErr(call string, r1 uintptr, failed uintptr, err error) error {
	if r1 != failed {
		return nil
	}
	var errno windows.Errno
	if errors.As(err, &errno) && errno != 0 {
		return os.NewSyscallError(call, errno)
	}
	return os.NewSyscallError(call, err)
}

// Sockets are non-blocking so that accept and connect wait under a deadline
// with WSAPoll instead of hanging the agent.
func sysSocket(ip6 bool, proto string) (sysFD, error) {
	family, typ, p := windows.AF_INET, windows.SOCK_STREAM, windows.IPPROTO_TCP
	if ip6 {
		family = windows.AF_INET6
	}
	if proto == "udp" {
		typ, p = windows.SOCK_DGRAM, windows.IPPROTO_UDP
	}
	fd, err := windows.Socket(family, typ, p)
	if err != nil {
		return windows.InvalidHandle, os.NewSyscallError("socket", err)
	}
	on := uint32(1)
	r1, _, err := procIoctl.Call(uintptr(fd), fionbio, uintptr(unsafe.Pointer(&on)))
	if err := wsaErr("ioctlsocket", r1, ^uintptr(0), err); err != nil {
		windows.Closesocket(fd)
		return windows.InvalidHandle, err
	}
	return fd, nil
}

func sysSetopt(fd sysFD, ip6 bool, o wire.Option) error {
	level, opt, ok := sockopt(o.Name, ip6)
	if !ok {
		return errUnsupported
	}
	v := int32(o.Value)
	err := windows.Setsockopt(fd, int32(level), int32(opt), (*byte)(unsafe.Pointer(&v)), 4)
	if errors.Is(err, windows.WSAENOPROTOOPT) && level == windows.SOL_SOCKET {
		return fmt.Errorf("%w: %w", errUnsupported, err)
	}
	return os.NewSyscallError("setsockopt", err)
}

func sockaddr(ip6 bool, ap netip.AddrPort) windows.Sockaddr {
	if ip6 || (!ap.Addr().Is4() && !ap.Addr().Is4In6()) {
		return &windows.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	return &windows.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
}

func sysBind(fd sysFD, ip6 bool, ap netip.AddrPort) error {
	return os.NewSyscallError("bind", windows.Bind(fd, sockaddr(ip6, ap)))
}

func sysListen(fd sysFD) error {
	return os.NewSyscallError("listen", windows.Listen(fd, 128))
}

func sysConnect(fd sysFD, ip6 bool, ap netip.AddrPort, deadline time.Time) error {
	err := windows.Connect(fd, sockaddr(ip6, ap))
	if !errors.Is(err, windows.WSAEWOULDBLOCK) {
		return os.NewSyscallError("connect", err)
	}
	if err := waitFD(fd, pollWrNorm, deadline); err != nil {
		return err
	}
	soerr, err := windows.GetsockoptInt(fd, windows.SOL_SOCKET, soError)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if soerr != 0 {
		return os.NewSyscallError("connect", windows.Errno(soerr))
	}
	return nil
}

// waitFD waits with WSAPoll until fd is ready or the deadline passes, which
// yields EAGAIN (WSAEWOULDBLOCK).
func waitFD(fd sysFD, events int16, deadline time.Time) error {
	left := time.Until(deadline)
	if left <= 0 {
		return os.NewSyscallError("WSAPoll", windows.WSAEWOULDBLOCK)
	}
	ms := int64((left + time.Millisecond - 1) / time.Millisecond) // round up: never return before the deadline
	fds := []wsaPollFD{{fd: fd, events: events}}
	r1, _, err := procWSAPoll.Call(uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(ms))
	if int32(r1) < 0 {
		return os.NewSyscallError("WSAPoll", err)
	}
	if r1 == 0 {
		return os.NewSyscallError("WSAPoll", windows.WSAEWOULDBLOCK)
	}
	return nil
}

func sysAccept(fd sysFD, deadline time.Time) (sysFD, error) {
	for {
		r1, _, err := procAccept.Call(uintptr(fd), 0, 0)
		if windows.Handle(r1) != windows.InvalidHandle {
			return windows.Handle(r1), nil
		}
		if !errors.Is(err, windows.WSAEWOULDBLOCK) {
			return windows.InvalidHandle, os.NewSyscallError("accept", err)
		}
		if err := waitFD(fd, pollRdNorm, deadline); err != nil {
			return windows.InvalidHandle, err
		}
	}
}

func sysClose(fd sysFD) error { return os.NewSyscallError("closesocket", windows.Closesocket(fd)) }

func sysLocal(fd sysFD) (netip.AddrPort, error) {
	sa, err := windows.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, os.NewSyscallError("getsockname", err)
	}
	return addrPort("getsockname", sa)
}

// sysPeer is the address the socket is connected to; ENOTCONN when it is
// not connected.
func sysPeer(fd sysFD) (netip.AddrPort, error) {
	sa, err := windows.Getpeername(fd)
	if err != nil {
		return netip.AddrPort{}, os.NewSyscallError("getpeername", err)
	}
	return addrPort("getpeername", sa)
}

func addrPort(call string, sa windows.Sockaddr) (netip.AddrPort, error) {
	switch sa := sa.(type) {
	case *windows.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *windows.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("%s: unexpected address %T", call, sa)
}

// sysSetLinger sets SO_LINGER: on with a linger time in seconds, or off.
func sysSetLinger(fd sysFD, on bool, secs int) error {
	l := windows.Linger{Linger: int32(secs)}
	if on {
		l.Onoff = 1
	}
	return os.NewSyscallError("setsockopt", windows.SetsockoptLinger(fd, windows.SOL_SOCKET, windows.SO_LINGER, &l))
}

// sysSetBlocking makes the socket blocking again, so that closesocket with
// SO_LINGER on waits for the linger time: on a non-blocking socket Winsock
// fails it with WSAEWOULDBLOCK instead.
func sysSetBlocking(fd sysFD) error {
	off := uint32(0)
	r1, _, err := procIoctl.Call(uintptr(fd), fionbio, uintptr(unsafe.Pointer(&off)))
	return wsaErr("ioctlsocket", r1, ^uintptr(0), err)
}

// sysSend queues b on a connected socket without waiting, and says how much
// Winsock took; EAGAIN (WSAEWOULDBLOCK) when it took nothing.
func sysSend(fd sysFD, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r1, _, err := procSend.Call(uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0)
	if n := int32(r1); n >= 0 {
		return int(n), nil
	}
	return 0, os.NewSyscallError("send", err)
}

// sysRecv waits until the socket is readable or the deadline passes (then
// EAGAIN) and reads once into b: n > 0 bytes, 0 at the peer's FIN, or the
// pending error (ECONNRESET after a reset).
func sysRecv(fd sysFD, b []byte, deadline time.Time) (int, error) {
	for {
		r1, _, err := procRecv.Call(uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0)
		if n := int32(r1); n >= 0 {
			return int(n), nil
		}
		if !errors.Is(err, windows.WSAEWOULDBLOCK) {
			return 0, os.NewSyscallError("recv", err)
		}
		if err := waitFD(fd, pollRdNorm, deadline); err != nil {
			return 0, err
		}
	}
}

func sysSendto(fd sysFD, ip6 bool, ap netip.AddrPort) error {
	return os.NewSyscallError("sendto", windows.Sendto(fd, []byte("lab"), 0, sockaddr(ip6, ap)))
}

func sysDrain(fd sysFD, proto string) int {
	n := 0
	buf := make([]byte, 64)
	for {
		if proto == "udp" {
			if _, _, err := windows.Recvfrom(fd, buf, 0); err != nil {
				return n
			}
		} else {
			r1, _, _ := procAccept.Call(uintptr(fd), 0, 0)
			if windows.Handle(r1) == windows.InvalidHandle {
				return n
			}
			windows.Closesocket(windows.Handle(r1))
		}
		n++
	}
}

// sysWaitEOF reads until the peer's FIN. It calls recv, not
// windows.Recvfrom: a connected TCP socket reports no source address, which
// Recvfrom turns into EAFNOSUPPORT even when the read itself succeeded.
func sysWaitEOF(fd sysFD, deadline time.Time) error {
	buf := make([]byte, 64)
	for {
		r1, _, err := procRecv.Call(uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0)
		switch n := int32(r1); {
		case n == 0:
			return nil
		case n > 0:
			continue // data before the FIN: read on
		case !errors.Is(err, windows.WSAEWOULDBLOCK):
			return os.NewSyscallError("recv", err)
		}
		if err := waitFD(fd, pollRdNorm, deadline); err != nil {
			return err
		}
	}
}

// errnoName names a Winsock error the way the Unix agents do, so one
// catalog compares across systems; the raw WSAE number is kept.
func errnoName(err error) (string, int) {
	var errno windows.Errno
	if !errors.As(err, &errno) {
		return wire.Error, 0
	}
	if name, ok := wsaNames[errno]; ok {
		return name, int(errno)
	}
	return fmt.Sprintf("WSA%d", int(errno)), int(errno)
}

var wsaNames = map[windows.Errno]string{
	windows.WSAEADDRINUSE:    "EADDRINUSE",
	windows.WSAEADDRNOTAVAIL: "EADDRNOTAVAIL",
	windows.WSAEACCES:        "EACCES",
	windows.WSAEINVAL:        "EINVAL",
	windows.WSAEWOULDBLOCK:   "EAGAIN",
	windows.WSAECONNREFUSED:  "ECONNREFUSED",
	windows.WSAEAFNOSUPPORT:  "EAFNOSUPPORT",
	windows.WSAENOPROTOOPT:   "ENOPROTOOPT",
	windows.WSAEISCONN:       "EISCONN",
	windows.WSAENOTCONN:      "ENOTCONN",
	windows.WSAEOPNOTSUPP:    "EOPNOTSUPP",
	windows.WSAEFAULT:        "EFAULT",
	windows.WSAENOTSOCK:      "ENOTSOCK",
	windows.WSAEMFILE:        "EMFILE",
	windows.WSAENOBUFS:       "ENOBUFS",
	windows.WSAETIMEDOUT:     "ETIMEDOUT",
	windows.WSAECONNRESET:    "ECONNRESET",
	windows.WSAEALREADY:      "EALREADY",
	windows.WSAEINPROGRESS:   "EINPROGRESS",
	windows.WSAECONNABORTED:  "ECONNABORTED",
	windows.WSAESHUTDOWN:     "ESHUTDOWN",
}
