//go:build linux

// These tests look into /proc and rely on Linux process semantics (Pdeathsig, setsid).

package remote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"lab/internal/testenv"
)

const sshdPath = "/usr/sbin/sshd"

// needSSHD skips the test when OpenSSH's server is missing, except in CI, where it must be
// installed.
func needSSHD(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI (apt-get install openssh-server): %v", sshdPath, err)
		}
		t.Skipf("skipping: %s not installed", sshdPath)
	}
}

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// keys holds what a test sshd and its clients need.
type keys struct {
	hostKeyFiles []string        // private host keys for sshd
	hostPub      []ssh.PublicKey // their public halves, ed25519 first
	client       ssh.Signer
	clientFile   string // the client's private key, mode 0600
	authorized   string // authorized_keys holding the client's public key
}

func writePrivate(t *testing.T, path string, key any) {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

// makeKeys generates an ed25519 host key (and an RSA one if withRSA) and a client key.
func makeKeys(t *testing.T, withRSA bool) *keys {
	t.Helper()
	dir := t.TempDir()
	k := &keys{}
	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k.hostKeyFiles = append(k.hostKeyFiles, filepath.Join(dir, "host_ed25519"))
	writePrivate(t, k.hostKeyFiles[0], hostPriv)
	pub, _ := ssh.NewPublicKey(hostPub)
	k.hostPub = append(k.hostPub, pub)
	if withRSA {
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		k.hostKeyFiles = append(k.hostKeyFiles, filepath.Join(dir, "host_rsa"))
		writePrivate(t, k.hostKeyFiles[1], rsaKey)
		pub, _ := ssh.NewPublicKey(&rsaKey.PublicKey)
		k.hostPub = append(k.hostPub, pub)
	}
	_, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k.clientFile = filepath.Join(dir, "client")
	writePrivate(t, k.clientFile, clientPriv)
	if k.client, err = ssh.NewSignerFromKey(clientPriv); err != nil {
		t.Fatal(err)
	}
	k.authorized = filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(k.authorized, ssh.MarshalAuthorizedKey(k.client.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// sshd is a private OpenSSH server on 127.0.0.1 run by a test.
type sshd struct {
	addr string
	pid  int
	log  *sshdLog
}

type sshdOptions struct {
	noSFTP bool // leave out "Subsystem sftp", to test the shell fallback
	port   int  // 0: pick a free one
}

// startSSHD starts sshd with its own configuration and keys and kills it, and everything it
// started, by PID when the test ends.
func startSSHD(t *testing.T, k *keys, opt sshdOptions) *sshd {
	t.Helper()
	needSSHD(t)
	if os.Geteuid() == 0 {
		// sshd insists on its privilege separation directory, which Debian creates only
		// when the service starts.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		port := opt.port
		if port == 0 {
			port = freePort(t)
		}
		var conf strings.Builder
		fmt.Fprintf(&conf, "ListenAddress 127.0.0.1:%d\n", port)
		for _, f := range k.hostKeyFiles {
			fmt.Fprintf(&conf, "HostKey %s\n", f)
		}
		fmt.Fprintf(&conf, "AuthorizedKeysFile %s\n", k.authorized)
		conf.WriteString("PidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n" +
			"PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n" +
			"AllowUsers " + me.Username + "\n")
		if !opt.noSFTP {
			conf.WriteString("Subsystem sftp internal-sftp\n")
		}
		confPath := filepath.Join(t.TempDir(), "sshd_config")
		if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		log := &sshdLog{listening: make(chan struct{})}
		cmd := exec.Command(sshdPath, "-D", "-e", "-f", confPath)
		cmd.Stderr = log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting sshd: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		s := &sshd{addr: fmt.Sprintf("127.0.0.1:%d", port), pid: cmd.Process.Pid, log: log}
		t.Cleanup(func() {
			s.killConnections(syscall.SIGKILL)
			syscall.Kill(s.pid, syscall.SIGKILL)
			<-exited
			if t.Failed() {
				t.Logf("sshd log:\n%s", log.String())
			}
		})
		select {
		case <-log.listening:
			return s
		case <-exited:
			if strings.Contains(log.String(), "Address already in use") && opt.port == 0 && attempt < 5 {
				continue
			}
			t.Fatalf("sshd exited:\n%s", log.String())
		case <-time.After(10 * time.Second):
			t.Fatalf("sshd did not start listening:\n%s", log.String())
		}
	}
}

// connectionPIDs lists the processes sshd forked for connections, and their children.
func (s *sshd) connectionPIDs() []int { return testenv.Descendants(s.pid) }

// killConnections signals every process sshd forked, by PID, leaving the listener.
func (s *sshd) killConnections(sig syscall.Signal) int {
	pids := s.connectionPIDs()
	for _, pid := range pids {
		syscall.Kill(pid, sig)
	}
	return len(pids)
}

type sshdLog struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	listening chan struct{}
	once      sync.Once
}

func (l *sshdLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if bytes.Contains(l.buf.Bytes(), []byte("Server listening on")) {
		l.once.Do(func() { close(l.listening) })
	}
	return len(p), nil
}

func (l *sshdLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func pinned(t *testing.T, key ssh.PublicKey) ssh.HostKeyCallback {
	t.Helper()
	cb, err := PinnedHostKey(ssh.MarshalAuthorizedKey(key))
	if err != nil {
		t.Fatal(err)
	}
	return cb
}

func knownHostsFile(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func otherKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	return k
}

func dial(t *testing.T, s *sshd, k *keys, hostKey ssh.HostKeyCallback) *Client {
	t.Helper()
	me, _ := user.Current()
	c, err := Dial(context.Background(), Config{
		Addr: s.addr, User: me.Username, Signer: k.client, HostKey: hostKey,
		Deadline: 10 * time.Second, Log: testLogger(t),
	})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// countKeys wraps a host key callback and records the key types it was asked about.
type countKeys struct {
	mu    sync.Mutex
	types []string
}

func (c *countKeys) wrap(cb ssh.HostKeyCallback) ssh.HostKeyCallback {
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		c.mu.Lock()
		c.types = append(c.types, key.Type())
		c.mu.Unlock()
		return cb(host, remote, key)
	}
}

func TestHostKeys(t *testing.T) {
	k := makeKeys(t, true)
	s := startSSHD(t, k, sshdOptions{})
	ed, rsaKey := k.hostPub[0], k.hostPub[1]
	host := knownhosts.Normalize(s.addr)
	mustKnown := func(lines ...string) ssh.HostKeyCallback {
		cb, err := KnownHosts(knownHostsFile(t, lines...))
		if err != nil {
			t.Fatal(err)
		}
		return cb
	}
	tests := []struct {
		name    string
		hostKey ssh.HostKeyCallback
		ok      bool
		asked   int // how often the callback must have been asked, 0: don't care
	}{
		{"pinned ed25519", pinned(t, ed), true, 2},
		{"pinned rsa", pinned(t, rsaKey), true, 1},
		{"pinned wrong key", pinned(t, otherKey(t)), false, 2}, // offered RSA first, then ed25519
		{"known_hosts ed25519", mustKnown(knownhosts.Line([]string{host}, ed)), true, 0},
		{"known_hosts rsa", mustKnown(knownhosts.Line([]string{host}, rsaKey)), true, 0},
		{"known_hosts both", mustKnown(knownhosts.Line([]string{host}, ed), knownhosts.Line([]string{host}, rsaKey)), true, 1},
		{"known_hosts mismatch", mustKnown(knownhosts.Line([]string{host}, otherKey(t))), false, 0},
		{"known_hosts other host only", mustKnown(knownhosts.Line([]string{"[127.0.0.1]:1"}, ed)), false, 1},
		{"ssh.FixedHostKey wrong", ssh.FixedHostKey(otherKey(t)), false, 1},
	}
	me, _ := user.Current()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var asked countKeys
			start := time.Now()
			c, err := Dial(context.Background(), Config{
				Addr: s.addr, User: me.Username, Signer: k.client, HostKey: asked.wrap(tc.hostKey),
				Deadline: 20 * time.Second, Log: testLogger(t),
			})
			took := time.Since(start)
			if tc.ok {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				c.Close()
			} else {
				if err == nil {
					c.Close()
					t.Fatal("Dial succeeded with a wrong host key")
				}
				var te *TransportError
				if !errors.Is(err, ErrHostKey) || !errors.As(err, &te) {
					t.Errorf("err = %v, want a *TransportError wrapping ErrHostKey", err)
				}
				// No retries: one handshake takes milliseconds, the backoff alone would
				// add 100 ms, and the deadline is 20 s.
				if took > 2*time.Second {
					t.Errorf("refusal took %v, want at once", took)
				}
				t.Logf("refused after %v: %v", took.Round(time.Millisecond), err)
			}
			if tc.asked != 0 && len(asked.types) != tc.asked {
				t.Errorf("callback asked %d times (%v), want %d", len(asked.types), asked.types, tc.asked)
			}
		})
	}
}

// TestHostKeyNoKnownType: the target has only keys of types we do not know.
func TestHostKeyNoKnownType(t *testing.T) {
	k := makeKeys(t, false) // ed25519 only
	s := startSSHD(t, k, sshdOptions{})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, _ := ssh.NewPublicKey(&rsaKey.PublicKey)
	me, _ := user.Current()
	start := time.Now()
	_, err = Dial(context.Background(), Config{
		Addr: s.addr, User: me.Username, Signer: k.client, HostKey: pinned(t, rsaPub),
		Deadline: 20 * time.Second, Log: testLogger(t),
	})
	if !errors.Is(err, ErrHostKey) || time.Since(start) > 2*time.Second {
		t.Errorf("Dial = %v after %v, want ErrHostKey at once", err, time.Since(start))
	}
}

func TestDialWaitsForSSHD(t *testing.T) {
	needSSHD(t)
	k := makeKeys(t, false)
	port := freePort(t)
	me, _ := user.Current()
	type result struct {
		c   *Client
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		c, err := Dial(context.Background(), Config{
			Addr: fmt.Sprintf("127.0.0.1:%d", port), User: me.Username, Signer: k.client,
			HostKey: pinned(t, k.hostPub[0]), Deadline: 30 * time.Second, Log: testLogger(t),
		})
		done <- result{c, err}
	}()
	const late = 1500 * time.Millisecond
	time.Sleep(late)
	startSSHD(t, k, sshdOptions{port: port})
	sshdUp := time.Since(start)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Dial: %v", r.err)
		}
		defer r.c.Close()
		took := time.Since(start)
		t.Logf("sshd listening after %v, Dial returned after %v", sshdUp.Round(time.Millisecond), took.Round(time.Millisecond))
		if took < late {
			t.Errorf("Dial returned after %v, before sshd started", took)
		}
		// The backoff is capped at 1 s.
		if took > sshdUp+2*time.Second {
			t.Errorf("Dial returned %v after sshd came up, want within the backoff cap", took-sshdUp)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Dial did not return")
	}
}

