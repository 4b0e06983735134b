package emit

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"lab/agent"
	"lab/scenario"
	"lab/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// samples are catalog scenarios the emitters are checked with.
var samples = []string{
	"bsd-table/row1/off",
	"bsd-table/row6/on",
	"reuseport/all-set/tcp",
	"linux/udp-reuseaddr/both",
	"ipv6/v6only1-any6-then-v4-any/tcp",
	"emit/accept-close",
	"timewait/no-flag",
	"timewait/reuseaddr-both",
}

// extra exercises the verbs the catalog samples do not: listen, connect,
// accept (one that gets a connection and one that times out) and close.
const extra = `
scenarios:
  - id: emit/accept-close
    title: "a connection accepted and closed, then an accept with nothing pending"
    source: "lab's emitter test"
    proto: tcp
    steps:
      - socket L SO_REUSEADDR
      - bind L loop:P
      - listen L
      - socket C
      - connect C loop:P
      - accept L S
      - close S
      - close C
      - accept L T
`

func catalog(t *testing.T, ids ...string) []wire.Scenario {
	t.Helper()
	all, err := scenario.ParseFile("../scenarios.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, err := scenario.Parse("extra.yaml", []byte(extra))
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, more...)
	byID := map[string]wire.Scenario{}
	for _, s := range all {
		byID[s.ID] = s.Scenario
	}
	var out []wire.Scenario
	for _, id := range ids {
		s, ok := byID[id]
		if !ok {
			t.Fatalf("scenario %s is not in the catalog", id)
		}
		out = append(out, s)
	}
	return out
}

// fixedResult stands for a measurement with fixed ports and addresses, so
// the emitted code does not change from one test run to the next.
func fixedResult() *wire.Result {
	return &wire.Result{
		Ports: map[string]int{"P": 40001, "Q": 40002},
		Addrs: map[string]string{"any": "0.0.0.0", "any6": "::", "addr1": "127.0.0.2", "addr2": "127.0.0.3", "loop": "127.0.0.1", "loop6": "::1"},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./emit -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the emitted code (go test ./emit -update rewrites it):\n%s", path, got)
	}
}

func goldenName(id, ext string) string { return strings.ReplaceAll(id, "/", "_") + ext }

func TestGolden(t *testing.T) {
	for _, sc := range catalog(t, samples...) {
		t.Run(sc.ID, func(t *testing.T) {
			c, err := C(sc, fixedResult(), "local")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, goldenName(sc.ID, ".c"), c)
			rc, err := C(sc, fixedResult(), "netbsd-rump", Rump)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, goldenName(sc.ID, ".rump.c"), rc)
			g, err := Go(sc, fixedResult(), "local", "linux")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, goldenName(sc.ID, ".go.txt"), g)
		})
	}
}

func TestUnsupportedVerbs(t *testing.T) {
	for _, st := range []wire.Step{
		{Text: "spread 10 A,B", Verb: wire.VerbSpread, N: 10, Socks: []string{"A", "B"}},
		{Text: "socket A user=other", Verb: wire.VerbSocket, Sock: "A", User: "other"},
		{Text: "socket A proc=two", Verb: wire.VerbSocket, Sock: "A", Proc: "two"},
		{Text: "socket A udp", Verb: wire.VerbSocket, Sock: "A", Proto: "udp"},
		{Text: "socket A SO_LINGER=0", Verb: wire.VerbSocket, Sock: "A", Options: []wire.Option{{Name: "SO_LINGER"}}},
		{Text: "try listen A", Verb: wire.VerbListen, Sock: "A", Try: true},
		{Text: "send A", Verb: wire.VerbSend, Sock: "A", N: 3},
		{Text: "recv A", Verb: wire.VerbRecv, Sock: "A"},
		{Text: "local A", Verb: wire.VerbLocal, Sock: "A"},
		{Text: "exit two", Verb: wire.VerbExit, Proc: "two"},
		{Text: "waitfree loop:P", Verb: wire.VerbWaitfree, Addr: "loop", Port: "P"},
	} {
		sc := wire.Scenario{ID: "x", Proto: "tcp", Steps: []wire.Step{st}}
		if _, err := C(sc, fixedResult(), "local"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("C(%s): %v, want ErrUnsupported", st.Text, err)
		}
		if _, err := Go(sc, fixedResult(), "local", "linux"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Go(%s): %v, want ErrUnsupported", st.Text, err)
		}
		if err := Check(sc); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Check(%s): %v, want ErrUnsupported", st.Text, err)
		}
	}
}

