package target

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"lab/internal/output"

	"github.com/hashicorp/go-hclog"
)

// wineProvider runs the Windows agent on this machine under Wine. What it measures
// is Wine's emulation of Winsock on top of the host's kernel, not Windows:
// the agent says so in its environment line (kernel_version "Wine 8.0 on
// Linux ..."), and the results carry the provider name "wine". It is a
// quick way to exercise the Windows agent's code, and to see where Wine's
// emulation departs from the answer's claims about Windows.
type wineProvider struct{}

// wineConfig: Wine runs windows/amd64 agents only.
type wineConfig struct{}

func (wineProvider) NewConfig() Config { return &wineConfig{} }

func (*wineConfig) Validate(s *Spec) []string {
	var p []string
	if s.OS != "" && s.OS != "windows" {
		p = append(p, "a wine target runs the windows agent; leave \"os\" out or say windows")
	}
	if s.Arch != "" && s.Arch != "amd64" {
		p = append(p, fmt.Sprintf("lab runs the windows/amd64 agent under wine64; arch %q is not supported", s.Arch))
	}
	s.OS, s.Arch = "windows", "amd64"
	return p
}

func (*wineConfig) Describe() string { return "the Windows agent under Wine, on this machine" }

// wineBinaries finds Wine's loader and server. Debian's wine64 package puts
// both in /usr/lib/wine and only the wine package adds /usr/bin/wine (a
// script that picks wine64 when wine32 is missing); upstream builds put
// wine64 or wine on PATH.
func wineBinaries() (loader, server string, err error) {
	type pair struct{ loader, server string }
	var cands []pair
	for _, name := range []string{"wine64", "wine"} {
		if p, err := exec.LookPath(name); err == nil {
			cands = append(cands, pair{p, filepath.Join(filepath.Dir(p), "wineserver")})
		}
	}
	cands = append(cands, pair{"/usr/lib/wine/wine64", "/usr/lib/wine/wineserver64"}, pair{"/usr/lib/wine/wine64", "/usr/lib/wine/wineserver"})
	for _, c := range cands {
		if isExecutable(c.loader) && isExecutable(c.server) {
			return c.loader, c.server, nil
		}
	}
	return "", "", errors.New("wine64 is not installed (Debian: apt-get install wine64 wine)")
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0
}

// Check: Wine must be installed.
func (wineProvider) Check(Spec, Env) error {
	_, _, err := wineBinaries()
	return err
}

// wineVersion is what `wine --version` prints ("wine-8.0 (Debian
// 8.0~repack-4)"), for the log.
func wineVersion(ctx context.Context) (string, error) {
	loader, _, err := wineBinaries()
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, loader, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", loader, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Start prepares the target's Wine prefix (once; it is kept in the cache)
// and starts the prefix's wineserver, which lab owns for the target's life.
func (wineProvider) Start(ctx context.Context, s Spec, env Env) (*Instance, error) {
	loader, server, err := wineBinaries()
	if err != nil {
		return nil, err
	}
	if v, err := wineVersion(ctx); err == nil {
		env.Log.Info("Wine: the Windows agent runs on Wine's emulation of Winsock, not on Windows", "wine", v)
	}
	env.Phase("prefix")
	prefix, err := filepath.Abs(filepath.Join(env.CacheDir, "wine", s.Name))
	if err != nil {
		return nil, err
	}
	m := &wineMachine{loader: loader, server: server, prefix: prefix, log: env.Log}
	if err := m.startServer(); err != nil {
		return nil, err
	}
	if err := m.initPrefix(ctx); err != nil {
		return nil, errors.Join(err, m.Close(context.WithoutCancel(ctx)))
	}
	return &Instance{Agent: AgentBuild{GOOS: "windows", GOARCH: "amd64"}, Local: m}, nil
}

var _ Machine = (*wineMachine)(nil)

// wineMachine is one Wine prefix with its wineserver.
type wineMachine struct {
	loader, server, prefix string
	log                    hclog.Logger
	// tmp is the $TMPDIR of every Wine process of the machine, lab's own:
	// Debian's wineserver makes its socket's directory there (wine-XXXXXX,
	// named in the prefix's "wineserver" file) and never removes it, so
	// in the user's /tmp one was left per prefix. Close removes it.
	tmp string

	srv     *exec.Cmd
	srvDone chan struct{} // closed when srv has exited; srvErr is then set
	srvErr  error

	once sync.Once
	err  error
}

// wineEnv is the environment of every Wine process lab starts: its own
// prefix and server, no debug output (the agent's stdout is the results
// stream), and no display (WINEDLLOVERRIDES keeps wineboot from offering
// to install Mono and Gecko in a window).
func (m *wineMachine) wineEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DISPLAY", "WAYLAND_DISPLAY", "WINEPREFIX", "WINEDEBUG", "WINEDLLOVERRIDES", "WINESERVER", "WINEARCH", "TMPDIR":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "WINEPREFIX="+m.prefix, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=", "WINESERVER="+m.server, "TMPDIR="+m.tmp)
}