func TestDialGivesUp(t *testing.T) {
	k := makeKeys(t, false)
	me, _ := user.Current()
	closed := make(chan struct{})
	close(closed)
	tests := []struct {
		name     string
		deadline time.Duration
		abort    func() <-chan struct{}
		ctx      func() (context.Context, context.CancelFunc)
		want     error
		within   time.Duration
	}{
		{name: "abort already closed", deadline: time.Minute, abort: func() <-chan struct{} { return closed },
			want: ErrAborted, within: 300 * time.Millisecond},
		{name: "abort closed while waiting", deadline: time.Minute, abort: func() <-chan struct{} {
			ch := make(chan struct{})
			time.AfterFunc(500*time.Millisecond, func() { close(ch) })
			return ch
		}, want: ErrAborted, within: 800 * time.Millisecond},
		{name: "deadline", deadline: 700 * time.Millisecond, want: context.DeadlineExceeded, within: time.Second},
		{name: "ctx cancelled", deadline: time.Minute, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 400*time.Millisecond)
		}, want: context.DeadlineExceeded, within: 700 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A port nobody listens on: every attempt is refused at once.
			addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			var abort <-chan struct{}
			if tc.abort != nil {
				abort = tc.abort()
			}
			start := time.Now()
			_, err := Dial(ctx, Config{Addr: addr, User: me.Username, Signer: k.client,
				HostKey: pinned(t, k.hostPub[0]), Deadline: tc.deadline, Abort: abort})
			took := time.Since(start)
			var te *TransportError
			if !errors.Is(err, tc.want) || !errors.As(err, &te) {
				t.Errorf("err = %v, want a *TransportError wrapping %v", err, tc.want)
			}
			if took > tc.within {
				t.Errorf("Dial returned after %v, want within %v", took, tc.within)
			}
			t.Logf("after %v: %v", took.Round(time.Millisecond), err)
		})
	}
}