func ret(n int) *int { return &n }

// agentTrace is what the agent recorded for bsd-table/row1/off with P=40001.
func agentTrace() *wire.Result {
	return &wire.Result{
		Ports: map[string]int{"P": 40001},
		Addrs: map[string]string{"addr1": "127.0.0.2"},
		Steps: []wire.StepResult{
			{Text: "socket A", Call: "socket(inet, tcp)", Result: "ok", Family: "inet", Ret: ret(5)},
			{Text: "bind A addr1:P", Call: "bind(127.0.0.2:40001)", Result: "ok", Family: "inet", Addr: "127.0.0.2", Port: 40001, Ret: ret(0), Local: "127.0.0.2:40001"},
			{Text: "socket B SO_REUSEADDR", Call: "socket(inet, tcp); setsockopt(SO_REUSEADDR=1)", Result: "ok", Family: "inet",
				Options: []wire.SetOption{{Level: "SOL_SOCKET", Name: "SO_REUSEADDR", Value: 1}}, Ret: ret(8)},
			{Text: "bind B addr1:P", Call: "bind(127.0.0.2:40001)", Result: "EADDRINUSE", Errno: 98, Family: "inet", Addr: "127.0.0.2", Port: 40001, Ret: ret(-1)},
		},
	}
}

// TestWriteStepParse: what WriteStep writes (lab repro's trace of the
// agent) Parse reads back, so the two traces are compared field by field.
func TestWriteStepParse(t *testing.T) {
	res := agentTrace()
	var b bytes.Buffer
	WriteValues(&b, res.Ports, res.Addrs)
	for i, s := range res.Steps {
		WriteStep(&b, i+1, s)
	}
	tr, err := Parse(&b)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Ports["P"] != 40001 || len(tr.Ports) != 1 {
		t.Errorf("ports %v, want P=40001", tr.Ports)
	}
	if len(tr.Steps) != len(res.Steps) {
		t.Fatalf("%d steps, want %d", len(tr.Steps), len(res.Steps))
	}
	for i, g := range tr.Steps {
		a := res.Steps[i]
		a.Addr, a.Port = "", 0 // in the call, not separate fields
		if g.N != i+1 || !reflect.DeepEqual(g.StepResult, a) {
			t.Errorf("step %d read back as\n%+v, want\n%+v", i+1, g.StepResult, a)
		}
	}
	if err := Compare(res, tr); err != nil {
		t.Errorf("Compare of the agent's trace with itself: %v", err)
	}
}

