package orchestrator

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"lab/rundir"
	"lab/scenario"
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
	if err := (Wine{}).Check(&Target{}); err != nil {
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
	scs := catalogScenarios(t, "windows/exclusiveaddruse/*,windows/steal/*,bsd-table/row1/*,timewait/no-flag,timewait/reuseaddr-both,timewait/reuseport-both,windows/reuseaddr-both/listen")
	if len(scs) != len(want) {
		t.Fatalf("the catalog gave %d scenarios, the test pins %d", len(scs), len(want))
	}
	cache := os.Getenv("LAB_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "lab-cache")
	}
	target := &Target{Name: "wine", Provider: "wine"}
	sum, err := Run(context.Background(), Options{
		Targets: []*Target{target}, Scenarios: scs, ResultsDir: t.TempDir(), CacheDir: cache, Parallel: 1,
		Log: hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Warn}), Providers: Providers(),
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
}

func catalogScenarios(t *testing.T, only string) []scenario.Scenario {
	t.Helper()
	scs, err := scenario.ParseFile("../scenarios.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return scenario.Filter(scs, only)
}

// wineProcesses lists processes whose environment names prefix as their
// WINEPREFIX.
func wineProcesses(prefix string) []string {
	var out []string
	envs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, f := range envs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if string(kv) == "WINEPREFIX="+prefix {
				cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "cmdline"))
				out = append(out, filepath.Base(filepath.Dir(f))+": "+strings.ReplaceAll(string(cmd), "\x00", " "))
			}
		}
	}
	return out
}

// TestForwarderDLL reads the DLL back with debug/pe and walks its export
// table as a loader does.
func TestForwarderDLL(t *testing.T) {
	fwd := map[string]string{"ProcessPrng": "advapi32.SystemFunction036", "Another": "kernel32.Sleep"}
	img := forwarderDLL("bcryptprimitives.dll", fwd)
	f, err := pe.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 || f.Characteristics&pe.IMAGE_FILE_DLL == 0 {
		t.Fatalf("machine %#x, characteristics %#x; want an AMD64 DLL", f.Machine, f.Characteristics)
	}
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		t.Fatalf("optional header %T, want PE32+", f.OptionalHeader)
	}
	dir := oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_EXPORT]
	if len(f.Sections) != 1 {
		t.Fatalf("%d sections", len(f.Sections))
	}
	sec := f.Sections[0]
	data, err := sec.Data()
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	at := func(rva uint32) []byte { return data[rva-sec.VirtualAddress:] }
	cstr := func(rva uint32) string { b := at(rva); return string(b[:bytes.IndexByte(b, 0)]) }
	ed := at(dir.VirtualAddress)
	if got := cstr(le.Uint32(ed[12:])); got != "bcryptprimitives.dll" {
		t.Errorf("name %q", got)
	}
	n := le.Uint32(ed[24:])
	funcs, names, ords := at(le.Uint32(ed[28:])), at(le.Uint32(ed[32:])), at(le.Uint32(ed[36:]))
	got := map[string]string{}
	prev := ""
	for i := uint32(0); i < n; i++ {
		name := cstr(le.Uint32(names[4*i:]))
		if name <= prev {
			t.Errorf("names not sorted: %q after %q", name, prev)
		}
		prev = name
		rva := le.Uint32(funcs[4*uint32(le.Uint16(ords[2*i:])):])
		if rva < dir.VirtualAddress || rva >= dir.VirtualAddress+dir.Size {
			t.Errorf("%s: address %#x is outside the export directory, so not a forwarder", name, rva)
		}
		got[name] = cstr(rva)
	}
	if len(got) != len(fwd) {
		t.Fatalf("exports %v, want %v", got, fwd)
	}
	for k, v := range fwd {
		if got[k] != v {
			t.Errorf("%s forwards to %q, want %q", k, got[k], v)
		}
	}
}
