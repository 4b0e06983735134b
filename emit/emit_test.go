package emit

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
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
	} {
		sc := wire.Scenario{ID: "x", Proto: "tcp", Steps: []wire.Step{st}}
		if _, err := C(sc, fixedResult(), "local"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("C(%s): %v, want ErrUnsupported", st.Text, err)
		}
		if _, err := Go(sc, fixedResult(), "local", "linux"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Go(%s): %v, want ErrUnsupported", st.Text, err)
		}
	}
}

func TestParseCompare(t *testing.T) {
	out := "noise\nstep 1: socket A: ok\nstep 2: bind A addr1:P: ok\nstep 3: bind B addr1:P: EADDRINUSE (98)\n"
	got, err := Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].Result != "EADDRINUSE" || got[2].Errno != 98 || got[1].Text != "bind A addr1:P" {
		t.Fatalf("Parse: %+v", got)
	}
	agentSteps := []wire.StepResult{{Text: "socket A", Result: "ok"}, {Text: "bind A addr1:P", Result: "ok"}, {Text: "bind B addr1:P", Result: "EADDRINUSE"}}
	if err := Compare(agentSteps, got); err != nil {
		t.Errorf("Compare of equal traces: %v", err)
	}
	agentSteps[2].Result = "ok"
	if err := Compare(agentSteps, got); err == nil {
		t.Error("Compare missed a different result")
	}
	if err := Compare(agentSteps[:2], got); err == nil {
		t.Error("Compare missed an extra step")
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
	if err := Compare(res.Steps, got); err != nil {
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
