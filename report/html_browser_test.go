package report_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lab/report"
)

// TestHTMLInChromium opens report.html of testdata/run2 (with run1 as
// baseline) in a real headless Chromium driven through chromedriver's
// WebDriver API: the page loads nothing from anywhere, a click on a cell
// shows its step-by-step trace, the filter hides the scenarios without
// disagreements, and the screenshots it saves (logged, under
// $LAB_SCREENSHOTS or the temp dir) show what a reader sees.
func TestHTMLInChromium(t *testing.T) {
	chromium, driver := browserTools(t)
	dir := t.TempDir()
	page, err := report.HTML(run2(t, true))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, page, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, driver, chromium, filepath.Join(dir, "profile"))
	s.post("url", map[string]any{"url": "file://" + file})
	s.waitFor(`return document.body.dataset.ready === "true"`, "the page's script to finish")

	if n := s.exec(`return performance.getEntriesByType("resource").length`); n != float64(0) {
		t.Errorf("the page fetched %v resources; it must be self-contained", n)
	}

	// A disagreement: bsd-table/row6/on on linux-6.1, a real trace.
	trace := s.find("#trace")
	if s.displayed(trace) {
		t.Error("the trace panel shows before any click")
	}
	s.click(s.find("#cell-0-0"))
	if !s.displayed(trace) {
		t.Fatal("no trace after a click on a cell")
	}
	text := s.text(trace)
	for _, want := range []string{
		"bsd-table/row6/on on linux-6.1",
		"EADDRINUSE (differ)",
		"ok (for linux)",
		"P=36511", "addr1=127.0.0.2, any=0.0.0.0",
		"bind(0.0.0.0:36511)", "0.0.0.0:36511", // the call and the local address of step 2
		"bind(127.0.0.2:36511)", "98", // the refused bind and its errno
		"socket B SO_REUSEADDR",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("trace lacks %q:\n%s", want, text)
		}
	}
	if cls := s.exec(`return document.getElementById("cell-0-0").className`); !strings.Contains(fmt.Sprint(cls), "selected") {
		t.Errorf("clicked cell has class %q, want it selected", cls)
	}
	s.screenshot("report-html-trace.png", "")

	// Another cell replaces the trace: a result changed since the baseline.
	// It may be under the open trace, so scroll it above, as a reader would.
	s.exec(`document.getElementById("cell-1-2").scrollIntoView({block: "nearest"})`)
	s.click(s.find("#cell-1-2"))
	if text := s.text(trace); !strings.Contains(text, "bsd-table/row1/off on fake-freebsd") || !strings.Contains(text, "ok (changed)") {
		t.Errorf("trace after a second click:\n%s", text)
	}
	s.click(s.find("#trace .close"))
	if s.displayed(trace) {
		t.Error("the trace panel stays after its close button")
	}

	// The filter: reuseport/exists/udp (row 3) agrees everywhere; rows 0-2
	// differ from the answer or the baseline.
	agreeing, disagreeing, section := s.find("#row-3"), s.find("#row-0"), s.find("#section-reuseport")
	if !s.displayed(agreeing) {
		t.Fatal("row 3 hidden before filtering")
	}
	s.click(s.find("#only-disagreements"))
	if s.displayed(agreeing) || s.displayed(section) {
		t.Error("only disagreements: an agreeing row or section still shows")
	}
	if !s.displayed(disagreeing) || !s.displayed(s.find("#row-2")) {
		t.Error("only disagreements: a disagreeing row is hidden")
	}
	if got := s.text(s.find("#shown")); got != "3 of 8 scenarios shown" {
		t.Errorf("counter says %q", got)
	}
	s.screenshot("report-html-filtered.png", "")
	s.click(s.find("#only-disagreements"))
	if !s.displayed(agreeing) {
		t.Error("row 3 still hidden after the filter is off")
	}

	chart := s.find(`[id="chart-distribution/udp-reuseport"]`)
	if n := s.exec(`return document.querySelectorAll('[id="chart-distribution/udp-reuseport"] rect.bar').length`); n != float64(6) {
		t.Errorf("udp-reuseport chart has %v bars, want 6 (3 sockets on linux-6.1 and fake-freebsd)", n)
	}
	s.screenshot("report-html-chart.png", chart)
	s.post("window/rect", map[string]any{"width": 1400, "height": 2000})
	s.screenshot("report-html-page.png", "")

	// A link to a cell opens its trace: the timeout on fake-freebsd.
	s.post("url", map[string]any{"url": "file://" + file + "#cell-5-2"})
	s.post("refresh", map[string]any{})
	s.waitFor(`return document.body.dataset.ready === "true"`, "the page's script to finish")
	if text := s.text(s.find("#trace")); !strings.Contains(text, "windows/exclusiveaddruse on fake-freebsd") || !strings.Contains(text, "the scenario outlived its 5s deadline") {
		t.Errorf("trace opened by #cell-5-2:\n%s", text)
	}
}

