package agent

import (
	"fmt"
	"net/netip"
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
	// drain takes everything waiting on the socket without blocking (pending
	// datagrams, or connections, which it closes) and says how many.
	drain(name string) int
	closeAll()
}

// callError is a failed call reported by errno name, as it arrives from the
// helper process.
type callError struct {
	Name  string
	Errno int
}

func (e *callError) Error() string { return fmt.Sprintf("%s (%d)", e.Name, e.Errno) }

// sock is one open socket of this process.
type sock struct {
	fd    sysFD
	ip6   bool
	proto string
}

// table holds this process's sockets by name. The mutex lets a scenario that
// timed out be closed while its goroutine may still be in a call.
type table struct {
	mu    sync.Mutex
	socks map[string]*sock
}

func newTable() *table { return &table{socks: map[string]*sock{}} }

var errNoSocket = &callError{Name: "EBADF", Errno: -1}

func (t *table) get(name string) (*sock, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.socks[name]
	if !ok {
		return nil, errNoSocket
	}
	return s, nil
}

func (t *table) put(name string, s *sock) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.socks[name] = s
}

func (t *table) open(name string, ip6 bool, proto string) error {
	fd, err := sysSocket(ip6, proto)
	if err != nil {
		return err
	}
	t.put(name, &sock{fd: fd, ip6: ip6, proto: proto})
	return nil
}

func (t *table) setopt(name string, o wire.Option) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	return sysSetopt(s.fd, s.ip6, o)
}

func (t *table) bind(name string, ap netip.AddrPort) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	return sysBind(s.fd, s.ip6, ap)
}

func (t *table) listen(name string) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	return sysListen(s.fd)
}

func (t *table) connect(name string, ap netip.AddrPort, deadline time.Time) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	return sysConnect(s.fd, s.ip6, ap, deadline)
}

func (t *table) accept(name, newName string, deadline time.Time) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	fd, err := sysAccept(s.fd, deadline)
	if err != nil {
		return err
	}
	t.put(newName, &sock{fd: fd, ip6: s.ip6, proto: s.proto})
	return nil
}

func (t *table) close(name string) error {
	t.mu.Lock()
	s, ok := t.socks[name]
	delete(t.socks, name)
	t.mu.Unlock()
	if !ok {
		return errNoSocket
	}
	return sysClose(s.fd)
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

func (t *table) waitEOF(name string, deadline time.Time) error {
	s, err := t.get(name)
	if err != nil {
		return err
	}
	return sysWaitEOF(s.fd, deadline)
}

func (t *table) closeAll() {
	t.mu.Lock()
	socks := t.socks
	t.socks = map[string]*sock{}
	t.mu.Unlock()
	for _, s := range socks {
		sysClose(s.fd)
	}
}

// count reports how many sockets are open, for tests that check nothing
// leaks.
func (t *table) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.socks)
}