func TestCompare(t *testing.T) {
	const same = `noise
values   P=40001 addr1=127.0.0.2
step 1: socket A: ok
        socket(inet, tcp)  family inet  returned 3  10µs
step 2: bind A addr1:P: ok
        bind(127.0.0.2:40001)  family inet  returned 0  4µs
step 3: socket B SO_REUSEADDR: ok
        socket(inet, tcp); setsockopt(SO_REUSEADDR=1)  family inet  setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)  returned 4  9µs
step 4: bind B addr1:P: EADDRINUSE (98)
        bind(127.0.0.2:40001)  family inet  returned -1  3µs
`
	for _, tc := range []struct {
		name, from, to string // the reproducer's trace is same with from replaced by to
		want           string // in the error; "" for a match
	}{
		{name: "same", want: ""},
		{name: "other descriptors", from: "returned 3", to: "returned 7", want: ""},
		{name: "fresh port", from: "40001", to: "50123", want: ""},
		{name: "result", from: "EADDRINUSE (98)", to: "ok", want: "step 4 (bind B addr1:P): result: agent EADDRINUSE, reproducer ok"},
		{name: "errno number", from: "(98)", to: "(48)", want: "errno: agent 98, reproducer 48"},
		{name: "address", from: "bind(127.0.0.2:40001)  family inet  returned -1", to: "bind(127.0.0.3:40001)  family inet  returned -1", want: "step 4 (bind B addr1:P): call: agent bind(127.0.0.2:40001), reproducer bind(127.0.0.3:40001)"},
		{name: "port not the values line's", from: "bind(127.0.0.2:40001)  family inet  returned -1", to: "bind(127.0.0.2:40002)  family inet  returned -1", want: "step 4 (bind B addr1:P): call:"},
		{name: "family", from: "socket(inet, tcp)  family inet", to: "socket(inet6, tcp)  family inet6", want: "step 1 (socket A): call: agent socket(inet, tcp), reproducer socket(inet6, tcp); family: agent inet, reproducer inet6"},
		{name: "option level", from: "SOL_SOCKET", to: "IPPROTO_IPV6", want: "step 3 (socket B SO_REUSEADDR): options: agent setsockopt(SOL_SOCKET, SO_REUSEADDR, 1), reproducer setsockopt(IPPROTO_IPV6, SO_REUSEADDR, 1)"},
		{name: "option value", from: "SO_REUSEADDR, 1)", to: "SO_REUSEADDR, 0)", want: "options:"},
		{name: "descriptor that failed", from: "returned 3", to: "returned -1", want: "step 1 (socket A): returned: agent 5, reproducer -1"},
		{name: "return value", from: "returned 0", to: "returned 1", want: "step 2 (bind A addr1:P): returned: agent 0, reproducer 1"},
		{name: "no return value", from: "  returned 0", to: "", want: "step 2 (bind A addr1:P): returned: agent 0, reproducer nothing"},
		{name: "stops early", from: "step 4", to: "stop 4", want: "step 4 (bind B addr1:P): agent EADDRINUSE, reproducer stopped before it"},
		{name: "extra step", from: "step 4: bind B addr1:P: EADDRINUSE (98)", to: "step 4: bind B addr1:P: EADDRINUSE (98)\nstep 5: close B: ok", want: "step 5 (close B): reproducer ok, agent stopped before it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := same
			if tc.from != "" {
				out = strings.ReplaceAll(same, tc.from, tc.to)
			}
			tr, err := Parse(strings.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			err = Compare(agentTrace(), tr)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Compare: %v, want a match", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Compare: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestCompareTimewait: a timewait step's call lists the calls it made;
// their descriptors and a fresh port may differ, nothing else.
func TestCompareTimewait(t *testing.T) {
	agent := &wire.Result{
		Ports: map[string]int{"P": 34885},
		Steps: []wire.StepResult{{Text: "timewait addr1:P SO_REUSEADDR", Result: "ok",
			Call: "timewait(127.0.0.2:34885): socket(inet, tcp) = 5; setsockopt(5, SO_REUSEADDR=1) = 0; bind(5, 127.0.0.2:34885) = 0; listen(5) = 0; " +
				"socket(inet, tcp) = 8; connect(8, 127.0.0.2:34885) = 0; accept(5) = 9; close(5) = 0; close(9) = 0; read(8) = 0; close(8) = 0"}},
	}
	repro := "values   P=41000\nstep 1: timewait addr1:P SO_REUSEADDR: ok\n" +
		"        timewait(127.0.0.2:41000): socket(inet, tcp) = 3; setsockopt(3, SO_REUSEADDR=1) = 0; bind(3, 127.0.0.2:41000) = 0; listen(3) = 0; " +
		"socket(inet, tcp) = 4; connect(4, 127.0.0.2:41000) = 0; accept(3) = 5; close(3) = 0; close(5) = 0; read(4) = 0; close(4) = 0  10234µs\n"
	tr, err := Parse(strings.NewReader(repro))
	if err != nil {
		t.Fatal(err)
	}
	if err := Compare(agent, tr); err != nil {
		t.Errorf("Compare: %v", err)
	}
	tr, _ = Parse(strings.NewReader(strings.Replace(repro, "setsockopt(3, SO_REUSEADDR=1) = 0", "setsockopt(3, SO_REUSEPORT=1) = 0", 1)))
	if err := Compare(agent, tr); err == nil || !strings.Contains(err.Error(), "call:") {
		t.Errorf("Compare missed another option in a timewait: %v", err)
	}
}

// measure runs scenarios with the agent on this machine.
func measure(t *testing.T, scs []wire.Scenario) map[string]*wire.Result {
	t.Helper()
	out := map[string]*wire.Result{}
	err := agent.Run(context.Background(), wire.Request{Scenarios: scs}, func(l wire.Line) error {
		if l.Result != nil {
			out[l.Result.ID] = l.Result
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEmittedMatchesAgent compiles the emitted C (cc -Wall -Werror) and Go
// for each sample, runs them on this machine with the ports and addresses
// the agent used, and checks each step has the agent's result.
func TestEmittedMatchesAgent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the reproducers are checked on Linux")
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Fatal("no C compiler (Debian: apt-get install gcc libc6-dev)")
	}
	scs := catalog(t, samples...)
	results := measure(t, scs)
	dir := t.TempDir()
	for _, sc := range scs {
		t.Run(sc.ID, func(t *testing.T) {
			res := results[sc.ID]
			if res == nil {
				t.Fatal("the agent gave no result")
			}
			name := strings.ReplaceAll(sc.ID, "/", "_")
			src, err := C(sc, res, "local")
			if err != nil {
				t.Fatal(err)
			}
			cfile := filepath.Join(dir, name+".c")
			os.WriteFile(cfile, src, 0o644)
			cbin := filepath.Join(dir, name+"-c")
			// The agent's TIME_WAIT entries are still there: a rerun needs other ports.
			cflags := []string{"-Wall", "-Werror", "-O2", "-o", cbin, cfile}
			goflags := []string{"build", "-o", filepath.Join(dir, name+"-gobin")}
			if NeedsFreshPorts(sc) {
				cflags = append(cflags, "-DLAB_FRESH_PORTS")
				goflags = append(goflags, "-ldflags=-X=main.freshPorts=1")
			}
			if out, err := exec.Command(cc, cflags...).CombinedOutput(); err != nil {
				t.Fatalf("cc: %v\n%s", err, out)
			}
			check(t, "C", res, exec.Command(cbin))

			gsrc, err := Go(sc, res, "local", runtime.GOOS)
			if err != nil {
				t.Fatal(err)
			}
			gdir := filepath.Join(dir, name+"-go")
			os.MkdirAll(gdir, 0o755)
			gfile := filepath.Join(gdir, "repro.go")
			os.WriteFile(gfile, gsrc, 0o644)
			gbin := filepath.Join(dir, name+"-gobin")
			build := exec.Command("go", append(goflags, gfile)...)
			build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			if out, err := exec.Command("go", "vet", gfile).CombinedOutput(); err != nil {
				t.Errorf("go vet: %v\n%s", err, out)
			}
			check(t, "Go", res, exec.Command(gbin))
		})
	}
}

func check(t *testing.T, lang string, res *wire.Result, cmd *exec.Cmd) {
	t.Helper()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s reproducer: %v", lang, err)
	}
	got, err := Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if err := Compare(res, got); err != nil {
		t.Errorf("%s reproducer's trace differs from the agent's:\n%v\nreproducer printed:\n%s", lang, err, out)
	}
}

// TestEmittedCCompilesForWindows builds the golden C files with MinGW, for
// the Winsock half of the prelude.
func TestEmittedCCompilesForWindows(t *testing.T) {
	mingw, err := exec.LookPath("x86_64-w64-mingw32-gcc")
	if err != nil {
		t.Skip("no MinGW cross compiler (Debian: apt-get install gcc-mingw-w64-x86-64)")
	}
	files, _ := filepath.Glob("testdata/*.c")
	for _, f := range files {
		out := filepath.Join(t.TempDir(), "repro.exe")
		if b, err := exec.Command(mingw, "-Wall", "-Werror", "-O2", "-o", out, f, "-lws2_32").CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", f, err, b)
		}
	}
}

// TestEmittedGoBuildsForOtherOS cross-compiles the emitted Go for the unix
// systems lab has agents for.
func TestEmittedGoBuildsForOtherOS(t *testing.T) {
	scs := catalog(t, samples...)
	for _, goos := range []string{"freebsd", "darwin", "openbsd", "netbsd", "solaris", "illumos"} {
		t.Run(goos, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for _, sc := range scs {
				src, err := Go(sc, fixedResult(), "test", goos)
				if err != nil {
					t.Fatal(err)
				}
				f := filepath.Join(dir, "repro.go")
				os.WriteFile(f, src, 0o644)
				build := exec.Command("go", "build", "-o", filepath.Join(dir, "repro"), f)
				build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH=amd64", "GOFLAGS=")
				if b, err := build.CombinedOutput(); err != nil {
					t.Errorf("%s: %v\n%s", sc.ID, err, b)
				}
			}
		})
	}
}
