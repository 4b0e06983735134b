// Package remote is an SSH connection to a target: a guest lab booted or a host that was
// already there. It waits for SSH to come up, checks the host key (pinned or known_hosts),
// uploads files (SFTP, or a shell command where the host has no SFTP server) and runs
// commands, keeping a failure of the command apart from a failure of the connection.
package remote

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Config says how to reach a target.
type Config struct {
	Addr   string // host:port
	User   string
	Signer ssh.Signer // the client key; see LoadSigner
	// HostKey checks the target's host key: PinnedHostKey or ssh.FixedHostKey for guests
	// lab built, KnownHosts for real hosts.
	HostKey ssh.HostKeyCallback
	// Deadline is the total time Dial waits for SSH to come up; 0 means one minute.
	Deadline time.Duration
	// Abort, when closed, makes Dial stop waiting at once (pass a VM's Exited channel: a
	// guest that died will not start sshd).
	Abort <-chan struct{}
	// KeepaliveInterval and KeepaliveMisses detect a target that stopped answering without
	// closing the connection (a hung guest): after that many intervals without an answer the
	// connection is closed. Defaults 2 s and 3.
	KeepaliveInterval time.Duration
	KeepaliveMisses   int
	// MaxBannerWait caps how long one attempt waits for the server's first
	// bytes (default 8 s, for slow real hosts). A guest behind QEMU's
	// user-mode network that was just booted is reached sooner with a short
	// cap: an early connection stalls in QEMU, not in sshd.
	MaxBannerWait time.Duration
	// Log receives what the connection does; nil discards.
	Log hclog.Logger
}

// Timing of Dial.
const (
	defaultDeadline = time.Minute
	// Backoff between attempts doubles from firstBackoff up to maxBackoff. A refused
	// connection costs next to nothing, and a guest's sshd is up within seconds, so the cap
	// is low: measured with a 1 s cap, a TCG guest was reached 0.45 s after its sshd
	// listened only because of the backoff.
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 500 * time.Millisecond
	// connectTimeout bounds the TCP connect of one attempt.
	connectTimeout = 5 * time.Second
	// The wait for the server's first bytes starts at firstBannerWait and doubles, up to
	// maxBannerWait, each time it runs out. QEMU's user-mode network accepts a forwarded
	// connection at once, before the guest is up, and then retries its SYN to the guest
	// with growing delays, so a connection made too early can sit for seconds after sshd
	// is ready; giving up on it soon and connecting anew gets in sooner. The doubling
	// keeps a slow real host reachable.
	firstBannerWait = time.Second
	maxBannerWait   = 8 * time.Second
	// handshakeTimeout bounds the rest of the handshake once the server has spoken: key
	// exchange and authentication take about a second in a guest under TCG.
	handshakeTimeout = 30 * time.Second
)

// Client is an established SSH connection to one target. Its methods may be called
// concurrently.
type Client struct {
	ssh  *ssh.Client
	addr string
	log  hclog.Logger

	done      chan struct{} // closed when the connection has ended, for whatever reason
	closeOnce sync.Once
	broken    atomic.Pointer[error] // why lab closed the connection (keepalive), if it did

	lastUpload atomic.Value // "sftp" or "exec": which way the last Upload went, for tests
}

