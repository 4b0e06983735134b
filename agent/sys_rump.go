//go:build rump

package agent

// The socket calls of sys_unix.go, made on the rump kernel with NetBSD's ABI
// (netbsd_rump.go): sockaddrs with sin_len, NetBSD's option numbers, and
// NetBSD's errno numbers, named as NetBSD names them. Each call runs whole on
// the kernel's thread (kernel_rump.go), in the process its descriptor
// belongs to.

/*
#include <sys/types.h>
#include <stdint.h>
#include <rump/rump.h>
#include <rump/rump_syscalls.h>

// rump_sys_fcntl is variadic, which cgo cannot call.
static int lab_fcntl(int fd, int cmd, int arg) { return rump_sys_fcntl(fd, cmd, arg); }
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

	"lab/wire"
)

// sysFD is a descriptor of a rump kernel process, with the process in its
// high bits (kernel_rump.go).
type sysFD = int

// errnoOf is the NetBSD errno cgo found after a failed call.
func errnoOf(err error) netbsdErrno {
	var e syscall.Errno
	if errors.As(err, &e) && e != 0 {
		return netbsdErrno(e)
	}
	return 0
}

// callErr is nil when the call succeeded, else its errno wrapped with its
// name, as os.NewSyscallError does on the host.
func callErr(call string, failed bool, err error) error {
	if !failed {
		return nil
	}
	if e := errnoOf(err); e != 0 {
		return os.NewSyscallError(call, e)
	}
	return fmt.Errorf("%s failed without an errno", call)
}

func sysSocket(ip6 bool, proto string) (sysFD, error) { return socketIn(mainProc, ip6, proto) }

// socketIn opens a non-blocking socket in process proc, so that accept,
// connect and reads wait with poll under a deadline.
func socketIn(proc int, ip6 bool, proto string) (sysFD, error) {
	family := C.int(nbAF_INET)
	if ip6 {
		family = nbAF_INET6
	}
	typ := C.int(nbSOCK_STREAM)
	if proto == "udp" {
		typ = nbSOCK_DGRAM
	}
	var fd C.int
	var err error
	do(proc, func() {
		var e error
		fd, e = C.rump_sys_socket(family, typ, 0)
		if err = callErr("socket", fd < 0, e); err != nil {
			return
		}
		if err = setNonblock(fd); err != nil {
			C.rump_sys_close(fd)
		}
	})
	if err != nil {
		return -1, err
	}
	return agentFD(proc, fd), nil
}

// setNonblock sets O_NONBLOCK on fd (on the kernel's thread).
func setNonblock(fd C.int) error {
	fl, e := C.lab_fcntl(fd, nbF_GETFL, 0)
	if fl < 0 {
		return callErr("fcntl", true, e)
	}
	r, e := C.lab_fcntl(fd, nbF_SETFL, fl|nbO_NONBLOCK)
	return callErr("fcntl", r < 0, e)
}

func sysSetopt(fd sysFD, ip6 bool, o wire.Option) error {
	level, opt, ok := sockopt(o.Name, ip6)
	if !ok {
		return errUnsupported
	}
	var err error
	do(procOf(fd), func() {
		v := C.int(o.Value)
		r, e := C.rump_sys_setsockopt(kernelFD(fd), C.int(level), C.int(opt), unsafe.Pointer(&v), C.socklen_t(unsafe.Sizeof(v)))
		err = callErr("setsockopt", r < 0, e)
	})
	// NetBSD refuses a socket-level option it does not know with
	// ENOPROTOOPT (sosetopt in sys/kern/uipc_socket.c): the OS lacks it.
	if level == nbSOL_SOCKET && errors.Is(err, netbsdErrno(nbENOPROTOOPT)) {
		return fmt.Errorf("%w: %w", errUnsupported, err)
	}
	return err
}

// sockaddr is ap as NetBSD's struct sockaddr_in or sockaddr_in6. An ip6
// socket always gets a sockaddr_in6 (an IPv4 address in its mapped form); an
// IPv6 address given to an IPv4 socket gets one too, for the kernel to refuse.
func sockaddr(ip6 bool, ap netip.AddrPort) []byte {
	if ip6 || (!ap.Addr().Is4() && !ap.Addr().Is4In6()) {
		b := make([]byte, nbSizeofSockaddrIn6)
		b[0], b[1] = nbSizeofSockaddrIn6, nbAF_INET6
		binary.BigEndian.PutUint16(b[2:4], ap.Port())
		a := ap.Addr().As16()
		copy(b[8:24], a[:]) // after sin6_flowinfo; sin6_scope_id stays 0
		return b
	}
	b := make([]byte, nbSizeofSockaddrIn)
	b[0], b[1] = nbSizeofSockaddrIn, nbAF_INET
	binary.BigEndian.PutUint16(b[2:4], ap.Port())
	a := ap.Addr().Unmap().As4()
	copy(b[4:8], a[:])
	return b
}

// parseSockaddr reads a NetBSD sockaddr_in or sockaddr_in6.
func parseSockaddr(b []byte) (netip.AddrPort, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, fmt.Errorf("a sockaddr of %d bytes", len(b))
	}
	switch {
	case b[1] == nbAF_INET && len(b) >= nbSizeofSockaddrIn:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4])), nil
	case b[1] == nbAF_INET6 && len(b) >= nbSizeofSockaddrIn6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), binary.BigEndian.Uint16(b[2:4])), nil
	}
	return netip.AddrPort{}, fmt.Errorf("a sockaddr of family %d, %d bytes", b[1], len(b))
}

func sysBind(fd sysFD, ip6 bool, ap netip.AddrPort) error {
	faultBind(ap)
	sa := sockaddr(ip6, ap)
	var err error
	do(procOf(fd), func() {
		r, e := C.rump_sys_bind(kernelFD(fd), (*C.struct_sockaddr)(unsafe.Pointer(&sa[0])), C.socklen_t(len(sa)))
		err = callErr("bind", r < 0, e)
	})
	return err
}

func sysListen(fd sysFD) error {
	var err error
	do(procOf(fd), func() {
		r, e := C.rump_sys_listen(kernelFD(fd), 128)
		err = callErr("listen", r < 0, e)
	})
	return err
}

// sysConnect connects and, for TCP, waits for the handshake to finish.
func sysConnect(fd sysFD, ip6 bool, ap netip.AddrPort, deadline time.Time) error {
	sa := sockaddr(ip6, ap)
	var err error
	do(procOf(fd), func() {
		r, e := C.rump_sys_connect(kernelFD(fd), (*C.struct_sockaddr)(unsafe.Pointer(&sa[0])), C.socklen_t(len(sa)))
		if r == 0 {
			return
		}
		if errnoOf(e) != nbEINPROGRESS {
			err = callErr("connect", true, e)
			return
		}
		if err = waitFD(kernelFD(fd), nbPOLLOUT, deadline); err != nil {
			return
		}
		var soerr C.int
		n := C.socklen_t(unsafe.Sizeof(soerr))
		r, e = C.rump_sys_getsockopt(kernelFD(fd), nbSOL_SOCKET, nbSO_ERROR, unsafe.Pointer(&soerr), &n)
		if err = callErr("getsockopt", r < 0, e); err == nil && soerr != 0 {
			err = os.NewSyscallError("connect", netbsdErrno(soerr))
		}
	})
	return err
}

// pollfd is NetBSD's struct pollfd (sys/sys/poll.h): int fd; short events;
// short revents.
type pollfd struct {
	fd      int32
	events  int16
	revents int16
}

// waitFD waits, on the kernel's thread, until fd is ready for events or the
// deadline passes, which yields EAGAIN (ETIMEDOUT would be mistaken for a TCP
// timeout).
func waitFD(fd C.int, events int16, deadline time.Time) error {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return os.NewSyscallError("poll", netbsdErrno(nbEAGAIN))
		}
		ms := int((min(left, 20*time.Millisecond) + time.Millisecond - 1) / time.Millisecond) // XXX
		p := pollfd{fd: int32(fd), events: events}
		n, e := C.rump_sys_poll((*C.struct_pollfd)(unsafe.Pointer(&p)), 1, C.int(ms))
		if n < 0 && errnoOf(e) == nbEINTR {
			continue
		}
		if n < 0 {
			return callErr("poll", true, e)
		}
		if n > 0 {
			return nil
		}
	}
}

func sysAccept(fd sysFD, deadline time.Time) (sysFD, error) {
	var nfd C.int
	var err error
	do(procOf(fd), func() {
		for {
			var e error
			nfd, e = C.rump_sys_accept(kernelFD(fd), nil, nil)
			if nfd >= 0 {
				setNonblock(nfd)
				return
			}
			if n := errnoOf(e); n != nbEAGAIN && n != nbEINTR {
				err = callErr("accept", true, e)
				return
			}
			if err = waitFD(kernelFD(fd), nbPOLLIN, deadline); err != nil {
				return
			}
		}
	})
	if err != nil {
		return -1, err
	}
	return agentFD(procOf(fd), nfd), nil
}

func sysClose(fd sysFD) error {
	var err error
	do(procOf(fd), func() {
		r, e := C.rump_sys_close(kernelFD(fd))
		err = callErr("close", r < 0, e)
	})
	return err
}

func sysLocal(fd sysFD) (netip.AddrPort, error) {
	var b [nbSizeofSockaddrIn6]byte
	n := C.socklen_t(len(b))
	var err error
	do(procOf(fd), func() {
		r, e := C.rump_sys_getsockname(kernelFD(fd), (*C.struct_sockaddr)(unsafe.Pointer(&b[0])), &n)
		err = callErr("getsockname", r < 0, e)
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap, err := parseSockaddr(b[:min(int(n), len(b))])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockname: %w", err)
	}
	return ap, nil
}

func sysSendto(fd sysFD, ip6 bool, ap netip.AddrPort) error {
	sa := sockaddr(ip6, ap)
	msg := []byte("lab")
	var err error
	do(procOf(fd), func() {
		r, e := C.rump_sys_sendto(kernelFD(fd), unsafe.Pointer(&msg[0]), C.size_t(len(msg)), 0,
			(*C.struct_sockaddr)(unsafe.Pointer(&sa[0])), C.socklen_t(len(sa)))
		err = callErr("sendto", r < 0, e)
	})
	return err
}

func sysDrain(fd sysFD, proto string) int {
	n := 0
	do(procOf(fd), func() {
		var buf [64]byte
		for {
			if proto == "udp" {
				if r, _ := C.rump_sys_recvfrom(kernelFD(fd), unsafe.Pointer(&buf[0]), C.size_t(len(buf)), 0, nil, nil); r < 0 {
					return
				}
			} else {
				nfd, _ := C.rump_sys_accept(kernelFD(fd), nil, nil)
				if nfd < 0 {
					return
				}
				C.rump_sys_close(nfd)
			}
			n++
		}
	})
	return n
}

// sysWaitEOF reads until the peer's FIN arrives.
func sysWaitEOF(fd sysFD, deadline time.Time) error {
	var err error
	do(procOf(fd), func() {
		var buf [64]byte
		for {
			n, e := C.rump_sys_read(kernelFD(fd), unsafe.Pointer(&buf[0]), C.size_t(len(buf)))
			if n == 0 {
				return
			}
			if n < 0 {
				if no := errnoOf(e); no != nbEAGAIN && no != nbEINTR {
					err = callErr("read", true, e)
					return
				}
			}
			if err = waitFD(kernelFD(fd), nbPOLLIN, deadline); err != nil {
				return
			}
		}
	})
	return err
}

// rumpFcntl is fcntl(fd, cmd, 0) in the current process, on the kernel's
// thread; the tests use it to find the descriptors left open.
func rumpFcntl(fd, cmd int) int { return int(C.lab_fcntl(C.int(fd), C.int(cmd), 0)) }

// errnoName names the NetBSD errno behind err, keeping its number.
func errnoName(err error) (string, int) {
	var e netbsdErrno
	if errors.As(err, &e) {
		return e.name(), int(e)
	}
	return wire.Error, 0
}

// errWouldBlock is what a call that would have to wait fails with:
// NetBSD's EAGAIN (EWOULDBLOCK is the same number there).
var errWouldBlock error = netbsdErrno(nbEAGAIN)

// sysPeer is the address the socket is connected to; ENOTCONN when it is
// not connected.
func sysPeer(fd sysFD) (netip.AddrPort, error) {
	var b [nbSizeofSockaddrIn6]byte
	n := C.socklen_t(len(b))
	var err error
	do(procOf(fd), func() {
		r, e := C.rump_sys_getpeername(kernelFD(fd), (*C.struct_sockaddr)(unsafe.Pointer(&b[0])), &n)
		err = callErr("getpeername", r < 0, e)
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap, err := parseSockaddr(b[:min(int(n), len(b))])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getpeername: %w", err)
	}
	return ap, nil
}

// linger is NetBSD's struct linger (sys/sys/socket.h): int l_onoff; int
// l_linger, the time in seconds.
type linger struct {
	onoff, linger int32
}

// sysSetLinger sets SO_LINGER: on with a linger time in seconds, or off.
func sysSetLinger(fd sysFD, on bool, secs int) error {
	l := linger{linger: int32(secs)}
	if on {
		l.onoff = 1
	}
	var err error
	do(procOf(fd), func() {
		r, e := C.rump_sys_setsockopt(kernelFD(fd), nbSOL_SOCKET, nbSO_LINGER, unsafe.Pointer(&l), C.socklen_t(unsafe.Sizeof(l)))
		err = callErr("setsockopt", r < 0, e)
	})
	return err
}

// sysSetBlocking clears O_NONBLOCK, so that a close with SO_LINGER on waits
// for the linger time as a plain program's would: NetBSD's soclose does not
// wait on a non-blocking socket (SS_NBIO, sys/kern/uipc_socket.c:757-760). The
// wait puts the kernel's thread to sleep (sowait), while the softint
// threads move loopback's packets.
func sysSetBlocking(fd sysFD) error {
	var err error
	do(procOf(fd), func() {
		fl, e := C.lab_fcntl(kernelFD(fd), nbF_GETFL, 0)
		if fl < 0 {
			err = callErr("fcntl", true, e)
			return
		}
		r, e := C.lab_fcntl(kernelFD(fd), nbF_SETFL, fl&^nbO_NONBLOCK)
		err = callErr("fcntl", r < 0, e)
	})
	return err
}

// sysSend queues b on a connected socket without waiting, and says how much
// the kernel took; EAGAIN when it took nothing. MSG_NOSIGNAL: a send on a
// reset connection must fail with EPIPE, not raise SIGPIPE, which the rump
// kernel's signal model would raise in the agent's own process
// (rumpsig_raise, sys/rump/librump/rumpkern/signals.c).
func sysSend(fd sysFD, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var err error
	do(procOf(fd), func() {
		for {
			r, e := C.rump_sys_sendto(kernelFD(fd), unsafe.Pointer(&b[0]), C.size_t(len(b)), nbMSG_NOSIGNAL, nil, 0)
			if r < 0 && errnoOf(e) == nbEINTR {
				continue
			}
			if err = callErr("send", r < 0, e); err == nil {
				n = int(r)
			}
			return
		}
	})
	return n, err
}

// sysRecv waits until the socket is readable or the deadline passes (then
// EAGAIN) and reads once into b: n > 0 bytes, 0 at the peer's FIN, or the
// pending error (ECONNRESET after a reset).
func sysRecv(fd sysFD, b []byte, deadline time.Time) (int, error) {
	var n int
	var err error
	do(procOf(fd), func() {
		for {
			r, e := C.rump_sys_read(kernelFD(fd), unsafe.Pointer(&b[0]), C.size_t(len(b)))
			if r >= 0 {
				n = int(r)
				return
			}
			if no := errnoOf(e); no != nbEAGAIN && no != nbEINTR {
				err = callErr("read", true, e)
				return
			}
			if err = waitFD(kernelFD(fd), nbPOLLIN, deadline); err != nil {
				return
			}
		}
	})
	return n, err
}

// sysEphemeralPorts reads the range NetBSD picks local ports from for port
// 0 and an unbound connect: net.inet.ip.anonportmin and anonportmax
// (anonportmin/anonportmax in sys/netinet/in_pcb.c, created in
// sys/netinet/ip_input.c), which IPv6 sockets mapped to IPv4 share.
func sysEphemeralPorts() (lo, hi int, err error) {
	if lo, err = sysctlInt("net.inet.ip.anonportmin"); err != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: %w", err)
	}
	if hi, err = sysctlInt("net.inet.ip.anonportmax"); err != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: %w", err)
	}
	return lo, hi, nil
}
