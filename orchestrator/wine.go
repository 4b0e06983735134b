package orchestrator

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Wine runs the Windows agent on this machine under Wine. What it measures
// is Wine's emulation of Winsock on top of the host's kernel, not Windows:
// the agent says so in its environment line (kernel_version "Wine 8.0 on
// Linux ..."), and the results carry the provider name "wine". It is a
// quick way to exercise the Windows agent's code, and to see where Wine's
// emulation departs from the answer's claims about Windows.
type Wine struct{}

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

// Check: Wine must be installed, and the agent it runs is windows/amd64.
func (Wine) Check(t *Target) error {
	if _, _, err := wineBinaries(); err != nil {
		return err
	}
	if t.Arch != "" && t.Arch != "amd64" {
		return fmt.Errorf("lab runs the windows/amd64 agent under wine64; arch %q is not supported", t.Arch)
	}
	return nil
}

// WineVersion is what `wine --version` prints ("wine-8.0 (Debian
// 8.0~repack-4)"), for lab targets and the log.
func WineVersion(ctx context.Context) (string, error) {
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
func (Wine) Start(ctx context.Context, t *Target, env StartEnv) (Machine, error) {
	t.OS, t.Arch = "windows", "amd64"
	loader, server, err := wineBinaries()
	if err != nil {
		return nil, err
	}
	if v, err := WineVersion(ctx); err == nil {
		env.Log.Info("Wine: the Windows agent runs on Wine's emulation of Winsock, not on Windows", "wine", v)
	}
	env.Phase("prefix")
	prefix, err := filepath.Abs(filepath.Join(env.CacheDir, "wine", t.Name))
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
	return m, nil
}

// wineMachine is one Wine prefix with its wineserver.
type wineMachine struct {
	loader, server, prefix string
	log                    hclog.Logger

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
		case "DISPLAY", "WAYLAND_DISPLAY", "WINEPREFIX", "WINEDEBUG", "WINEDLLOVERRIDES", "WINESERVER", "WINEARCH":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "WINEPREFIX="+m.prefix, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=", "WINESERVER="+m.server)
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
	var stderr bytes.Buffer
	srv := exec.Command(m.server, "--foreground", "--persistent=0")
	srv.Env = m.wineEnv()
	srv.Stderr = &stderr
	srv.SysProcAttr = agentProcAttr()
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
		return fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), m.prefix, err, lastLines(string(out), 5))
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
	c.Cancel = func() error { return c.Process.Signal(os.Interrupt) }
	c.WaitDelay = 2 * time.Second
	c.SysProcAttr = agentProcAttr()
	if err := c.Run(); err != nil {
		return fmt.Errorf("agent under Wine: %w: %s", err, strings.TrimSpace(lastLines(stderr.String(), 5)))
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

// forwarderDLL builds a PE32+ DLL for x86-64 that holds nothing but an
// export table whose entries forward to functions of other DLLs
// ("advapi32.SystemFunction036"): Windows's and Wine's loaders resolve such
// an export to its target, so the DLL has no code. Its exports are sorted
// by name, as the loader's binary search needs.
func forwarderDLL(name string, forwards map[string]string) []byte {
	const (
		fileAlign    = 0x200
		sectAlign    = 0x1000
		sectRVA      = sectAlign
		exportDirLen = 40
		optHeaderLen = 112 + 16*8 // PE32+ fields, then 16 data directories
	)
	le := binary.LittleEndian
	names := make([]string, 0, len(forwards))
	for n := range forwards {
		names = append(names, n)
	}
	sort.Strings(names)
	n := len(names)

	// The .rdata section: export directory, address table, name pointers,
	// ordinals, then the strings. An address inside the export directory's
	// range is a forwarder string, which is how the loader tells them apart.
	eat := exportDirLen
	namePtrs := eat + 4*n
	ordinals := namePtrs + 4*n
	sec := make([]byte, ordinals+2*n)
	addString := func(s string) uint32 {
		rva := uint32(sectRVA + len(sec))
		sec = append(append(sec, s...), 0)
		return rva
	}
	// addString may move sec, so each address is taken before the store.
	nameRVA := addString(name)
	le.PutUint32(sec[12:], nameRVA)   // Name
	le.PutUint32(sec[16:], 1)         // Base: ordinals start at 1
	le.PutUint32(sec[20:], uint32(n)) // NumberOfFunctions
	le.PutUint32(sec[24:], uint32(n)) // NumberOfNames
	le.PutUint32(sec[28:], uint32(sectRVA+eat))
	le.PutUint32(sec[32:], uint32(sectRVA+namePtrs))
	le.PutUint32(sec[36:], uint32(sectRVA+ordinals))
	for i, fn := range names {
		fnRVA := addString(fn)
		fwdRVA := addString(forwards[fn])
		le.PutUint32(sec[namePtrs+4*i:], fnRVA)
		le.PutUint16(sec[ordinals+2*i:], uint16(i))
		le.PutUint32(sec[eat+4*i:], fwdRVA)
	}
	rawLen := (len(sec) + fileAlign - 1) &^ (fileAlign - 1)

	img := make([]byte, fileAlign+rawLen)
	copy(img, "MZ")
	le.PutUint32(img[0x3c:], 0x40) // e_lfanew
	copy(img[0x40:], "PE\x00\x00")
	coff := 0x44
	le.PutUint16(img[coff:], 0x8664) // AMD64
	le.PutUint16(img[coff+2:], 1)    // one section
	le.PutUint16(img[coff+16:], optHeaderLen)
	le.PutUint16(img[coff+18:], 0x2022) // executable image, large address aware, DLL
	opt := coff + 20
	le.PutUint16(img[opt:], 0x20b) // PE32+
	le.PutUint32(img[opt+8:], uint32(rawLen))
	le.PutUint32(img[opt+20:], sectRVA)                                               // BaseOfCode
	le.PutUint64(img[opt+24:], 0x180000000)                                           // ImageBase, the usual for 64-bit DLLs
	le.PutUint32(img[opt+32:], sectAlign)                                             // SectionAlignment
	le.PutUint32(img[opt+36:], fileAlign)                                             // FileAlignment
	le.PutUint16(img[opt+40:], 6)                                                     // OS version 6.0
	le.PutUint16(img[opt+48:], 6)                                                     // subsystem version 6.0
	le.PutUint32(img[opt+56:], uint32(sectRVA+(len(sec)+sectAlign-1)&^(sectAlign-1))) // SizeOfImage
	le.PutUint32(img[opt+60:], fileAlign)                                             // SizeOfHeaders
	le.PutUint16(img[opt+68:], 3)                                                     // console subsystem
	le.PutUint64(img[opt+72:], 0x100000)                                              // stack reserve
	le.PutUint64(img[opt+80:], 0x1000)                                                // stack commit
	le.PutUint64(img[opt+88:], 0x100000)                                              // heap reserve
	le.PutUint64(img[opt+96:], 0x1000)                                                // heap commit
	le.PutUint32(img[opt+108:], 16)                                                   // NumberOfRvaAndSizes
	le.PutUint32(img[opt+112:], sectRVA)                                              // export directory
	le.PutUint32(img[opt+116:], uint32(len(sec)))
	sh := opt + optHeaderLen
	copy(img[sh:], ".rdata")
	le.PutUint32(img[sh+8:], uint32(len(sec))) // VirtualSize
	le.PutUint32(img[sh+12:], sectRVA)
	le.PutUint32(img[sh+16:], uint32(rawLen))
	le.PutUint32(img[sh+20:], fileAlign)  // PointerToRawData
	le.PutUint32(img[sh+36:], 0x40000040) // initialized data, readable
	copy(img[fileAlign:], sec)
	return img
}
