package target

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"lab/remote"
	"lab/rundir"
)

// Kept is what lab remembers of a microVM that `lab run --keep` or `lab
// repro --keep` left running, in $cache/kept/<target>.json, so that `lab
// shell`, `lab down` and later runs find it.
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
	// Preloaded is the agent in the guest's initramfs (Instance.Preloaded):
	// a later run whose agent build is the same file (builds are named by
	// their sources' hash) runs it there instead of uploading another.
	Preloaded map[string]string `json:"preloaded,omitempty"`

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
// command line carries the marker, so a reused PID is never taken for it.
func (k *Kept) Alive() bool { return processHasArg(k.PID, k.Marker) }

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
	return k.forget()
}

// forget removes the state.
func (k *Kept) forget() error {
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

// instance is how to reach the kept guest of s: with its pinned host key,
// and nothing to stop (lab down does that).
func (k *Kept) instance(s Spec) (*Instance, error) {
	hostKey, err := remote.PinnedHostKey([]byte(k.HostKey))
	if err != nil {
		return nil, err
	}
	signer, err := remote.LoadSigner(k.Key)
	if err != nil {
		return nil, err
	}
	return &Instance{
		Agent: AgentBuild{GOOS: k.OS, GOARCH: s.Arch},
		SSH:   &remote.Config{Addr: k.SSHAddr, User: k.User, Signer: signer, HostKey: hostKey, Deadline: redialTimeout},
		Diagnose: func(err error) error {
			return fmt.Errorf("kept guest %s (pid %d): %w", k.Target, k.PID, err)
		},
		Keep:      true,
		Kept:      k,
		Preloaded: k.Preloaded,
		CC:        CBuildHostStatic,
	}, nil
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