func TestDialConfig(t *testing.T) {
	_, err := Dial(context.Background(), Config{Addr: "127.0.0.1:1"})
	var te *TransportError
	if err == nil || errors.As(err, &te) {
		t.Fatalf("err = %v, want a config error", err)
	}
	for _, w := range []string{"User", "Signer", "HostKey"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("err = %v, want it to mention %s", err, w)
		}
	}
}

func TestUpload(t *testing.T) {
	k := makeKeys(t, false)
	servers := map[string]*sshd{
		"sftp": startSSHD(t, k, sshdOptions{}),
		"exec": startSSHD(t, k, sshdOptions{noSFTP: true}),
	}
	content := make([]byte, 3<<20+17)
	rand.Read(content)
	tests := []struct {
		server string
		mode   os.FileMode
		exists bool // a file is already there
	}{
		{"sftp", 0o755, false},
		{"sftp", 0o640, true},
		{"exec", 0o755, false},
		{"exec", 0o600, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%04o/exists=%v", tc.server, tc.mode, tc.exists), func(t *testing.T) {
			c := dial(t, servers[tc.server], k, pinned(t, k.hostPub[0]))
			dir := t.TempDir()
			dst := filepath.Join(dir, "it's an agent")
			if tc.exists {
				if err := os.WriteFile(dst, []byte("old"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Upload(context.Background(), bytes.NewReader(content), dst, tc.mode); err != nil {
				t.Fatalf("Upload: %v", err)
			}
			if got := c.lastUpload.Load(); got != tc.server {
				t.Errorf("uploaded via %v, want %s", got, tc.server)
			}
			got, err := os.ReadFile(dst)
			if err != nil || !bytes.Equal(got, content) {
				t.Errorf("content differs (%d bytes, want %d; err %v)", len(got), len(content), err)
			}
			if st, err := os.Stat(dst); err != nil || st.Mode().Perm() != tc.mode {
				t.Errorf("mode = %v (err %v), want %v", st.Mode().Perm(), err, tc.mode)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the upload", len(entries))
			}
		})
	}
	for name, s := range servers {
		t.Run(name+"/missing directory", func(t *testing.T) {
			c := dial(t, s, k, pinned(t, k.hostPub[0]))
			err := c.Upload(context.Background(), strings.NewReader("x"), filepath.Join(t.TempDir(), "no", "such", "dir", "f"), 0o644)
			var te *TransportError
			if err == nil || errors.As(err, &te) {
				t.Errorf("err = %v, want a non-transport error", err)
			}
			t.Logf("%v", err)
		})
	}
}

// lineRecorder records when each line of output arrived.
type lineRecorder struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines []string
	at    []time.Time
}

func (r *lineRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Write(p)
	for {
		line, err := r.buf.ReadString('\n')
		if err != nil {
			r.buf.WriteString(line)
			break
		}
		r.lines = append(r.lines, strings.TrimSuffix(line, "\n"))
		r.at = append(r.at, time.Now())
	}
	return len(p), nil
}

// count returns how many lines have arrived.
func (r *lineRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lines)
}

