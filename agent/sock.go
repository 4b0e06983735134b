package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"lab/wire"
)

// sockets is a set of named sockets living in one process: this one (table)
// or the helper running as another user (helper).
type sockets interface {
	open(name string, ip6 bool, proto string) error
	setopt(name string, o wire.Option) error
	bind(name string, ap netip.AddrPort) error
	listen(name string) error
	connect(name string, ap netip.AddrPort, deadline time.Time) error
	accept(name, newName string, deadline time.Time) error
	close(name string) error
	// localAddr is the socket's bound address, "" when it has none.
	localAddr(name string) string
	isIP6(name string) bool
	// fd is the socket's descriptor (handle on Windows) in the process that
	// holds it, -1 when there is no such socket.
	fd(name string) int
	// drain takes everything waiting on the socket without blocking (pending
	// datagrams, or connections, which it closes) and says how many.
	drain(name string) int
	// send queues up to n bytes on a connected socket without waiting and
	// says how many the kernel took.
	send(name string, n int) (int, error)
	sendto(name string, ap netip.AddrPort) error
	// recv reads until the stream ends (eof), fails (the error), or nothing
	// more arrives (see recvWait): n bytes then, an EAGAIN error when n is 0.
	recv(name string, deadline time.Time) (n int, eof bool, err error)
	// peerAddr is the socket's peer address, "" when it is not connected.
	peerAddr(name string) string
	closeAll()
}

// recvWait is how long a recv step waits for anything to arrive, and
// recvMore how long, once data came, for more or for the end of the stream:
// on loopback a segment that was sent arrives within microseconds, and a
// FIN or RST right behind the data it follows; the margins are for
// emulated guests. Datagrams are queued when sendto returns, so a UDP recv
// waits less (recvWaitUDP) and takes what is queued.
const (
	recvWait    = 500 * time.Millisecond
	recvWaitUDP = 100 * time.Millisecond
	recvMore    = 200 * time.Millisecond
)

// callError is a failed call reported by errno name, as it arrives from the
// helper process.
type callError struct {
	Name  string
	Errno int
}

func (e *callError) Error() string { return fmt.Sprintf("%s (%d)", e.Name, e.Errno) }

// Is makes errors.Is compare call errors by errno, as it does errnos.
func (e *callError) Is(target error) bool {
	t, ok := target.(*callError)
	return ok && t.Name == e.Name && t.Errno == e.Errno
}

// sock is one open socket of this process.
type sock struct {
	fd    sysFD
	ip6   bool
	proto string
	// linger is SO_LINGER on: a close step then blocks, as a plain
	// program's close would.
	linger bool
}

// table holds this process's sockets by name. The mutex lets a scenario that
// timed out be closed while its goroutine may still be in a call.
type table struct {
	mu     sync.Mutex
	socks  map[string]*sock
	closed bool // by shut
	// gone, once set (abandon), is what every call returns: the process
	// that held the sockets has ended.
	gone error
	// calls, when not nil, collects every call made with what it returned,
	// for a step (timewait) whose own sockets are hidden from the trace.
	calls *[]string
}

func newTable() *table { return &table{socks: map[string]*sock{}} }

var errNoSocket = &callError{Name: "EBADF", Errno: -1}

var errShut = errors.New("the scenario's sockets were closed after its deadline")

func (t *table) get(name string) (*sock, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone != nil {
		return nil, t.gone
	}
	s, ok := t.socks[name]
	if !ok {
		return nil, errNoSocket
	}
	return s, nil
}

// put adds a socket, or closes it when the table was shut: nothing would
// close it later.
func (t *table) put(name string, s *sock) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		sysClose(s.fd)
		return errShut
	}
	t.socks[name] = s
	return nil
}

// record adds a call to t.calls, if t collects them, strace-style: what it
// returned, and on failure the errno's name.
func (t *table) record(ret int, err error, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.calls == nil {
		return
	}
	c := fmt.Sprintf(format, args...)
	if err != nil {
		c += " = -1 " + result("", err).Result
	} else {
		c += " = " + strconv.Itoa(ret)
	}
	*t.calls = append(*t.calls, c)
}

func (t *table) open(name string, ip6 bool, proto string) error {
	fd, err := sysSocket(ip6, proto)
	t.record(int(fd), err, "socket(%s, %s)", familyName(ip6), proto)
	if err != nil {
		return err
	}
	return t.put(name, &sock{fd: fd, ip6: ip6, proto: proto})
}

func (t *table) setopt(name string, o wire.Option) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	if o.Name == "SO_LINGER" {
		err = sysSetLinger(s.fd, !o.Off, o.Value)
		if err == nil {
			t.mu.Lock()
			s.linger = !o.Off
			t.mu.Unlock()
		}
		t.record(0, err, "setsockopt(%d, %s)", s.fd, optValue(o))
		return err
	}
	err = sysSetopt(s.fd, s.ip6, o)
	t.record(0, err, "setsockopt(%d, %s=%d)", s.fd, o.Name, o.Value)
	return err
}

