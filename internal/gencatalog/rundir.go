package gencatalog

import (
	"fmt"
	"hash/fnv"
	"path/filepath"
	"strings"
	"time"

	"lab/rundir"
	"lab/wire"
)

// RunDirOptions says what WriteRunDir generates.
type RunDirOptions struct {
	Scenarios int
	// Targets is how many of the five targets to write (0: all five): four
	// Linux kernels and a FreeBSD, so the reports have kernels of one family
	// to compare.
	Targets int
	// Journal writes each target as the journal a lab killed mid-run leaves
	// (no final line) instead of <target>.json.
	Journal bool
	// Seed varies a few outcomes per target, so two runs with different
	// seeds serve as a run and its baseline with some changes between them.
	Seed string
}

// genTarget is a generated target: its name and the environment its
// results claim to come from.
type genTarget struct {
	name string
	env  wire.Env
}

var genTargets = []genTarget{
	{"local", linuxEnv("6.12.57+deb13-amd64")},
	{"linux-5.10", linuxEnv("5.10.0-35-amd64")},
	{"linux-6.1", linuxEnv("6.1.0-40-amd64")},
	{"linux-6.12", linuxEnv("6.12.57+deb13-amd64")},
	{"freebsd-14", wire.Env{OS: "freebsd", Family: "bsd", KernelRelease: "14.3-RELEASE", Arch: "amd64",
		Addrs: map[string]string{"any": "0.0.0.0", "addr1": "127.0.0.2", "loop": "127.0.0.1"}, AgentVersion: "gencatalog"}},
}

func linuxEnv(release string) wire.Env {
	return wire.Env{OS: "linux", Family: "linux", KernelRelease: release, Arch: "amd64",
		Addrs: map[string]string{"any": "0.0.0.0", "addr1": "127.0.0.2", "addr2": "127.0.0.3", "loop": "127.0.0.1", "any6": "::", "loop6": "::1"}, AgentVersion: "gencatalog"}
}

// concrete is what the generated agent bound for a symbolic address.
var concrete = map[string]string{"any": "0.0.0.0", "loop": "127.0.0.1", "addr1": "127.0.0.2", "any6": "::", "loop6": "::1",
	"[::ffff:0.0.0.0]": "::ffff:0.0.0.0", "[::ffff:127.0.0.1]": "::ffff:127.0.0.1"}

// WriteRunDir writes a run directory under dir as lab run would leave it:
// run.json with n generated scenarios (every thousandth a UDP spread, for
// the charts; about seven in ten with a claim of the answer for linux and
// bsd, one in twelve of those wrong, so the reports have disagreements) and
// one results file per target, every result with a realistic trace (one
// step result per step, calls, addresses, ports). The outcomes are a
// deterministic function of scenario, target and seed: test data for
// readers and renderers, not what any kernel does.
func WriteRunDir(dir string, o RunDirOptions) error {
	nt := o.Targets
	if nt <= 0 || nt > len(genTargets) {
		nt = len(genTargets)
	}
	scs := runScenarios(o.Scenarios)
	started := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	finished := started.Add(time.Duration(o.Scenarios) * time.Millisecond)
	run := rundir.Run{ID: filepath.Base(dir), Started: started, Finished: &finished, Command: fmt.Sprintf("gencatalog %d scenarios", o.Scenarios),
		Scenarios: scs, Status: rundir.StatusComplete}
	if o.Journal {
		run.Finished, run.Status = nil, rundir.StatusRunning
	}
	for _, t := range genTargets[:nt] {
		run.Targets = append(run.Targets, t.name)
	}
	if err := rundir.WriteJSON(filepath.Join(dir, "run.json"), run); err != nil {
		return fmt.Errorf("generating a run directory: %w", err)
	}
	for _, gt := range genTargets[:nt] {
		t := rundir.Target{Name: gt.name, Provider: "gencatalog", Status: rundir.StatusComplete, Total: len(scs),
			Phases: []rundir.Phase{{Name: "run", Millis: int64(len(scs))}}}
		env := gt.env
		t.Env = &env
		if err := writeTarget(dir, t, scs, o); err != nil {
			return fmt.Errorf("generating a run directory: %w", err)
		}
	}
	return nil
}