func TestRun(t *testing.T) {
	k := makeKeys(t, false)
	s := startSSHD(t, k, sshdOptions{})
	c := dial(t, s, k, pinned(t, k.hostPub[0]))
	ctx := context.Background()

	t.Run("streams stdout", func(t *testing.T) {
		var out lineRecorder
		remoteErr, transportErr := c.Run(ctx, "for i in 1 2 3; do echo line$i; sleep 0.4; done", nil, &out, nil)
		end := time.Now()
		if remoteErr != nil || transportErr != nil {
			t.Fatalf("Run = %v, %v", remoteErr, transportErr)
		}
		if strings.Join(out.lines, ",") != "line1,line2,line3" {
			t.Fatalf("lines = %q", out.lines)
		}
		if early := end.Sub(out.at[0]); early < 700*time.Millisecond {
			t.Errorf("first line arrived only %v before the end; output is not streamed", early)
		}
	})

	tests := []struct {
		name       string
		cmd        string
		stdin      string
		wantOut    string
		wantErr    string
		wantStatus int    // with wantSignal "": 0 means success
		wantSignal string // signal name
	}{
		{name: "success", cmd: "echo hello", wantOut: "hello\n"},
		{name: "exit status 3", cmd: "echo out; echo err >&2; exit 3", wantOut: "out\n", wantErr: "err\n", wantStatus: 3},
		{name: "stdin", cmd: "tr a-z A-Z", stdin: "shout\n", wantOut: "SHOUT\n"},
		{name: "killed by signal", cmd: "kill -KILL $$", wantSignal: "KILL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			var stdin io.Reader
			if tc.stdin != "" {
				stdin = strings.NewReader(tc.stdin)
			}
			remoteErr, transportErr := c.Run(ctx, tc.cmd, stdin, &stdout, &stderr)
			if transportErr != nil {
				t.Fatalf("transportErr = %v", transportErr)
			}
			if stdout.String() != tc.wantOut || stderr.String() != tc.wantErr {
				t.Errorf("stdout %q stderr %q, want %q %q", stdout.String(), stderr.String(), tc.wantOut, tc.wantErr)
			}
			var ee *ExitError
			switch {
			case tc.wantStatus == 0 && tc.wantSignal == "":
				if remoteErr != nil {
					t.Errorf("remoteErr = %v, want nil", remoteErr)
				}
			case !errors.As(remoteErr, &ee):
				t.Errorf("remoteErr = %v, want an *ExitError", remoteErr)
			case ee.Signal != tc.wantSignal || (tc.wantSignal == "" && ee.Status != tc.wantStatus):
				t.Errorf("remoteErr = %+v, want status %d signal %q", ee, tc.wantStatus, tc.wantSignal)
			}
		})
	}

	t.Run("local writer fails", func(t *testing.T) {
		remoteErr, transportErr := c.Run(ctx, "echo hi", nil, failWriter{}, nil)
		var te *TransportError
		if remoteErr != nil || transportErr == nil || errors.As(transportErr, &te) || !errors.Is(transportErr, errDiskFull) {
			t.Errorf("Run = %v, %v; want a local (non-transport) error", remoteErr, transportErr)
		}
	})

	// OpenSSH refuses to signal root's sessions, so what ends a cancelled command there is
	// its session's pipes closing; with another user SIGTERM ends all three.
	cancelTests := []struct {
		name  string
		cmd   string // %s is a marker that appears in the command's arguments
		stdin io.Reader
		ends  bool // the command must be gone after the cancel
	}{
		{name: "sleep", cmd: "exec sleep 30 %s", ends: os.Geteuid() != 0},
		{name: "reads stdin", cmd: "exec cat - /nonexistent/%s", stdin: blockingReader(t), ends: true},
		{name: "writes output", cmd: "while :; do echo tick; sleep 0.1; done # %s", ends: true},
	}
	for _, tc := range cancelTests {
		t.Run("ctx cancel/"+tc.name, func(t *testing.T) {
			// A number, so that sleep takes it as one more (tiny) duration.
			marker := fmt.Sprintf("0.%012d", time.Now().UnixNano()%1e12)
			t.Cleanup(func() { killWithArg(marker) })
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(500*time.Millisecond, cancel)
			start := time.Now()
			var out lineRecorder
			remoteErr, transportErr := c.Run(ctx, fmt.Sprintf(tc.cmd, marker), tc.stdin, &out, nil)
			took := time.Since(start)
			var te *TransportError
			if remoteErr != nil || !errors.Is(transportErr, context.Canceled) || errors.As(transportErr, &te) {
				t.Errorf("Run = %v, %v; want context.Canceled as the second error", remoteErr, transportErr)
			}
			if limit := 500*time.Millisecond + signalGrace + closeWait + 500*time.Millisecond; took > limit {
				t.Errorf("Run returned %v after start, want within %v", took, limit)
			}
			lines := out.count()
			time.Sleep(300 * time.Millisecond)
			if out.count() != lines {
				t.Errorf("output written after Run returned")
			}
			deadline := time.Now().Add(3 * time.Second)
			for tc.ends && anyWithArg(marker) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			running := anyWithArg(marker)
			t.Logf("Run returned after %v; command still running afterwards: %v", took.Round(time.Millisecond), running)
			if tc.ends && running {
				t.Error("the command is still running")
			}
			// The connection stays usable.
			if remoteErr, transportErr := c.Run(context.Background(), "true", nil, nil, nil); remoteErr != nil || transportErr != nil {
				t.Errorf("Run after cancel = %v, %v", remoteErr, transportErr)
			}
		})
	}
}

