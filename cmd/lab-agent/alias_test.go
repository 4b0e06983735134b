//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lab/internal/testenv"
	"lab/wire"
)

// The agent adds 127.0.0.2 and 127.0.0.3 to loopback where they are not local (the
// BSDs, illumos, macOS) and must remove them when it exits, however it exits: on a
// host reached over ssh nothing may stay behind. Linux routes all of 127/8 to
// loopback, so the test makes a network namespace whose loopback holds
// 127.0.0.1/32 alone, as a BSD's lo0 does, runs Debian's sshd in it on 127.0.0.1,
// and runs the agent binary through OpenSSH's client there, as root, the way lab
// runs it on an ssh target with sudo: true. What Linux cannot show is the BSD and
// illumos ifconfig commands themselves (agent/alias_bsd.go, alias_solaris.go).

// aliasHost is the namespace, its sshd and a built agent.
type aliasHost struct {
	ns    *testenv.NetNS
	sshd  *testenv.SSHD
	agent string
}

func newAliasHost(t *testing.T) *aliasHost {
	t.Helper()
	testenv.NeedTools(t, "ip", "ss", "ssh", "go")
	ns := testenv.NewNetNS(t)
	ns.Run(t, "ip", "addr", "del", "127.0.0.1/8", "dev", "lo")
	ns.Run(t, "ip", "addr", "add", "127.0.0.1/32", "dev", "lo")
	h := &aliasHost{ns: ns, sshd: testenv.StartSSHDWith(t, testenv.SSHDOptions{NetNS: ns.Name})}
	h.agent = filepath.Join(t.TempDir(), "lab-agent-aliastest")
	build := exec.Command("go", "build", "-o", h.agent, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v: %s", err, out)
	}
	if got := h.loopback(t); got != "127.0.0.1/32" {
		t.Fatalf("the namespace's loopback holds %s, want 127.0.0.1/32 alone", got)
	}
	return h
}

// loopback lists the IPv4 addresses on the namespace's lo.
func (h *aliasHost) loopback(t *testing.T) string {
	t.Helper()
	var addrs []string
	for _, l := range strings.Split(h.ns.Run(t, "ip", "-4", "-o", "addr", "show", "dev", "lo"), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[2] == "inet" {
			addrs = append(addrs, f[3])
		}
	}
	return strings.Join(addrs, " ")
}

// start runs the agent over ssh with req on its stdin; its output lines arrive on
// the returned channel, which is closed when ssh exits. The loopback must hold
// want (the namespace's 127.0.0.1/32 and what the test added itself) when it
// starts; whatever a failed run left is removed afterwards, so one case cannot
// pass because of another.
func (h *aliasHost) start(t *testing.T, req wire.Request, want string) (*exec.Cmd, <-chan wire.Line) {
	t.Helper()
	if got := h.loopback(t); got != want {
		t.Fatalf("before the agent ran the loopback holds %s, want %s", got, want)
	}
	t.Cleanup(func() {
		for _, a := range strings.Fields(h.loopback(t)) {
			if a != "127.0.0.1/32" {
				h.ns.Run(t, "ip", "addr", "del", a, "dev", "lo")
			}
		}
	})
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(h.sshd.Addr, ":")
	cmd := h.ns.Command("ssh", "-F", "/dev/null", "-i", h.sshd.Key, "-p", port,
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+h.sshd.KnownHosts,
		"root@127.0.0.1", h.agent)
	cmd.Stdin = bytes.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan wire.Line, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l wire.Line
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines <- l
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // by PID; a no-op once it exited
		cmd.Wait()
		if t.Failed() {
			t.Logf("ssh stderr: %s", stderr.String())
		}
	})
	return cmd, lines
}

// agentPIDs finds the agent processes by their executable, which only this test runs.
func (h *aliasHost) agentPIDs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == h.agent {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitGone waits until no agent process is left and the loopback holds want
// again.
func (h *aliasHost) waitGone(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(h.agentPIDs()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the agent (pids %v) still runs", h.agentPIDs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := h.loopback(t); got != want {
		t.Errorf("after the agent exited the loopback holds %s, want %s", got, want)
	}
}

const bare = "127.0.0.1/32" // the namespace's loopback before any alias

// bindScenarios bind addr1 and addr2, which works only if the aliases are there.
func bindScenarios(n int) []wire.Scenario {
	var scs []wire.Scenario
	for i := 0; i < n; i++ {
		for _, a := range []string{"addr1", "addr2"} {
			scs = append(scs, wire.Scenario{ID: fmt.Sprintf("bind-%s-%d", a, i), Proto: "tcp", Steps: []wire.Step{
				{Text: "socket A", Verb: wire.VerbSocket, Sock: "A"},
				{Text: "bind A " + a + ":P", Verb: wire.VerbBind, Sock: "A", Addr: a, Port: "P"},
				{Text: "listen A", Verb: wire.VerbListen, Sock: "A"},
				// Nobody connects: the accept waits out its 500 ms, so a long
				// request keeps the agent busy long enough to be interrupted.
				{Text: "accept A C", Verb: wire.VerbAccept, Sock: "A", NewName: "C"},
			}})
		}
	}
	return scs
}

// waitEnvAndResult reads lines until the environment and a first result came, and
// returns them.
func waitEnvAndResult(t *testing.T, lines <-chan wire.Line) (*wire.Env, *wire.Result) {
	t.Helper()
	var env *wire.Env
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("ssh ended before the agent reported a result")
			}
			if l.Env != nil {
				env = l.Env
			}
			if l.Result != nil {
				return env, l.Result
			}
		case <-timeout:
			t.Fatal("no result from the agent within 30 s")
		}
	}
}