// Dial connects to cfg.Addr and authenticates, retrying with capped exponential backoff
// until it works, cfg.Deadline passes, ctx ends or cfg.Abort is closed. A wrong host key
// is not retried: the error wraps ErrHostKey. Every failure to connect is a
// *TransportError.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("remote: invalid config: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.With("addr", cfg.Addr)
	deadline := cfg.Deadline
	if deadline <= 0 {
		deadline = defaultDeadline
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	// One context for everything that ends the wait, so each attempt needs to watch only it.
	ctx, stop := withAbort(ctx, cfg.Abort)
	defer stop()

	start := time.Now()
	var hostKeyAlgos []string
	var typeMismatch *hostKeyError // set while retrying with the known host key type
	backoff, bannerWait := firstBackoff, firstBannerWait
	var lastErr error
	for attempt := 1; ; attempt++ {
		conn, err := dialOnce(ctx, cfg, hostKeyAlgos, bannerWait)
		if err == nil {
			log.Debug("ssh connected", "attempt", attempt, "took", time.Since(start).Round(time.Millisecond))
			return newClient(conn, cfg, log), nil
		}
		var hk *hostKeyError
		if errors.As(err, &hk) {
			if algos := hk.otherTypeAlgorithms(); algos != nil && typeMismatch == nil {
				// The target offered a key of another type than the ones we know (Go
				// prefers RSA, OpenSSH's known_hosts often holds ed25519): ask for a known
				// type rather than call it a mismatch.
				log.Debug("asking for the known host key type", "offered", hk.got.Type(), "algorithms", algos)
				hostKeyAlgos, typeMismatch = algos, hk
				continue
			}
			return nil, &TransportError{Op: "dial", Addr: cfg.Addr, Err: err}
		}
		if typeMismatch != nil && errors.Is(err, errNoHostKeyCheck) {
			// The target spoke but the handshake ended before any host key was shown:
			// it refused the key types we asked for, so it has none of the keys we know.
			return nil, &TransportError{Op: "dial", Addr: cfg.Addr,
				Err: fmt.Errorf("%w (and it has no key of a known type: %v)", typeMismatch, err)}
		}
		if errors.Is(err, errNoBanner) {
			bannerWait = min(2*bannerWait, cmp.Or(cfg.MaxBannerWait, maxBannerWait))
		}
		lastErr = err
		log.Trace("ssh not up yet", "attempt", attempt, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		if ctx.Err() != nil {
			why := context.Cause(ctx)
			if parent.Err() == nil && errors.Is(why, context.DeadlineExceeded) {
				why = fmt.Errorf("ssh not up within %v: %w", deadline, why)
			}
			return nil, &TransportError{Op: "dial", Addr: cfg.Addr,
				Err: fmt.Errorf("%w (%d attempts, last: %v)", why, attempt, lastErr)}
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (cfg *Config) check() error {
	var errs []error
	if cfg.Addr == "" {
		errs = append(errs, errors.New("no Addr"))
	}
	if cfg.User == "" {
		errs = append(errs, errors.New("no User"))
	}
	if cfg.Signer == nil {
		errs = append(errs, errors.New("no Signer"))
	}
	if cfg.HostKey == nil {
		errs = append(errs, errors.New("no HostKey callback (refusing to trust any host key)"))
	}
	return errors.Join(errs...)
}

// withAbort returns a context that also ends, with cause ErrAborted, when abort is closed.
func withAbort(ctx context.Context, abort <-chan struct{}) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	if abort != nil {
		go func() {
			select {
			case <-abort:
				cancel(fmt.Errorf("%w while waiting for ssh", ErrAborted))
			case <-ctx.Done():
			}
		}()
	}
	return ctx, func() { cancel(nil) }
}

// errNoBanner means the server did not send its version line in time.
var errNoBanner = errors.New("no ssh banner")

// errNoHostKeyCheck means the server spoke, but the handshake failed before it showed a
// host key: with restricted HostKeyAlgorithms, because it has none of those types.
var errNoHostKeyCheck = errors.New("handshake failed before the host key check")

// dialOnce makes one connection attempt.
func dialOnce(ctx context.Context, cfg Config, hostKeyAlgos []string, bannerWait time.Duration) (*ssh.Client, error) {
	d := net.Dialer{Timeout: connectTimeout}
	tcp, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	// Closing the connection is the only way to interrupt a handshake in progress.
	stop := context.AfterFunc(ctx, func() { tcp.Close() })
	defer stop()
	conn := &bannerConn{Conn: tcp}
	conn.SetDeadline(time.Now().Add(bannerWait))

	var hkErr *hostKeyError
	hkChecked := false
	config := &ssh.ClientConfig{
		User: cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			hkChecked = true
			if err := cfg.HostKey(host, remote, key); err != nil {
				hkErr = newHostKeyError(host, key, err)
				return hkErr
			}
			return nil
		},
		HostKeyAlgorithms: hostKeyAlgos,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, cfg.Addr, config)
	if err != nil {
		tcp.Close()
		if hkErr != nil {
			// Whatever the ssh package made of it, this is a host key problem.
			return nil, hkErr
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if !conn.spoke && errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w within %v", errNoBanner, bannerWait)
		}
		if conn.spoke && !hkChecked {
			return nil, fmt.Errorf("%w: %w", errNoHostKeyCheck, err)
		}
		return nil, err
	}
	if !stop() {
		// ctx ended just as the handshake finished and the connection is being closed.
		c.Close()
		return nil, context.Cause(ctx)
	}
	// The deadlines were for the handshake; from now on keepalives watch the connection.
	tcp.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// bannerConn moves the connection's deadline from the banner wait to handshakeTimeout once
// the server has sent its first bytes.
type bannerConn struct {
	net.Conn
	spoke bool // only the handshake goroutine reads before the deadline is cleared
}

func (b *bannerConn) Read(p []byte) (int, error) {
	n, err := b.Conn.Read(p)
	if n > 0 && !b.spoke {
		b.spoke = true
		b.Conn.SetDeadline(time.Now().Add(handshakeTimeout))
	}
	return n, err
}

// hostKeyError is a host key the callback refused.
type hostKeyError struct {
	host string
	got  ssh.PublicKey
	want []ssh.PublicKey // the keys expected, when the callback says which
	err  error
}

func newHostKeyError(host string, got ssh.PublicKey, err error) *hostKeyError {
	e := &hostKeyError{host: host, got: got, err: err}
	var ke *knownhosts.KeyError
	var pe *pinnedKeyError
	switch {
	case errors.As(err, &ke):
		for _, k := range ke.Want {
			e.want = append(e.want, k.Key)
		}
	case errors.As(err, &pe):
		e.want = []ssh.PublicKey{pe.want}
	}
	return e
}

func (e *hostKeyError) Error() string {
	return fmt.Sprintf("%v: %s presented %s %s: %v", ErrHostKey, e.host, e.got.Type(), ssh.FingerprintSHA256(e.got), e.err)
}

func (e *hostKeyError) Unwrap() []error { return []error{ErrHostKey, e.err} }

// otherTypeAlgorithms returns the host key algorithms of the expected keys if none of them
// has the type of the key presented: then the target has several host keys and merely
// offered one we do not know. It returns nil for a true mismatch.
func (e *hostKeyError) otherTypeAlgorithms() []string {
	if len(e.want) == 0 {
		return nil
	}
	var algos []string
	for _, k := range e.want {
		if k.Type() == e.got.Type() {
			return nil
		}
		if k.Type() == ssh.KeyAlgoRSA {
			// An RSA key signs with SHA-2 in every OpenSSH since 7.2; ssh-rsa (SHA-1) last.
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		}
		algos = append(algos, k.Type())
	}
	return algos
}

// pinnedKeyError is the error of a PinnedHostKey callback.
type pinnedKeyError struct{ want ssh.PublicKey }

func (e *pinnedKeyError) Error() string {
	return fmt.Sprintf("want the pinned %s %s", e.want.Type(), ssh.FingerprintSHA256(e.want))
}

// PinnedHostKey returns a host key callback that accepts exactly the key in
// authorizedKeyLine ("ssh-ed25519 AAAA... comment"), as for guests whose host key lab made.
func PinnedHostKey(authorizedKeyLine []byte) (ssh.HostKeyCallback, error) {
	want, _, _, _, err := ssh.ParseAuthorizedKey(authorizedKeyLine)
	if err != nil {
		return nil, fmt.Errorf("remote: parsing pinned host key: %w", err)
	}
	wantBytes := want.Marshal()
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		if bytes.Equal(key.Marshal(), wantBytes) {
			return nil
		}
		return &pinnedKeyError{want: want}
	}, nil
}

// KnownHosts returns a host key callback that checks keys against an OpenSSH known_hosts
// file, as for real hosts. A host missing from the file is refused like a wrong key.
func KnownHosts(path string) (ssh.HostKeyCallback, error) {
	cb, err := knownhosts.New(path)
	if err != nil {
		return nil, fmt.Errorf("remote: reading known_hosts: %w", err)
	}
	return cb, nil
}

// LoadSigner reads an unencrypted private key file. Like ssh(1), it refuses a file that
// others than its owner may read: such a key must be considered leaked.
func LoadSigner(path string) (ssh.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("remote: loading private key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("remote: loading private key: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("remote: private key %s has mode %04o, readable by others; want 0600 (chmod 600 %s)", path, perm, path)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("remote: loading private key %s: %w", path, err)
	}
	signer, err := ssh.ParsePrivateKey(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("remote: parsing private key %s: %w", path, err)
	}
	return signer, nil
}

func newClient(c *ssh.Client, cfg Config, log hclog.Logger) *Client {
	client := &Client{ssh: c, addr: cfg.Addr, log: log, done: make(chan struct{})}
	go func() {
		c.Wait()
		close(client.done)
	}()
	interval, misses := cfg.KeepaliveInterval, cfg.KeepaliveMisses
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if misses <= 0 {
		misses = 3
	}
	go client.keepalive(interval, misses)
	return client
}

// keepalive sends a request every interval and closes the connection when none has been
// answered for misses intervals. TCP alone would not notice: a guest that hangs, or a QEMU
// that is stopped, keeps the forwarded connection open and silent.
func (c *Client) keepalive(interval time.Duration, misses int) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastAnswer atomic.Int64
	lastAnswer.Store(time.Now().UnixNano())
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		silent := time.Since(time.Unix(0, lastAnswer.Load()))
		if silent > time.Duration(misses)*interval {
			c.fail(fmt.Errorf("%w for %v", ErrKeepalive, silent.Round(time.Millisecond)))
			return
		}
		// Any reply counts, including OpenSSH's "request failed" for a request it does not
		// know. A request stuck on a dead peer returns when the connection is closed.
		go func() {
			if _, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil); err == nil {
				lastAnswer.Store(time.Now().UnixNano())
			}
		}()
	}
}

// fail closes the connection because of err, which later transport errors report.
func (c *Client) fail(err error) {
	if c.broken.CompareAndSwap(nil, &err) {
		c.log.Warn("closing connection", "why", err)
	}
	c.ssh.Close()
}

// transportError wraps err, a failure of the connection during op; if lab itself closed the
// connection because the target stopped answering, that reason is reported.
func (c *Client) transportError(op string, err error) *TransportError {
	if why := c.broken.Load(); why != nil {
		err = fmt.Errorf("%w (%v)", *why, err)
	}
	return &TransportError{Op: op, Addr: c.addr, Err: err}
}

// Close closes the connection; commands still running on it end with a transport error.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.ssh.Close()
		<-c.done
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	})
	return err
}