// browserTools finds chromium and chromedriver. Without chromium the test
// is skipped, unless CI is set: there it must run.
func browserTools(t testing.TB) (chromium, driver string) {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		if os.Getenv("CI") == "" {
			t.Skip("chromium is not installed (apt-get install chromium chromium-driver); with CI set this test fails instead")
		}
		t.Fatal("chromium is not installed: scripts/setup installs chromium and chromium-driver")
	}
	driver, err := exec.LookPath("chromedriver")
	if err != nil {
		t.Fatal("chromium is installed but chromedriver is not: apt-get install chromium-driver")
	}
	return chromium, driver
}

// session is a WebDriver session with a chromedriver this test started.
type session struct {
	t    testing.TB
	base string // http://127.0.0.1:port/session/id/
	hc   *http.Client
}

// newSession starts chromedriver on a free port and a headless Chromium
// through it; both stop when the test ends.
func newSession(t testing.TB, driver, chromium, profile string) *session {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	var log bytes.Buffer
	cmd := exec.Command(driver, fmt.Sprintf("--port=%d", port))
	cmd.Stdout, cmd.Stderr = &log, &log
	// Chromium leaves a directory (org.chromium.Chromium.scoped_dir.*) in
	// $TMPDIR after every session; here it lands in one of the test's own,
	// removed after chromedriver is killed. Not t.TempDir: Chromium's
	// singleton socket goes in there too, and a socket's path must fit in
	// 108 bytes, which a long test name in a deep $TMPDIR overruns (Chrome
	// exits at once).
	tmp, err := os.MkdirTemp("", "lab-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromedriver: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("chromedriver's output:\n%s", log.String())
		}
	})
	root := fmt.Sprintf("http://127.0.0.1:%d/", port)
	s := &session{t: t, hc: &http.Client{Timeout: 60 * time.Second}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st struct{ Ready bool }
		if err := s.do("GET", root+"status", nil, &st); err == nil && st.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver not ready on port %d after 20 s:\n%s", port, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromium,
			"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
				"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
				"--user-data-dir=" + profile, "--window-size=1400,1000"},
		},
	}}}
	var created struct {
		SessionID string `json:"sessionId"`
	}
	if err := s.do("POST", root+"session", caps, &created); err != nil {
		t.Fatalf("starting chromium through chromedriver: %v\n%s", err, log.String())
	}
	s.base = root + "session/" + created.SessionID + "/"
	t.Cleanup(func() { s.do("DELETE", strings.TrimSuffix(s.base, "/"), nil, nil) })
	return s
}

// do sends a WebDriver command and decodes its "value" into out.
func (s *session) do(method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("%s %s: status %s, body not JSON: %w", method, url, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, r.Value)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(r.Value, out)
}

func (s *session) call(method, path string, body, out any) {
	s.t.Helper()
	if err := s.do(method, s.base+path, body, out); err != nil {
		s.t.Fatal(err)
	}
}

func (s *session) post(path string, body any) { s.t.Helper(); s.call("POST", path, body, nil) }

// webElement is the key of an element reference in WebDriver's JSON.
const webElement = "element-6066-11e4-a52e-4f735466cecf"

func (s *session) find(css string) string {
	s.t.Helper()
	var el map[string]string
	s.call("POST", "element", map[string]any{"using": "css selector", "value": css}, &el)
	id := el[webElement]
	if id == "" {
		s.t.Fatalf("find %s: no element reference in %v", css, el)
	}
	return id
}

func (s *session) click(el string) { s.t.Helper(); s.post("element/"+el+"/click", map[string]any{}) }

func (s *session) displayed(el string) bool {
	s.t.Helper()
	var v bool
	s.call("GET", "element/"+el+"/displayed", nil, &v)
	return v
}

func (s *session) text(el string) string {
	s.t.Helper()
	var v string
	s.call("GET", "element/"+el+"/text", nil, &v)
	return v
}

func (s *session) exec(script string) any {
	s.t.Helper()
	var v any
	s.call("POST", "execute/sync", map[string]any{"script": script, "args": []any{}}, &v)
	return v
}

func (s *session) waitFor(script, what string) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.exec(script) != true {
		if time.Now().After(deadline) {
			s.t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot saves the viewport, or one element, as a PNG under
// $LAB_SCREENSHOTS (default: lab-report-screenshots in the temp dir).
func (s *session) screenshot(name, el string) {
	s.t.Helper()
	path := "screenshot"
	if el != "" {
		path = "element/" + el + "/screenshot"
	}
	var b64 string
	s.call("GET", path, nil, &b64)
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		s.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("LAB_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "lab-report-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, png, 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("screenshot: %s", file)
}

// execAsync runs script with WebDriver's asynchronous execute: the script
// calls its last argument with the result.
func (s *session) execAsync(script string) any {
	s.t.Helper()
	var v any
	s.call("POST", "execute/async", map[string]any{"script": script, "args": []any{}}, &v)
	return v
}