func writeTarget(dir string, t rundir.Target, scs []rundir.Scenario, o RunDirOptions) error {
	if !o.Journal {
		t.Results = make([]rundir.Outcome, 0, len(scs))
		for i, s := range scs {
			t.Results = append(t.Results, result(i, s, t, o.Seed))
		}
		return rundir.WriteJSON(filepath.Join(dir, t.Name+".json"), t)
	}
	head := t
	head.Status, head.Env = rundir.StatusRunning, nil
	j, err := rundir.CreateJournal(dir, head)
	if err != nil {
		return err
	}
	if err := j.SetEnv(t.Env); err != nil {
		j.Close()
		return err
	}
	for i, s := range scs {
		if err := j.Append(result(i, s, t, o.Seed)); err != nil {
			j.Close()
			return err
		}
	}
	return j.Close() // no final line: as a lab that died leaves it
}

// runScenarios are the catalog's scenarios as run.json records them, with
// every thousandth replaced by a spread and claims on most.
func runScenarios(n int) []rundir.Scenario {
	out := make([]rundir.Scenario, 0, n)
	for i, s := range Scenarios(n) {
		rs := rundir.Scenario{ID: s.ID, Title: s.Title, Proto: s.Proto, Steps: s.Steps, Source: "gencatalog: generated bind-conflict matrix"}
		if i%1000 == 999 {
			rs = rundir.Scenario{ID: fmt.Sprintf("spread/udp-%d", i), Title: "UDP, two sockets with SO_REUSEPORT on loop:P: how 300 datagrams spread", Proto: "udp",
				Steps: []string{"socket A SO_REUSEPORT", "bind A loop:P", "socket B SO_REUSEPORT", "bind B loop:P", "spread 300 A,B"}}
		}
		if h := hash(rs.ID, "claims"); h%10 < 7 {
			linux, bsd := baseOutcome(rs, "linux"), baseOutcome(rs, "bsd")
			if h%12 == 5 {
				linux = other(linux)
			}
			if h%12 == 7 {
				bsd = other(bsd)
			}
			rs.Expect = map[string]map[string]string{"answer": {"linux": linux, "bsd": bsd}}
		}
		out = append(out, rs)
	}
	return out
}

// baseOutcome is what every target of a family observes for a scenario,
// before kernels and seeds vary it.
func baseOutcome(s rundir.Scenario, family string) string {
	if strings.HasPrefix(s.ID, "spread/") {
		if family == "bsd" {
			return wire.SpreadSingle
		}
		return wire.SpreadEven
	}
	outcomes := []string{wire.OK, "EADDRINUSE", "EADDRINUSE", "EINVAL", wire.OK, "EADDRINUSE"}
	return outcomes[hash(s.ID, family)%uint32(len(outcomes))]
}

func other(outcome string) string {
	switch outcome {
	case wire.OK:
		return "EADDRINUSE"
	case wire.SpreadEven:
		return wire.SpreadSingle
	case wire.SpreadSingle:
		return wire.SpreadEven
	}
	return wire.OK
}

func hash(parts ...string) uint32 {
	h := fnv.New32a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum32()
}