// serverLockWait is how long a second wineserver for a prefix takes to find
// the first one's lock and exit (status 2); measured in milliseconds.
const serverLockWait = 300 * time.Millisecond

// startServer starts the prefix's wineserver in the foreground as lab's own
// child, so lab knows its PID and ends it at Close. Wine allows one server
// per prefix; a second one exits at once, which here means another lab run
// is using this target's prefix.
func (m *wineMachine) startServer() error {
	if err := os.MkdirAll(filepath.Dir(m.prefix), 0o755); err != nil {
		return fmt.Errorf("creating Wine cache directory: %w", err)
	}
	if err := os.MkdirAll(m.prefix, 0o755); err != nil {
		return fmt.Errorf("creating Wine prefix: %w", err)
	}
	// Not under the cache: the server's socket is in there, and a socket's
	// path must fit in 108 bytes.
	tmp, err := os.MkdirTemp("", "lab-wine-")
	if err != nil {
		return fmt.Errorf("creating Wine's temporary directory: %w", err)
	}
	m.tmp = tmp
	started := false
	defer func() {
		if !started {
			os.RemoveAll(tmp)
		}
	}()
	var stderr bytes.Buffer
	srv := exec.Command(m.server, "--foreground", "--persistent=0")
	srv.Env = m.wineEnv()
	srv.Stderr = &stderr
	srv.SysProcAttr = childProcAttr()
	if err := srv.Start(); err != nil {
		return fmt.Errorf("starting wineserver: %w", err)
	}
	m.srv, m.srvDone = srv, make(chan struct{})
	go func() {
		m.srvErr = srv.Wait()
		close(m.srvDone)
	}()
	m.log.Debug("wineserver started", "pid", srv.Process.Pid, "prefix", m.prefix)
	select {
	case <-m.srvDone:
		if exit := (*exec.ExitError)(nil); errors.As(m.srvErr, &exit) && exit.ExitCode() == 2 {
			return fmt.Errorf("the Wine prefix %s is in use by another wineserver (is another lab run using this target?)", m.prefix)
		}
		return fmt.Errorf("wineserver exited at once: %v: %s", m.srvErr, strings.TrimSpace(stderr.String()))
	case <-time.After(serverLockWait):
		started = true
		return nil
	}
}

// readyMark is written into a prefix once wineboot made it and the shims
// are in place; a prefix without it is made anew.
const readyMark = ".lab-ready"

