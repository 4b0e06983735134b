package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"lab/image"
	"lab/qemu"
	"lab/remote"
	"lab/rundir"
)

// Kept is what lab remembers of a microVM that `lab repro --keep` left
// running, in $cache/kept/<target>.json, so that `lab shell`, `lab down` and
// a later `lab repro` find it. Kept guests are a Linux-host feature: Alive
// looks the process up in /proc.
type Kept struct {
	Target string `json:"target"`
	PID    int    `json:"pid"`
	// Marker is QEMU's -name; Alive checks /proc/PID/cmdline for it so that
	// a reused PID is never taken for the guest.
	Marker     string    `json:"marker"`
	SSHAddr    string    `json:"ssh_addr"`
	User       string    `json:"user"`
	Key        string    `json:"key"`         // the client's private key
	KnownHosts string    `json:"known_hosts"` // a file pinning the guest's host key for SSHAddr
	HostKey    string    `json:"host_key"`    // the guest's host key, authorized_keys format
	OS         string    `json:"os"`
	Console    string    `json:"console"`
	Started    time.Time `json:"started"`

	file string
}

// KeptFile is where the state of target's kept guest lives.
func KeptFile(cacheDir, target string) string {
	return filepath.Join(cacheDir, "kept", target+".json")
}

// LoadKept reads the state of target's kept guest; os.ErrNotExist when there
// is none.
func LoadKept(cacheDir, target string) (*Kept, error) {
	path := KeptFile(cacheDir, target)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var k Kept
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	k.file = path
	return &k, nil
}