func TestAliasesRemovedOverSSH(t *testing.T) {
	h := newAliasHost(t)

	t.Run("run to the end", func(t *testing.T) {
		_, lines := h.start(t, wire.Request{Scenarios: bindScenarios(1)}, bare)
		var env *wire.Env
		results := map[string]*wire.Result{}
		done := false
		for l := range lines {
			switch {
			case l.Env != nil:
				env = l.Env
			case l.Result != nil:
				results[l.Result.ID] = l.Result
			case l.Done != nil:
				done = true
			}
		}
		if env == nil || !done {
			t.Fatalf("env %v, done %v", env, done)
		}
		if env.Addrs["addr1"] != "127.0.0.2" || env.Addrs["addr2"] != "127.0.0.3" || !strings.Contains(env.AddrsNote, "added 127.0.0.2 and 127.0.0.3") {
			t.Fatalf("addrs %v, note %q: the agent did not alias the loopback", env.Addrs, env.AddrsNote)
		}
		for id, r := range results {
			// bind, listen and accept ran: the accept timed out with EAGAIN,
			// which means the bind to the alias worked.
			if len(r.Steps) < 2 || r.Steps[1].Result != "ok" {
				t.Errorf("%s: %+v: binding the alias failed", id, r.Steps)
			}
		}
		h.waitGone(t, bare)
	})

	// Someone else's alias is not the agent's to remove: with 127.0.0.2 already on
	// the loopback, the agent adds 127.0.0.3 only and removes only that.
	t.Run("only what it added", func(t *testing.T) {
		h.ns.Run(t, "ip", "addr", "add", "127.0.0.2/32", "dev", "lo")
		theirs := "127.0.0.1/32 127.0.0.2/32"
		_, lines := h.start(t, wire.Request{Scenarios: bindScenarios(1)}, theirs)
		env, _ := waitEnvAndResult(t, lines)
		if env == nil || env.Addrs["addr1"] != "127.0.0.2" || env.Addrs["addr2"] != "127.0.0.3" || !strings.Contains(env.AddrsNote, "added 127.0.0.3 to the loopback") {
			t.Fatalf("addrs %v, note %q; want 127.0.0.3 added alone", env.Addrs, env.AddrsNote)
		}
		for range lines {
		}
		h.waitGone(t, theirs)
	})

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			_, lines := h.start(t, wire.Request{Scenarios: bindScenarios(100)}, bare)
			waitEnvAndResult(t, lines)
			if got := h.loopback(t); got != "127.0.0.1/32 127.0.0.2/32 127.0.0.3/32" {
				t.Fatalf("while the agent runs the loopback holds %s, want the two aliases", got)
			}
			pids := h.agentPIDs()
			if len(pids) != 1 {
				t.Fatalf("agent pids %v, want one", pids)
			}
			start := time.Now()
			syscall.Kill(pids[0], sig)
			h.waitGone(t, bare)
			t.Logf("%s: agent gone and aliases removed %v after the signal", sig, time.Since(start).Round(time.Millisecond))
		})
	}

	t.Run("connection lost", func(t *testing.T) {
		cmd, lines := h.start(t, wire.Request{Scenarios: bindScenarios(100)}, bare)
		waitEnvAndResult(t, lines)
		if len(h.agentPIDs()) != 1 {
			t.Fatalf("agent pids %v, want one", h.agentPIDs())
		}
		// The client dies (lab killed, network gone): sshd closes the session, and the
		// agent's next line meets a closed pipe.
		start := time.Now()
		cmd.Process.Kill()
		h.waitGone(t, bare)
		t.Logf("connection lost: agent gone and aliases removed %v after the client died", time.Since(start).Round(time.Millisecond))
	})
}