func (t *table) bind(name string, ap netip.AddrPort) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	err = sysBind(s.fd, s.ip6, ap)
	t.record(0, err, "bind(%d, %s)", s.fd, ap)
	return err
}

func (t *table) listen(name string) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	err = sysListen(s.fd)
	t.record(0, err, "listen(%d)", s.fd)
	return err
}

func (t *table) connect(name string, ap netip.AddrPort, deadline time.Time) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	err = sysConnect(s.fd, s.ip6, ap, deadline)
	t.record(0, err, "connect(%d, %s)", s.fd, ap)
	return err
}

func (t *table) accept(name, newName string, deadline time.Time) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	fd, err := sysAccept(s.fd, deadline)
	t.record(int(fd), err, "accept(%d)", s.fd)
	if err != nil {
		return err
	}
	return t.put(newName, &sock{fd: fd, ip6: s.ip6, proto: s.proto})
}

func (t *table) close(name string) error {
	t.mu.Lock()
	if t.gone != nil {
		t.mu.Unlock()
		return t.gone
	}
	s, ok := t.socks[name]
	delete(t.socks, name)
	t.mu.Unlock()
	if !ok {
		return errNoSocket
	}
	if s.linger {
		// A non-blocking close does not linger on the BSDs or Windows;
		// the answer's SO_LINGER is a plain, blocking program's.
		if err := sysSetBlocking(s.fd); err != nil {
			sysClose(s.fd)
			return err
		}
	}
	err := sysClose(s.fd)
	t.record(0, err, "close(%d)", s.fd)
	return err
}

func (t *table) localAddr(name string) string {
	s, err := t.get(name)
	if err != nil {
		return ""
	}
	ap, err := sysLocal(s.fd)
	if err != nil || (ap.Port() == 0 && ap.Addr().IsUnspecified()) {
		return ""
	}
	return ap.String()
}

func (t *table) isIP6(name string) bool {
	s, err := t.get(name)
	return err == nil && s.ip6
}

func (t *table) fd(name string) int {
	s, err := t.get(name)
	if err != nil {
		return -1
	}
	return int(s.fd)
}

func (t *table) drain(name string) int {
	s, err := t.get(name)
	if err != nil {
		return 0
	}
	return sysDrain(s.fd, s.proto)
}

func (t *table) sendto(name string, ap netip.AddrPort) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	return sysSendto(s.fd, s.ip6, ap)
}

// payload is what send steps send: lab's name over and over.
var payload = []byte("lab")

func (t *table) send(name string, n int) (int, error) {
	s, err := t.get(name)
	if err != nil {
		return 0, err
	}
	buf := bytes.Repeat(payload, n/len(payload)+1)[:n]
	sent := 0
	for sent < n {
		m, err := sysSend(s.fd, buf[sent:])
		if err != nil {
			if sent > 0 && errors.Is(err, errWouldBlock) {
				break // the kernel took what it could: that is the answer
			}
			return sent, err
		}
		sent += m
	}
	return sent, nil
}

func (t *table) recv(name string, deadline time.Time) (int, bool, error) {
	s, err := t.get(name)
	if err != nil {
		return 0, false, err
	}
	buf := make([]byte, 64<<10)
	total := 0
	for {
		wait := recvWait
		switch {
		case total > 0 && s.proto == "udp":
			wait = 0
		case total > 0:
			wait = recvMore
		case s.proto == "udp":
			wait = recvWaitUDP
		}
		n, err := sysRecv(s.fd, buf, minTime(time.Now().Add(wait), deadline))
		switch {
		case err == nil && n == 0 && s.proto == "tcp":
			return total, true, nil
		case err == nil:
			total += n
		case total > 0 && errors.Is(err, errWouldBlock):
			return total, false, nil
		default:
			return total, false, err
		}
	}
}

func (t *table) peerAddr(name string) string {
	s, err := t.get(name)
	if err != nil {
		return ""
	}
	ap, err := sysPeer(s.fd)
	if err != nil {
		return ""
	}
	return ap.String()
}

func (t *table) waitEOF(name string, deadline time.Time) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	err = sysWaitEOF(s.fd, deadline)
	t.record(0, err, "read(%d)", s.fd) // the read that saw the FIN returns 0
	return err
}

func (t *table) closeAll() {
	t.mu.Lock()
	socks := t.socks
	t.socks = map[string]*sock{}
	t.mu.Unlock()
	for _, s := range socks {
		if s.linger {
			// The scenario is over: a close that waited out its linger
			// time would only hold up the next one.
			sysSetLinger(s.fd, true, 0)
		}
		sysClose(s.fd)
	}
}

// shut is closeAll for good: the table refuses new sockets from then on, so
// a step of a timed-out scenario still in a call cannot open one that nothing
// would close.
func (t *table) shut() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.closeAll()
}

// abandon forgets every socket without closing it, as their process has
// ended and the kernel closed them; every later call fails with err.
func (t *table) abandon(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.socks = map[string]*sock{}
	t.closed = true
	t.gone = err
}

// count reports how many sockets are open, for tests that check nothing
// leaks.
func (t *table) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.socks)
}