// ListKept returns every kept guest's state, alive or not.
func ListKept(cacheDir string) ([]*Kept, error) {
	files, err := filepath.Glob(filepath.Join(cacheDir, "kept", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*Kept
	for _, f := range files {
		k, err := LoadKept(cacheDir, strings.TrimSuffix(filepath.Base(f), ".json"))
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// Alive reports whether the kept QEMU still runs: its PID exists and its
// command line carries the marker.
func (k *Kept) Alive() bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k.PID))
	if err != nil {
		return false
	}
	for _, arg := range bytes.Split(b, []byte{0}) {
		if string(arg) == k.Marker {
			return true
		}
	}
	return false
}

// SSHArgs is the command line of the system's ssh that logs into the guest,
// checking its host key against the file lab wrote.
func (k *Kept) SSHArgs() []string {
	host, port, _ := net.SplitHostPort(k.SSHAddr)
	return []string{"ssh", "-i", k.Key,
		"-o", "UserKnownHostsFile=" + k.KnownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "IdentitiesOnly=yes", "-p", port, k.User + "@" + host}
}

// Down stops the kept QEMU (SIGTERM, SIGKILL after 5 s), by PID and only if
// it is the process the state describes, and removes the state.
func (k *Kept) Down() error {
	if k.Alive() {
		p, err := os.FindProcess(k.PID)
		if err != nil {
			return err
		}
		p.Signal(syscall.SIGTERM)
		if !k.waitGone(5 * time.Second) {
			p.Kill()
			if !k.waitGone(10 * time.Second) {
				return fmt.Errorf("kept guest %s: QEMU pid %d still runs after SIGKILL", k.Target, k.PID)
			}
		}
	}
	for _, f := range []string{k.file, k.KnownHosts} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (k *Kept) waitGone(d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if !k.Alive() {
			return true
		}
	}
	return !k.Alive()
}

// dial connects to the kept guest with its pinned host key.
func (k *Kept) dial(ctx context.Context, env StartEnv) (*remote.Client, error) {
	hostKey, err := remote.PinnedHostKey([]byte(k.HostKey))
	if err != nil {
		return nil, err
	}
	signer, err := remote.LoadSigner(k.Key)
	if err != nil {
		return nil, err
	}
	return remote.Dial(ctx, remote.Config{Addr: k.SSHAddr, User: k.User, Signer: signer, HostKey: hostKey,
		Deadline: 20 * time.Second, Log: env.Log})
}

func (k *Kept) save() error {
	if err := os.MkdirAll(filepath.Dir(k.file), 0o755); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(k.SSHAddr)
	line := fmt.Sprintf("[%s]:%s %s\n", host, port, strings.TrimSpace(k.HostKey))
	if err := rundir.WriteFile(k.KnownHosts, []byte(line)); err != nil {
		return err
	}
	return rundir.WriteJSON(k.file, k)
}

// Hold is a provider for one run of one target that hands the machine to its
// caller instead of tearing it down: orchestrator.Run's Close does nothing,
// and the caller uses Machine afterwards (to run a reproducer) and ends it
// with Release. With Keep, a qemu microVM target is booted detached and
// recorded as kept, or a kept guest that is alive is reused.
type Hold struct {
	Inner Provider
	Keep  bool

	mu      sync.Mutex
	machine Machine
	kept    *Kept
}

// Check is the inner provider's, and says when --keep cannot apply.
func (h *Hold) Check(t *Target) error {
	if h.Keep && !keepable(t) {
		return fmt.Errorf("--keep works for qemu microVM targets only, not %s (provider %s)", t.Name, t.Provider)
	}
	return h.Inner.Check(t)
}

// Start brings t up (or reaches its kept guest) and remembers the machine.
func (h *Hold) Start(ctx context.Context, t *Target, env StartEnv) (Machine, error) {
	var m Machine
	var err error
	if h.Keep || keepable(t) {
		m, err = h.startKept(ctx, t, env)
	} else {
		m, err = h.Inner.Start(ctx, t, env)
	}
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.machine = m
	h.mu.Unlock()
	return heldMachine{m}, nil
}

// Machine is the machine Start brought up, nil before.
func (h *Hold) Machine() Machine {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.machine
}

// Kept is the kept guest's state when Keep is set and Start succeeded.
func (h *Hold) Kept() *Kept {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.kept
}

// Release tears the machine down; a kept guest is only disconnected.
func (h *Hold) Release(ctx context.Context) error {
	if m := h.Machine(); m != nil {
		return m.Close(ctx)
	}
	return nil
}

// keepable: only lab's own microVMs are kept.
func keepable(t *Target) bool { return t.Provider == "qemu" && t.Suite != "" }

// heldMachine leaves Close to Hold.Release.
type heldMachine struct{ Machine }

func (heldMachine) Close(context.Context) error { return nil }

// startKept reuses t's kept guest if it is alive; otherwise, with Keep, it
// boots one detached and records it, and without, it boots a guest as the
// inner provider does.
func (h *Hold) startKept(ctx context.Context, t *Target, env StartEnv) (Machine, error) {
	if t.OS == "" {
		t.OS = "linux"
	}
	if t.Arch == "" {
		t.Arch = runtime.GOARCH
	}
	if k, err := LoadKept(env.CacheDir, t.Name); err == nil {
		if k.Alive() {
			env.Phase("connect")
			env.Log.Info("reusing kept guest", "pid", k.PID, "ssh", k.SSHAddr)
			client, err := k.dial(ctx, env)
			if err != nil {
				return nil, fmt.Errorf("kept guest %s (pid %d): %w", t.Name, k.PID, err)
			}
			h.mu.Lock()
			h.kept = k
			h.mu.Unlock()
			redial := func(ctx context.Context) (*remote.Client, error) { return k.dial(ctx, env) }
			return &sshMachine{client: client, goos: k.OS, redial: redial}, nil
		}
		env.Log.Info("kept guest is gone", "pid", k.PID)
		k.Down()
	}
	if !h.Keep {
		return h.Inner.Start(ctx, t, env)
	}

	env.Phase("image")
	img, err := image.Build(ctx, image.Spec{Name: t.Name, Suite: t.Suite, KernelPackage: t.Kernel, Arch: t.Arch}, env.CacheDir, env.Log)
	if err != nil {
		return nil, err
	}
	hostKeyLine, err := os.ReadFile(img.HostKey)
	if err != nil {
		return nil, err
	}
	hostKey, err := img.HostPublicKey()
	if err != nil {
		return nil, err
	}
	signer, err := img.ClientSigner()
	if err != nil {
		return nil, err
	}
	env.Phase("boot")
	marker := "lab-kept " + t.Name + " " + env.CacheDir
	cfg := qemu.Config{
		Arch: t.Arch, Kernel: img.Kernel, Initrd: img.Initrd,
		Append:   strings.TrimSpace(GuestCmdline + " " + t.KernelArgs),
		MemoryMB: t.MemoryMB, CPUs: t.CPUs, Accel: "auto", AccelCache: accelCache(env.CacheDir),
		ConsolePath: filepath.Join(env.RunDir, t.Name+".console.log"),
		Name:        marker, Log: env.Log, Detach: true,
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 256
	}
	vm, err := qemu.Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("starting QEMU: %w", err)
	}
	stop := func() { vm.Stop(context.WithoutCancel(ctx)) }
	env.Phase("connect")
	deadline := time.Duration(t.BootTimeout)
	if deadline == 0 {
		deadline = 60 * time.Second
	}
	dialCfg := remote.Config{
		Addr: vm.SSHAddr(), User: img.User, Signer: signer, HostKey: ssh.FixedHostKey(hostKey),
		Deadline: deadline, Log: env.Log, MaxBannerWait: time.Second,
	}
	withAbort := dialCfg
	withAbort.Abort = vm.Exited()
	client, err := remote.Dial(ctx, withAbort)
	if err != nil {
		stop()
		return nil, fmt.Errorf("SSH did not come up on the kept guest: %w (console: %s)", err, cfg.ConsolePath)
	}
	k := &Kept{
		Target: t.Name, PID: vm.PID(), Marker: strings.ReplaceAll(marker, ",", ""), SSHAddr: vm.SSHAddr(),
		User: img.User, Key: img.ClientKey, HostKey: strings.TrimSpace(string(hostKeyLine)), OS: t.OS,
		Console: cfg.ConsolePath, Started: time.Now().UTC(),
		file:       KeptFile(env.CacheDir, t.Name),
		KnownHosts: strings.TrimSuffix(KeptFile(env.CacheDir, t.Name), ".json") + ".known_hosts",
	}
	if err := k.save(); err != nil {
		client.Close()
		stop()
		return nil, fmt.Errorf("recording the kept guest: %w", err)
	}
	h.mu.Lock()
	h.kept = k
	h.mu.Unlock()
	// The kept VM outlives this process's view of it (Detach): a reconnect
	// dials without its exit channel.
	return &sshMachine{client: client, goos: t.OS, redial: redialWith(dialCfg)}, nil
}