// result is the generated outcome of scenario s (the i-th) on target t.
func result(i int, s rundir.Scenario, t rundir.Target, seed string) rundir.Outcome {
	fam := t.Env.Family
	outcome := baseOutcome(s, fam)
	h := hash(s.ID, t.Name, seed)
	switch {
	case h%50 == 1: // a kernel of the family that differs
		outcome = other(outcome)
	case h%199 == 2:
		outcome = wire.SetupFailed
	case h%997 == 3:
		outcome = wire.Timeout
	case h%1009 == 4:
		outcome = wire.Skipped
	}
	port := 30000 + int(hash(s.ID, t.Name, "port")%30000)
	r := wire.Result{ID: s.ID, Outcome: outcome, Ports: map[string]int{"P": port}, Addrs: map[string]string{}, Micros: int64(80 + h%400)}
	switch outcome {
	case wire.Timeout:
		r.Reason = "the scenario outlived its 3s deadline"
	case wire.Skipped:
		r.Reason = "user=other needs root"
	}
	fd := 5
	for k, text := range s.Steps {
		st := stepResult(text, port, &fd, r.Addrs)
		st.Micros = int64(3 + (h>>uint(k))%40)
		last := k == len(s.Steps)-1
		switch {
		case outcome == wire.SetupFailed && k == 1: // A's bind is refused: the script stops
			st.Result, st.Errno, st.Local, st.Ret = "EADDRNOTAVAIL", 99, "", ret(-1)
			r.Steps = append(r.Steps, st)
			return claimed(r, s, fam)
		case last && strings.HasPrefix(text, "spread"):
			a := 150 + int(h%60)
			if outcome == wire.SpreadSingle {
				a = 300
			}
			st.Result, st.Counts, st.Sent = outcome, []int{a, 300 - a}, 300
		case last && outcome != wire.OK && outcome != wire.Timeout && outcome != wire.Skipped:
			st.Result, st.Errno, st.Local, st.Ret = outcome, errno(outcome), "", ret(-1)
		}
		r.Steps = append(r.Steps, st)
	}
	if outcome == wire.Timeout || outcome == wire.Skipped {
		r.Steps = r.Steps[:len(r.Steps)-1]
	}
	return claimed(r, s, fam)
}

func claimed(r wire.Result, s rundir.Scenario, family string) rundir.Outcome {
	o := rundir.Outcome{Result: r}
	if claim, ok := s.Expect["answer"][family]; ok {
		o.Claims, o.ClaimKeys = map[string]string{"answer": claim}, map[string]string{"answer": family}
	}
	return o
}

func errno(name string) int {
	switch name {
	case "EADDRINUSE":
		return 98
	case "EINVAL":
		return 22
	}
	return 0
}

func ret(n int) *int { return &n }

// stepResult is a successful step's trace: the call as the OS saw it, with
// its concrete address and the socket's local address after it.
func stepResult(text string, port int, fd *int, addrs map[string]string) wire.StepResult {
	f := strings.Fields(text)
	st := wire.StepResult{Text: text, Result: wire.OK, Ret: ret(0)}
	switch f[0] {
	case wire.VerbSocket:
		st.Family = "inet"
		for _, w := range f[2:] {
			if w == "ip6" {
				st.Family = "inet6"
			}
			if strings.HasPrefix(w, "SO_") || strings.HasPrefix(w, "IPV6_") {
				name, val, _ := strings.Cut(w, "=")
				v := 1
				if val == "0" {
					v = 0
				}
				level := "SOL_SOCKET"
				if strings.HasPrefix(name, "IPV6_") {
					level = "IPPROTO_IPV6"
				}
				st.Options = append(st.Options, wire.SetOption{Level: level, Name: name, Value: v})
			}
		}
		st.Call = "socket(" + st.Family + ", stream)"
		st.Ret = ret(*fd)
		*fd++
	case wire.VerbBind:
		sym, _, _ := strings.Cut(f[2], ":P")
		ip := concrete[sym]
		if !strings.HasPrefix(sym, "[") {
			addrs[sym] = ip
		}
		hostport := fmt.Sprintf("%s:%d", ip, port)
		if strings.Contains(ip, ":") {
			hostport = fmt.Sprintf("[%s]:%d", ip, port)
		}
		st.Call, st.Local, st.Addr, st.Port = "bind("+hostport+")", hostport, ip, port
	case wire.VerbListen:
		st.Call = "listen(128)"
	case wire.VerbSpread:
		st.Call = "sendto(127.0.0.1:" + fmt.Sprint(port) + ") x300"
	}
	return st
}