// blockingReader is a stdin that never yields anything.
func blockingReader(t *testing.T) io.Reader {
	r, w := io.Pipe()
	t.Cleanup(func() { w.Close() })
	return r
}

var errDiskFull = errors.New("disk full")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errDiskFull }

// pidsWithArg lists live processes that have an argument containing marker.
func pidsWithArg(marker string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(cmdline, []byte(marker)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func anyWithArg(marker string) bool { return len(pidsWithArg(marker)) > 0 }

// killWithArg kills, by PID, what a test left running on the "remote" (this) host.
func killWithArg(marker string) {
	for _, pid := range pidsWithArg(marker) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// TestConnectionLost checks that Run reports a *TransportError promptly when the server side
// of the connection dies (its sshd processes are killed) or freezes (they are stopped, which
// only keepalives notice).
func TestConnectionLost(t *testing.T) {
	k := makeKeys(t, false)
	tests := []struct {
		name   string
		signal syscall.Signal
		want   error // wrapped by the transport error, if anything in particular
		within time.Duration
	}{
		{name: "sshd killed", signal: syscall.SIGKILL, within: time.Second},
		// Keepalives every 200 ms, 3 misses: noticed within about a second.
		{name: "sshd frozen", signal: syscall.SIGSTOP, want: ErrKeepalive, within: 2 * time.Second},
	}
	me, _ := user.Current()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSSHD(t, k, sshdOptions{})
			c, err := Dial(context.Background(), Config{
				Addr: s.addr, User: me.Username, Signer: k.client, HostKey: pinned(t, k.hostPub[0]),
				KeepaliveInterval: 200 * time.Millisecond, Log: testLogger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.signal == syscall.SIGSTOP {
				// Frozen processes cannot die; thaw them before the cleanup kills them.
				defer s.killConnections(syscall.SIGCONT)
			}
			var out lineRecorder
			type result struct{ remoteErr, transportErr error }
			done := make(chan result, 1)
			go func() {
				r, tr := c.Run(context.Background(), "echo started; sleep 30", nil, &out, nil)
				done <- result{r, tr}
			}()
			deadline := time.Now().Add(10 * time.Second)
			for out.count() == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := s.killConnections(tc.signal); n == 0 {
				t.Fatal("found no sshd connection processes")
			}
			signalled := time.Now()
			select {
			case r := <-done:
				took := time.Since(signalled)
				t.Logf("Run returned %v after the signal: %v, %v", took.Round(time.Millisecond), r.remoteErr, r.transportErr)
				var te *TransportError
				if r.remoteErr != nil || !errors.As(r.transportErr, &te) {
					t.Errorf("Run = %v, %v; want nil and a *TransportError", r.remoteErr, r.transportErr)
				}
				if tc.want != nil && !errors.Is(r.transportErr, tc.want) {
					t.Errorf("transportErr = %v, want it to wrap %v", r.transportErr, tc.want)
				}
				if took > tc.within {
					t.Errorf("Run noticed after %v, want within %v", took, tc.within)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return after the connection was lost")
			}
			// Later calls fail as transport errors too, at once.
			if _, err := c.Run(context.Background(), "true", nil, nil, nil); !errors.As(err, new(*TransportError)) {
				t.Errorf("Run on the lost connection = %v, want a *TransportError", err)
			}
		})
	}
}

func TestLoadSigner(t *testing.T) {
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mode    os.FileMode
		garbage bool
		want    string // error substring; "" means success
	}{
		{name: "0600", mode: 0o600},
		{name: "0400", mode: 0o400},
		{name: "0644 refused", mode: 0o644, want: "readable by others"},
		{name: "0640 refused", mode: 0o640, want: "readable by others"},
		{name: "not a key", mode: 0o600, garbage: true, want: "parsing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if tc.garbage {
				os.WriteFile(path, []byte("not a key\n"), 0o600)
			} else {
				writePrivate(t, path, priv)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			s, err := LoadSigner(path)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("LoadSigner: %v", err)
				}
				if want, _ := ssh.NewSignerFromKey(priv); !bytes.Equal(s.PublicKey().Marshal(), want.PublicKey().Marshal()) {
					t.Error("loaded a different key")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadSigner = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := LoadSigner(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadSigner(missing) = %v, want ErrNotExist", err)
	}
}

func TestPinnedHostKey(t *testing.T) {
	if _, err := PinnedHostKey([]byte("not a key")); err == nil {
		t.Error("PinnedHostKey accepted garbage")
	}
	key := otherKey(t)
	cb := pinned(t, key)
	if err := cb("h:22", nil, key); err != nil {
		t.Errorf("pinned key refused: %v", err)
	}
	err := cb("h:22", nil, otherKey(t))
	var pe *pinnedKeyError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(key)) {
		t.Errorf("other key: %v, want an error naming the pinned key's fingerprint", err)
	}
}