// initPrefix starts the prefix's session with wineboot: the first time
// with --init, which makes the prefix (about 7 s), after which lab adds the
// DLLs this Wine lacks for Go programs. wineboot starts the session's
// services, which live as long as the wineserver; started here, with
// wineboot's output going to a file, they do not inherit the agent's
// standard output and hold its pipe open after the agent has exited.
func (m *wineMachine) initPrefix(ctx context.Context) error {
	_, err := os.Stat(filepath.Join(m.prefix, readyMark))
	fresh := err != nil
	args := []string{"wineboot"}
	if fresh {
		args = append(args, "--init")
	}
	start := time.Now()
	logPath := m.prefix + ".wineboot.log"
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	boot := exec.CommandContext(ctx, m.loader, args...)
	boot.Env = m.wineEnv()
	boot.Stdout, boot.Stderr = logFile, logFile
	if err := boot.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), m.prefix, err, output.Tail(string(out), 5))
	}
	if !fresh {
		return nil
	}
	sys32 := filepath.Join(m.prefix, "drive_c", "windows", "system32")
	for _, s := range wineShims {
		p := filepath.Join(sys32, s.name)
		if _, err := os.Stat(p); err == nil {
			continue // this Wine has it
		}
		if err := os.WriteFile(p, forwarderDLL(s.name, s.exports), 0o644); err != nil {
			return fmt.Errorf("writing %s into the Wine prefix: %w", s.name, err)
		}
		m.log.Info("this Wine lacks a DLL Go programs load; lab added a forwarder", "dll", s.name, "why", s.why)
	}
	if err := os.WriteFile(filepath.Join(m.prefix, readyMark), nil, 0o644); err != nil {
		return err
	}
	m.log.Info("Wine prefix made", "prefix", m.prefix, "seconds", time.Since(start).Round(100*time.Millisecond).Seconds())
	return nil
}

// wineShims are DLLs that Go's Windows runtime loads and older Wines lack,
// each made of forwarded exports to a function Wine has.
var wineShims = []struct {
	name    string
	exports map[string]string
	why     string
}{
	{
		name: "bcryptprimitives.dll",
		// BOOL ProcessPrng(PBYTE, SIZE_T) and BOOLEAN RtlGenRandom(PVOID,
		// ULONG) (advapi32's SystemFunction036) take the same registers,
		// fill the buffer with random bytes and return true.
		exports: map[string]string{"ProcessPrng": "advapi32.SystemFunction036"},
		why:     "Go 1.22 and later get random bytes from bcryptprimitives.dll's ProcessPrng, which Wine 8 (Debian 12) does not have",
	},
}

// Upload: the agent runs where it was built, through Wine's loader.
func (m *wineMachine) Upload(ctx context.Context, local string) (string, error) { return local, nil }

// Run runs the agent under Wine.
func (m *wineMachine) Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	c := exec.CommandContext(ctx, m.loader, cmd)
	c.Env = m.wineEnv()
	var stderr bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, &stderr
	// Under Wine the loader's process is the Windows process: killing it
	// ends the agent.
	c.SysProcAttr = childProcAttr()
	if err := runToEnd(c); err != nil {
		return fmt.Errorf("agent under Wine: %w: %s", err, output.Tail(stderr.String(), 5))
	}
	return nil
}

// Close ends every process of the prefix (wineserver -k asks the server,
// which is lab's own: a second server for a prefix cannot run) and waits
// for the server; a server that does not go is killed by its PID.
func (m *wineMachine) Close(ctx context.Context) error {
	m.once.Do(func() {
		if m.srv == nil {
			return
		}
		defer os.RemoveAll(m.tmp)
		select {
		case <-m.srvDone:
			return
		default:
		}
		kill := exec.CommandContext(ctx, m.server, "-k")
		kill.Env = m.wineEnv()
		kill.WaitDelay = time.Second
		if out, err := kill.CombinedOutput(); err != nil {
			m.log.Warn("wineserver -k", "error", err, "output", strings.TrimSpace(string(out)))
		}
		select {
		case <-m.srvDone:
		case <-time.After(5 * time.Second):
			m.srv.Process.Kill()
			<-m.srvDone
			m.err = fmt.Errorf("wineserver (pid %d) did not exit after wineserver -k; killed", m.srv.Process.Pid)
		}
	})
	return m.err
}
