//go:build linux

package orchestrator_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"lab/internal/testenv"
	"lab/orchestrator"
	"lab/rundir"
	"lab/target"
)

// TestWineObserved runs a handful of the catalog's scenarios with the
// Windows agent under Wine, for real, and pins what Wine 8.0 (Debian 12)
// did. These are observations of Wine's emulation of Winsock on Linux, not
// of Windows: Wine answers a refused bind of a socket with SO_REUSEADDR
// with WSAEACCES (Windows's error for a port held with
// SO_EXCLUSIVEADDRUSE) whatever the other socket did, and never lets
// SO_REUSEADDR take over a bound port as the answer says Windows does.
func TestWineObserved(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the Windows agent under Wine; skipped with -short")
	}
	spec := oneTarget(t, "{name: wine, provider: wine}")
	if err := target.Check(spec, target.Env{CacheDir: cacheDir(t)}); err != nil {
		t.Fatalf("scripts/setup installs Wine (wine64 wine): %v", err)
	}
	want := map[string]string{
		"bsd-table/row1/off": "EADDRINUSE",
		"bsd-table/row1/on":  "EACCES",
		// Wine emulates SO_EXCLUSIVEADDRUSE: the plain socket gets
		// WSAEADDRINUSE, the one with SO_REUSEADDR WSAEACCES, as on
		// Windows.
		"windows/exclusiveaddruse/reuseaddr-same/tcp": "EACCES",
		"windows/exclusiveaddruse/reuseaddr-same/udp": "EACCES",
		"windows/exclusiveaddruse/plain-same":         "EADDRINUSE",
		"windows/exclusiveaddruse/any-then-specific":  "EACCES",
		// The answer says Windows lets SO_REUSEADDR steal any of these;
		// Wine refuses every one.
		"windows/steal/same/tcp":         "EACCES",
		"windows/steal/same/udp":         "EACCES",
		"windows/steal/any":              "EACCES",
		"windows/steal/listening":        "EACCES",
		"windows/steal/connected":        "EACCES",
		"timewait/no-flag":               "ok", // connect, accept, WSAPoll and recv to the peer's FIN all work
		"timewait/reuseaddr-both":        "ok",
		"timewait/reuseport-both":        "unsupported",
		"timewait/reuseaddr-both/listen": "ok",
		"timewait/reuseport-both/listen": "unsupported",
		"windows/reuseaddr-both/listen":  "setup-failed", // the second bind, before listen: EACCES
	}
	scs := scenarios(t, "windows/exclusiveaddruse/*,windows/steal/*,bsd-table/row1/*,timewait/no-flag,timewait/reuseaddr-both,timewait/reuseport-both,windows/reuseaddr-both/listen")
	if len(scs) != len(want) {
		t.Fatalf("the catalog gave %d scenarios, the test pins %d", len(scs), len(want))
	}
	cache := os.Getenv("LAB_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "lab-cache")
	}
	results := t.TempDir() // before TMPDIR changes
	// lab's $TMPDIR is the test's, to see that the run leaves nothing there
	// (Debian's wineserver makes a directory in it that it never removes).
	// A short one: Wine's socket is made below it.
	tmp, err := os.MkdirTemp("/tmp", "lab-wt-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	t.Setenv("TMPDIR", tmp)
	sum, err := orchestrator.Run(context.Background(), orchestrator.Options{
		Targets: []target.Spec{spec}, Scenarios: scs, ResultsDir: results, CacheDir: cache, Parallel: 1,
		Log: hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Warn}),
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := sum.Targets[0]
	if tr.Status != rundir.StatusComplete {
		t.Fatalf("status %s: %s", tr.Status, tr.Error)
	}
	if tr.Provider != "wine" || tr.Env == nil || tr.Env.OS != "windows" || !strings.HasPrefix(tr.Env.KernelVersion, "Wine ") {
		t.Errorf("provider %q, env %+v; want provider wine and an agent that says it runs on Wine", tr.Provider, tr.Env)
	}
	t.Logf("agent's environment under Wine: os %s, kernel_release %s, kernel_version %q", tr.Env.OS, tr.Env.KernelRelease, tr.Env.KernelVersion)
	for _, r := range tr.Results {
		if r.Outcome != want[r.ID] {
			t.Errorf("under Wine, %s: %s (%s); observed before: %s", r.ID, r.Outcome, r.Reason, want[r.ID])
		}
	}
	if len(tr.Results) != len(want) {
		t.Errorf("%d results, want %d", len(tr.Results), len(want))
	}
	// The teardown ended lab's wineserver; the prefix's services see it
	// gone and exit within a moment.
	prefix, _ := filepath.Abs(filepath.Join(cache, "wine", "wine"))
	left := wineProcesses(prefix)
	for deadline := time.Now().Add(5 * time.Second); len(left) > 0 && time.Now().Before(deadline); left = wineProcesses(prefix) {
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("Wine processes of the prefix left running: %v", left)
	}
	for _, name := range testenv.Left(t, tmp) {
		t.Errorf("the run left %s in $TMPDIR", name)
	}
}

// wineProcesses lists processes whose environment names prefix as their
// WINEPREFIX.
func wineProcesses(prefix string) []string {
	return testenv.Processes("environ", func(b []byte) bool { return testenv.HasField(b, "WINEPREFIX="+prefix) })
}
