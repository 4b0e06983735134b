//go:build linux

package orchestrator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"lab/orchestrator"
	"lab/rundir"
	"lab/scenario"
	"lab/target"
)

// The kernels lab runs in-process: NetBSD's network stack as a rump kernel
// (target netbsd-rump) and FreeBSD 13's through F-Stack (freebsd-fstack),
// run through the engine as lab run runs them. Their libraries are built
// into the cache on first use (minutes: the packages rump and fstack test
// the builds themselves).

// TestUserSpaceStacks runs the catalog on both beside this machine: every
// target completes with every result, and each says what it is, never a
// booted release.
func TestUserSpaceStacks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the rump kernel and F-Stack on first use")
	}
	scs := scenarios(t, "")
	opts := runOpts(t, []target.Spec{defaultTarget(t, "local"), defaultTarget(t, "netbsd-rump"), defaultTarget(t, "freebsd-fstack")}, scs)
	sum, err := orchestrator.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ os, family, kernel string }{
		"local":          {"linux", "linux", ""},
		"netbsd-rump":    {"netbsd", "bsd", "rump kernel, src-netbsd 82f3a690"},
		"freebsd-fstack": {"freebsd", "bsd", "F-Stack bfad7eec, user-space stack"},
	}
	for _, tr := range sum.Targets {
		w := want[tr.Name]
		if tr.Status != rundir.StatusComplete || len(tr.Results) != len(scs) {
			t.Errorf("%s: %s with %d of %d results: %s", tr.Name, tr.Status, len(tr.Results), len(scs), tr.Error)
			continue
		}
		if tr.Env == nil || tr.Env.OS != w.os || tr.Env.Family != w.family || !strings.Contains(tr.Env.KernelRelease+" "+tr.Env.KernelVersion, w.kernel) {
			t.Errorf("%s: environment %+v; want os %s and a kernel naming %q", tr.Name, tr.Env, w.os, w.kernel)
		}
		var ph []string
		for _, p := range tr.Phases {
			ph = append(ph, p.Name+"="+(time.Duration(p.Millis)*time.Millisecond).String())
		}
		t.Logf("%s: %s", tr.Name, strings.Join(ph, " "))
	}
}

// faultCatalog is three scenarios whose second binds the port the stacks'
// fault builds fail on (rump: LAB_RUMP_PANIC_ON_BIND; F-Stack: port 4242).
func faultCatalog(t *testing.T, port string) []scenario.Scenario {
	t.Helper()
	src := `scenarios:
  - {id: fault/before, title: before the fault, proto: tcp, steps: [socket A, "bind A addr1:P"]}
  - {id: fault/fault, title: the bind the fault build fails on, proto: tcp, steps: [socket A, "bind A loop:` + port + `"]}
  - {id: fault/after, title: after the fault, proto: tcp, steps: [socket A, "bind A addr1:P"]}
`
	scs, err := scenario.Parse("fault.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return scs
}

// faultBuild is a provider whose agents are its fault-test build (the tag
// added to the agent's), for the kernel's failure to be real.
type faultBuild struct {
	target.Provider
	tag string
}

func (p faultBuild) Start(ctx context.Context, s target.Spec, env target.Env) (*target.Instance, error) {
	in, err := p.Provider.Start(ctx, s, env)
	if err == nil {
		in.Agent.Tags = append(in.Agent.Tags, p.tag)
	}
	return in, err
}

// TestStackFaultFailsTarget: a rump kernel that panics, and an F-Stack
// process that crashes, fail their target with what they said, keep the
// result measured before, and leave the other targets running.
func TestStackFaultFailsTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the rump kernel and F-Stack on first use")
	}
	for _, tc := range []struct {
		name, provider, tag, port string
		env                       map[string]string
		said                      string // in the target's error
	}{
		{"rump kernel panic", "rump", "rumpfault", "40999", map[string]string{"LAB_RUMP_PANIC_ON_BIND": "127.0.0.1:40999"}, "panic: "},
		{"F-Stack crash", "fstack", "fstackfault", "4242", map[string]string{"LAB_FSTACK_FAULT": "segv"}, "the F-Stack process failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			real, _ := target.Lookup(tc.provider)
			stack := defaultTarget(t, map[string]string{"rump": "netbsd-rump", "fstack": "freebsd-fstack"}[tc.provider])
			opts := runOpts(t, []target.Spec{stack, defaultTarget(t, "local")}, faultCatalog(t, tc.port))
			opts.Providers = map[string]target.Provider{tc.provider: faultBuild{Provider: real, tag: tc.tag}}
			sum, err := orchestrator.Run(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			d, err := rundir.Read(sum.Dir)
			if err != nil {
				t.Fatal(err)
			}
			faulty, other := d.Targets[0], d.Targets[1]
			t.Logf("%s: %s, %d results: %s", faulty.Name, faulty.Status, len(faulty.Results), faulty.Error)
			if faulty.Status != rundir.StatusFailed || !strings.Contains(faulty.Error, tc.said) {
				t.Errorf("%s: status %s, error %q; want failed, saying %q", faulty.Name, faulty.Status, faulty.Error, tc.said)
			}
			if len(faulty.Results) < 1 || faulty.Results[0].ID != "fault/before" {
				t.Errorf("%s kept %d results; want the one measured before the fault", faulty.Name, len(faulty.Results))
			}
			if other.Status != rundir.StatusComplete || len(other.Results) != 3 {
				t.Errorf("%s: %s with %d results; want complete: a failing target stops no other", other.Name, other.Status, len(other.Results))
			}
		})
	}
}

// BenchmarkUserSpaceStacks prints lab's own phases running the whole
// catalog on netbsd-rump and freebsd-fstack with their builds cached
// (targets: at most 1 s and 5 s), beside this machine's in the same run.
func BenchmarkUserSpaceStacks(b *testing.B) {
	scs := scenarios(b, "")
	targets := []target.Spec{defaultTarget(b, "local"), defaultTarget(b, "netbsd-rump"), defaultTarget(b, "freebsd-fstack")}
	benchRun(b, targets, scs[:1]) // builds, outside the timing
	for b.Loop() {
		opts := orchestrator.Options{Targets: targets, Scenarios: scs, ResultsDir: b.TempDir(), CacheDir: cacheDir(b), Parallel: 1, Log: quietLog()}
		sum, err := orchestrator.Run(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		var local float64
		for _, tr := range sum.Targets {
			if tr.Status != rundir.StatusComplete {
				b.Fatalf("%s: %s %s", tr.Name, tr.Status, tr.Error)
			}
			var ms int64
			for _, p := range tr.Phases {
				ms += p.Millis
			}
			s := float64(ms) / 1000
			if tr.Name == "local" {
				local = s
			}
			b.ReportMetric(s, "s-"+tr.Name)
		}
		for _, tr := range sum.Targets[1:] {
			var ms int64
			for _, p := range tr.Phases {
				ms += p.Millis
			}
			b.ReportMetric(float64(ms)/1000/local, "ratio-"+tr.Name+"-to-local")
		}
	}
}
