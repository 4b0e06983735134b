//go:build unix && !rump && !fstack

package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"lab/wire"
)

// sysFD is a socket descriptor.
type sysFD = int

// errWouldBlock is what a call that would have to wait fails with.
var errWouldBlock error = unix.EAGAIN

// Sockets are non-blocking so that accept, connect and reads wait with
// poll(2) under a deadline instead of hanging the agent.
func sysSocket(ip6 bool, proto string) (sysFD, error) {
	family := unix.AF_INET
	if ip6 {
		family = unix.AF_INET6
	}
	typ := unix.SOCK_STREAM
	if proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	// The fork lock keeps a helper process started meanwhile (for a slow
	// scenario running beside this one) from inheriting the descriptor
	// before it is marked close-on-exec: a copy there would hold its port.
	syscall.ForkLock.RLock()
	fd, err := unix.Socket(family, typ, 0)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("fcntl", err)
	}
	return fd, nil
}

func sysSetopt(fd sysFD, ip6 bool, o wire.Option) error {
	level, opt, ok := sockopt(o.Name, ip6)
	if !ok {
		return errUnsupported
	}
	err := unix.SetsockoptInt(fd, level, opt, o.Value)
	// A kernel older than the option (Linux before 3.9 for SO_REUSEPORT)
	// refuses it with ENOPROTOOPT: the OS does not have it.
	if level == unix.SOL_SOCKET && errors.Is(err, unix.ENOPROTOOPT) {
		return fmt.Errorf("%w: %w", errUnsupported, err)
	}
	return os.NewSyscallError("setsockopt", err)
}

func sockaddr(ip6 bool, ap netip.AddrPort) unix.Sockaddr {
	if ip6 {
		return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	if !ap.Addr().Is4() && !ap.Addr().Is4In6() {
		// An IPv6 address on an IPv4 socket: let the kernel refuse it.
		return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
}

func sysBind(fd sysFD, ip6 bool, ap netip.AddrPort) error {
	return os.NewSyscallError("bind", unix.Bind(fd, sockaddr(ip6, ap)))
}

func sysListen(fd sysFD) error {
	return os.NewSyscallError("listen", unix.Listen(fd, 128))
}

// sysConnect connects and, for TCP, waits for the handshake to finish.
func sysConnect(fd sysFD, ip6 bool, ap netip.AddrPort, deadline time.Time) error {
	err := unix.Connect(fd, sockaddr(ip6, ap))
	if err != unix.EINPROGRESS {
		return os.NewSyscallError("connect", err)
	}
	if err := waitFD(fd, unix.POLLOUT, deadline); err != nil {
		return err
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if soerr != 0 {
		return os.NewSyscallError("connect", unix.Errno(soerr))
	}
	return nil
}

// waitFD waits until fd is ready for events or the deadline passes, which
// yields EAGAIN (ETIMEDOUT would be mistaken for a TCP timeout).
func waitFD(fd sysFD, events int16, deadline time.Time) error {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return os.NewSyscallError("poll", unix.EAGAIN)
		}
		ms := int((left + time.Millisecond - 1) / time.Millisecond) // round up: never return before the deadline
		fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("poll", err)
		}
		if n > 0 {
			return nil
		}
	}
}

func sysAccept(fd sysFD, deadline time.Time) (sysFD, error) {
	for {
		syscall.ForkLock.RLock()
		nfd, _, err := unix.Accept(fd)
		if err == nil {
			unix.CloseOnExec(nfd)
		}
		syscall.ForkLock.RUnlock()
		if err == nil {
			unix.SetNonblock(nfd, true)
			return nfd, nil
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return -1, os.NewSyscallError("accept", err)
		}
		if err := waitFD(fd, unix.POLLIN, deadline); err != nil {
			return -1, err
		}
	}
}

func sysClose(fd sysFD) error { return os.NewSyscallError("close", unix.Close(fd)) }

func sysLocal(fd sysFD) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, os.NewSyscallError("getsockname", err)
	}
	return addrPort("getsockname", sa)
}

// sysPeer is the address the socket is connected to; ENOTCONN when it is
// not connected.
func sysPeer(fd sysFD) (netip.AddrPort, error) {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return netip.AddrPort{}, os.NewSyscallError("getpeername", err)
	}
	return addrPort("getpeername", sa)
}

func addrPort(call string, sa unix.Sockaddr) (netip.AddrPort, error) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("%s: unexpected address %T", call, sa)
}

// sysSetLinger sets SO_LINGER: on with a linger time in seconds, or off.
func sysSetLinger(fd sysFD, on bool, secs int) error {
	l := unix.Linger{Linger: int32(secs)}
	if on {
		l.Onoff = 1
	}
	return os.NewSyscallError("setsockopt", unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &l))
}

// sysSetBlocking makes the socket blocking again, so that a close with
// SO_LINGER on waits for the linger time as a plain program's would: BSD
// kernels do not wait on a non-blocking socket.
func sysSetBlocking(fd sysFD) error {
	return os.NewSyscallError("fcntl", unix.SetNonblock(fd, false))
}

// sysSend queues b on a connected socket without waiting, and says how much
// the kernel took; EAGAIN when it took nothing.
func sysSend(fd sysFD, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, os.NewSyscallError("write", err)
		}
		return n, nil
	}
}

// sysRecv waits until the socket is readable or the deadline passes (then
// EAGAIN) and reads once into b: n > 0 bytes, 0 at the peer's FIN, or the
// pending error (ECONNRESET after a reset).
func sysRecv(fd sysFD, b []byte, deadline time.Time) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err == nil {
			return n, nil
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return 0, os.NewSyscallError("read", err)
		}
		if err := waitFD(fd, unix.POLLIN, deadline); err != nil {
			return 0, err
		}
	}
}

func sysSendto(fd sysFD, ip6 bool, ap netip.AddrPort) error {
	return os.NewSyscallError("sendto", unix.Sendto(fd, []byte("lab"), 0, sockaddr(ip6, ap)))
}

func sysDrain(fd sysFD, proto string) int {
	n := 0
	buf := make([]byte, 64)
	for {
		if proto == "udp" {
			if _, _, err := unix.Recvfrom(fd, buf, 0); err != nil {
				return n
			}
		} else {
			nfd, _, err := unix.Accept(fd)
			if err != nil {
				return n
			}
			unix.Close(nfd)
		}
		n++
	}
}

// sysWaitEOF reads until the peer's FIN arrives.
func sysWaitEOF(fd sysFD, deadline time.Time) error {
	buf := make([]byte, 64)
	for {
		n, err := unix.Read(fd, buf)
		if err == nil && n == 0 {
			return nil
		}
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			return os.NewSyscallError("read", err)
		}
		if err := waitFD(fd, unix.POLLIN, deadline); err != nil {
			return err
		}
	}
}

// errnoName names the errno behind err portably, keeping its number.
func errnoName(err error) (string, int) {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name, int(errno)
		}
		return fmt.Sprintf("errno%d", int(errno)), int(errno)
	}
	return wire.Error, 0
}