// RunProgram uploads the program at local to m and runs it, returning what
// it printed on standard output.
func RunProgram(ctx context.Context, m Machine, local string) ([]byte, error) {
	cmd, err := m.Upload(ctx, local)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := m.Run(ctx, cmd, strings.NewReader(""), &out); err != nil {
		return out.Bytes(), err
	}
	return out.Bytes(), nil
}

// Keeping is the provider lab run puts in front of the qemu provider: a
// microVM whose kept guest is alive is reused, not booted again; with Keep
// (lab run --keep) a microVM that must boot is booted detached and recorded
// as kept, and the run only disconnects from it (lab down stops it). Other
// targets go to Inner unchanged.
type Keeping struct {
	Inner Provider
	Keep  bool
}

// Check is the inner provider's.
func (k Keeping) Check(t *Target) error { return k.Inner.Check(t) }

// Start reaches t's kept guest, boots one to keep, or starts t as Inner does.
func (k Keeping) Start(ctx context.Context, t *Target, env StartEnv) (Machine, error) {
	if !keepable(t) {
		return k.Inner.Start(ctx, t, env)
	}
	h := &Hold{Inner: k.Inner, Keep: k.Keep}
	m, err := h.startKept(ctx, t, env)
	if err != nil {
		return nil, err
	}
	if kept := h.Kept(); kept != nil {
		env.Log.Info("guest kept running", "pid", kept.PID, "ssh", kept.SSHAddr, "stop with", "lab down "+t.Name)
	}
	return m, nil
}
