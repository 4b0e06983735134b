package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"lab/internal/testenv"
)

// publisher is an HTTP server on 127.0.0.1 laid out like the publishers' sites
// (the catalog's URL paths), serving stand-in images and checksum files in each
// publisher's format. It honours Range and If-Range as real servers do, and can
// cut a download short once to stand for a broken connection.
type publisher struct {
	srv   *httptest.Server
	mu    sync.Mutex
	files map[string]served
	cut   map[string]int64 // path -> cut the next full GET after this many bytes
	log   []request
}

type served struct {
	data []byte
	mod  time.Time
}

type request struct {
	path, rng, ifRange string
	status             int
	sent               int64
}

func newPublisher(t *testing.T) *publisher {
	p := &publisher{files: map[string]served{}, cut: map[string]int64{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *publisher) put(path string, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Each version of a file gets its own validator, as a rebuilt "latest" would.
	p.files[path] = served{data: data, mod: time.Unix(1700000000+int64(len(p.files))*100+int64(len(data)%97), 0)}
}

// countingWriter counts what the handler sent.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) WriteHeader(s int) { c.status = s; c.ResponseWriter.WriteHeader(s) }

func (p *publisher) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	f, ok := p.files[r.URL.Path]
	cut, cutting := p.cut[r.URL.Path]
	if cutting && r.Header.Get("Range") == "" {
		delete(p.cut, r.URL.Path)
	}
	p.mu.Unlock()
	cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		p.mu.Lock()
		p.log = append(p.log, request{r.URL.Path, r.Header.Get("Range"), r.Header.Get("If-Range"), cw.status, cw.n})
		p.mu.Unlock()
	}()
	if !ok {
		cw.WriteHeader(http.StatusNotFound)
		return
	}
	if cutting && r.Header.Get("Range") == "" {
		// Promise the whole file, send part of it, drop the connection.
		w.Header().Set("Content-Length", fmt.Sprint(len(f.data)))
		w.Header().Set("Last-Modified", f.mod.UTC().Format(http.TimeFormat))
		cw.WriteHeader(http.StatusOK)
		cw.Write(f.data[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	http.ServeContent(cw, r, "", f.mod, bytes.NewReader(f.data))
}

func (p *publisher) requests(path string) []request {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []request
	for _, r := range p.log {
		if r.path == path {
			out = append(out, r)
		}
	}
	return out
}

// pathOf is the URL path of a catalog URL.
func pathOf(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}

func hexSum(algo string, b []byte) string {
	if algo == "sha512" {
		s := sha512.Sum512(b)
		return hex.EncodeToString(s[:])
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// standIn is a small real disk image of format (qcow2, raw or vmdk) and its raw
// content, distinct per seed.
func standIn(t *testing.T, format string, seed byte) []byte {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	// 1 MiB that compresses poorly, so that a cut download is cut somewhere.
	content := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{seed}).Read(content)
	if err := os.WriteFile(raw, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if format == "raw" {
		return content
	}
	out := filepath.Join(dir, "disk."+format)
	if b, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", format, raw, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func compress(t *testing.T, how string, data []byte) []byte {
	t.Helper()
	switch how {
	case "":
		return data
	case "xz":
		cmd := exec.Command("xz", "-c", "-1")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	case "zst":
		var buf bytes.Buffer
		w, _ := zstd.NewWriter(&buf)
		w.Write(data)
		w.Close()
		return buf.Bytes()
	}
	t.Fatalf("compression %q", how)
	return nil
}

// sumsFile writes file's hash in the publisher's own format, among lines for other
// files, as their checksum files hold.
func sumsFile(im Image, fileHash string) []byte {
	other := strings.Repeat("0", len(fileHash))
	switch {
	case im.SumsFormat == BSDSums:
		// FreeBSD's CHECKSUM.SHA256 lists every image of the directory.
		return []byte(fmt.Sprintf("SHA256 (FreeBSD-14.3-RELEASE-amd64-BASIC-CLOUDINIT-zfs.qcow2.xz) = %s\nSHA256 (%s) = %s\nSHA256 (FreeBSD-14.3-RELEASE-amd64-ufs.raw.xz) = %s\n", other, im.fileName(), fileHash, other))
	case im.SumsFormat == BareSums:
		return []byte(fileHash + "\n")
	case strings.Contains(im.Publisher, "hcartiaux"):
		// sha256sum images/openbsd-min.qcow2 > images/openbsd-min.qcow2.sha256
		return []byte(fileHash + "  images/" + im.fileName() + "\n")
	case im.Publisher == "Canonical":
		return []byte(fmt.Sprintf("%s *noble-server-cloudimg-amd64-root.tar.xz\n%s *%s\n%s *noble-server-cloudimg-amd64.vmdk\n", other, fileHash, im.fileName(), other))
	default:
		return []byte(fmt.Sprintf("%s  debian-12-genericcloud-amd64.raw\n%s  %s\n%s  debian-12-genericcloud-amd64.json\n", other, fileHash, im.fileName(), other))
	}
}

// publish serves im's stand-in (from disk, in its format before compression) and
// its checksum file, and returns the bytes served and their hash.
func publish(t *testing.T, p *publisher, im Image, disk []byte) (file []byte, sum string) {
	t.Helper()
	file = compress(t, im.Compression, disk)
	algo := im.Hash
	if algo == "" {
		algo = "sha256"
	}
	sum = hexSum(algo, file)
	p.put(pathOf(t, im.URL), file)
	if im.Sums != "" {
		p.put(pathOf(t, im.Sums), sumsFile(im, sum))
	}
	return file, sum
}

func needTools(t *testing.T) { testenv.NeedTools(t, "qemu-img", "xz") }

// TestFetchCatalog fetches a stand-in for every catalog image from the loopback
// publisher and checks the disk it gives: the right format, the content that was
// served, and a record Resolve finds.
func TestFetchCatalog(t *testing.T) {
	needTools(t)
	p := newPublisher(t)
	cache := t.TempDir()
	for i, im := range Catalog() {
		t.Run(im.Name, func(t *testing.T) {
			format := im.Format
			disk := standIn(t, format, byte(i))
			_, sum := publish(t, p, im, disk)
			var progress bytes.Buffer
			f := &Fetcher{CacheDir: cache, BaseURL: p.srv.URL, Progress: &progress}
			opt := Options{}
			if im.Sums == "" {
				if _, err := f.Fetch(context.Background(), im.Name, opt); err == nil || !strings.Contains(err.Error(), "--sha256") {
					t.Fatalf("no checksum file and no pin: %v, want an error asking for --sha256", err)
				}
				opt.SHA256 = sum
			}
			rec, err := f.Fetch(context.Background(), im.Name, opt)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Sum != sum {
				t.Errorf("record says %s, served %s", rec.Sum, sum)
			}
			if !strings.Contains(progress.String(), "100%") {
				t.Errorf("progress shows no 100%%: %q", progress.String())
			}
			wantFormat := "qcow2"
			if format == "raw" {
				wantFormat = "raw"
			}
			if rec.Format != wantFormat || !strings.HasSuffix(rec.Path, "."+wantFormat) {
				t.Errorf("record %+v, want a %s disk", rec, wantFormat)
			}
			// The disk's content is the stand-in's, whatever it went through.
			orig := filepath.Join(t.TempDir(), "orig."+format)
			os.WriteFile(orig, disk, 0o644)
			if out, err := exec.Command("qemu-img", "compare", "-f", format, "-F", wantFormat, orig, rec.Path).CombinedOutput(); err != nil {
				t.Errorf("qemu-img compare: %v: %s", err, out)
			}
			got, err := Resolve(cache, im.Name)
			if err != nil || got != rec.Path {
				t.Errorf("Resolve(%s) = %q, %v; want %s", im.Name, got, err, rec.Path)
			}
			if left, _ := filepath.Glob(filepath.Join(cache, "images", "*.part*")); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
			// A second fetch is the cache.
			n := len(p.requests(pathOf(t, im.URL)))
			if _, err := f.Fetch(context.Background(), im.Name, opt); err != nil || len(p.requests(pathOf(t, im.URL))) != n {
				t.Errorf("second fetch: %v, %d requests after %d", err, len(p.requests(pathOf(t, im.URL))), n)
			}
		})
	}
	if got, err := Resolve(cache, "~/images/mine.qcow2"); err != nil || got != "~/images/mine.qcow2" {
		t.Errorf("Resolve of a path = %q, %v", got, err)
	}
}

// TestFetchRefuses: a download that does not match the publisher's checksum file is
// deleted and never becomes a disk, nor does an image the checksum file does not
// list, a pin that disagrees with the publisher, or a qcow2 that names a backing file.
func TestFetchRefuses(t *testing.T) {
	needTools(t)
	debian, _ := Lookup("debian-12")
	netbsd, _ := Lookup("netbsd-10.1")
	tests := []struct {
		name  string
		im    Image
		setup func(t *testing.T, p *publisher, im Image) Options
		want  string
	}{
		{"corrupted download", debian, func(t *testing.T, p *publisher, im Image) Options {
			file, _ := publish(t, p, im, standIn(t, "qcow2", 1))
			bad := append([]byte(nil), file...)
			bad[len(bad)/2] ^= 0xff // one byte flipped on the way
			p.put(pathOf(t, im.URL), bad)
			return Options{}
		}, "checksum mismatch"},
		{"wrong checksum", debian, func(t *testing.T, p *publisher, im Image) Options {
			publish(t, p, im, standIn(t, "qcow2", 2))
			p.put(pathOf(t, im.Sums), sumsFile(im, hexSum("sha512", []byte("another image"))))
			return Options{}
		}, "checksum mismatch"},
		{"not listed", debian, func(t *testing.T, p *publisher, im Image) Options {
			publish(t, p, im, standIn(t, "qcow2", 3))
			p.put(pathOf(t, im.Sums), []byte(hexSum("sha512", nil)+"  debian-12-genericcloud-arm64.qcow2\n"))
			return Options{}
		}, "no sha512 line for debian-12-genericcloud-amd64.qcow2"},
		{"no checksum file", debian, func(t *testing.T, p *publisher, im Image) Options {
			p.put(pathOf(t, im.URL), standIn(t, "qcow2", 4))
			return Options{}
		}, "404"},
		{"pin against the publisher", debian, func(t *testing.T, p *publisher, im Image) Options {
			publish(t, p, im, standIn(t, "qcow2", 5))
			return Options{SHA256: hexSum("sha256", []byte("x"))}
		}, "sha512 sums"},
		{"wrong pin", netbsd, func(t *testing.T, p *publisher, im Image) Options {
			publish(t, p, im, standIn(t, "qcow2", 6))
			return Options{SHA256: hexSum("sha256", []byte("x"))}
		}, "checksum mismatch"},
		{"backing file", debian, func(t *testing.T, p *publisher, im Image) Options {
			dir := t.TempDir()
			evil := filepath.Join(dir, "evil.qcow2")
			if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", evil, "1M").CombinedOutput(); err != nil {
				t.Fatalf("qemu-img create: %v: %s", err, out)
			}
			b, _ := os.ReadFile(evil)
			p.put(pathOf(t, im.URL), b)
			p.put(pathOf(t, im.Sums), sumsFile(im, hexSum("sha512", b)))
			return Options{}
		}, "backing file (/etc/shadow)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPublisher(t)
			cache := t.TempDir()
			opt := tc.setup(t, p, tc.im)
			f := &Fetcher{CacheDir: cache, BaseURL: p.srv.URL}
			rec, err := f.Fetch(context.Background(), tc.im.Name, opt)
			if err == nil {
				t.Fatalf("Fetch accepted it: %+v", rec)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			t.Logf("refused: %v", err)
			entries, _ := os.ReadDir(filepath.Join(cache, "images"))
			for _, e := range entries {
				if !strings.HasSuffix(e.Name(), ".lock") {
					t.Errorf("left in the cache: %s", e.Name())
				}
			}
			if _, err := Resolve(cache, tc.im.Name); err == nil || !strings.Contains(err.Error(), "lab image fetch") {
				t.Errorf("Resolve after a refused fetch: %v", err)
			}
		})
	}
}

// TestFetchResumes: a download cut short keeps what arrived; the next fetch asks
// for the rest only (Range, If-Range) and the result passes the checksum. If the
// file changed in between, the server's If-Range answer is the whole new file.
func TestFetchResumes(t *testing.T) {
	needTools(t)
	im, _ := Lookup("freebsd-14.3")
	for _, changed := range []bool{false, true} {
		name := "same file"
		if changed {
			name = "file changed in between"
		}
		t.Run(name, func(t *testing.T) {
			p := newPublisher(t)
			cache := t.TempDir()
			file, _ := publish(t, p, im, standIn(t, "qcow2", 7))
			path := pathOf(t, im.URL)
			half := int64(len(file) / 2)
			p.mu.Lock()
			p.cut[path] = half
			p.mu.Unlock()
			f := &Fetcher{CacheDir: cache, BaseURL: p.srv.URL}
			_, err := f.Fetch(context.Background(), im.Name, Options{})
			if err == nil || !strings.Contains(err.Error(), "resumes") {
				t.Fatalf("cut download: %v, want an error saying the next attempt resumes", err)
			}
			part := filepath.Join(cache, "images", im.fileName()+".part")
			if st, err := os.Stat(part); err != nil || st.Size() != half {
				t.Fatalf("partial file: %v, %v; want %d bytes", st, err, half)
			}
			if changed {
				file, _ = publish(t, p, im, standIn(t, "qcow2", 8))
			}
			var progress bytes.Buffer
			f.Progress = &progress
			rec, err := f.Fetch(context.Background(), im.Name, Options{})
			if err != nil {
				t.Fatal(err)
			}
			reqs := p.requests(path)
			last := reqs[len(reqs)-1]
			if last.rng != fmt.Sprintf("bytes=%d-", half) || last.ifRange == "" {
				t.Errorf("second request Range %q If-Range %q, want bytes=%d- with a validator", last.rng, last.ifRange, half)
			}
			if !changed && (last.status != http.StatusPartialContent || last.sent != int64(len(file))-half || !strings.Contains(progress.String(), "resuming at")) {
				t.Errorf("resume: status %d, %d bytes sent, want 206 and the %d missing; progress %q", last.status, last.sent, int64(len(file))-half, progress.String())
			}
			if changed && (last.status != http.StatusOK || last.sent != int64(len(file))) {
				t.Errorf("changed file: status %d, %d bytes sent, want 200 and the whole new file (%d)", last.status, last.sent, len(file))
			}
			if rec.Sum != hexSum("sha256", file) {
				t.Errorf("fetched %s, want the served file's %s", rec.Sum, hexSum("sha256", file))
			}
			t.Logf("first attempt cut at %d of %d bytes; the second fetched %d (status %d)", half, len(file), last.sent, last.status)
		})
	}
}

func TestParseSums(t *testing.T) {
	h256 := strings.Repeat("ab", 32)
	h512 := strings.Repeat("cd", 64)
	tests := []struct {
		name   string
		format SumsFormat
		hash   string
		data   string
		file   string
		want   string // "" with err
		err    string
	}{
		{"freebsd", BSDSums, "sha256", "SHA256 (a.qcow2.xz) = " + strings.Repeat("0", 64) + "\nSHA256 (FreeBSD-14.3.qcow2.xz) = " + strings.ToUpper(h256) + "\n", "FreeBSD-14.3.qcow2.xz", h256, ""},
		{"freebsd other algorithm lines", BSDSums, "sha256", "SHA512 (x) = " + h512 + "\nSHA256 (x) = " + h256 + "\n", "x", h256, ""},
		{"freebsd name with parentheses", BSDSums, "sha256", "SHA256 (a (1).xz) = " + h256 + "\n", "a (1).xz", h256, ""},
		{"freebsd malformed", BSDSums, "sha256", "SHA256 x = " + h256 + "\n", "x", "", "line 1"},
		{"debian", GNUSums, "sha512", h512 + "  debian-12-genericcloud-amd64.qcow2\n", "debian-12-genericcloud-amd64.qcow2", h512, ""},
		{"ubuntu binary marker", GNUSums, "sha256", "# comment\n" + h256 + " *noble.img\n", "noble.img", h256, ""},
		{"openbsd directory in the name", GNUSums, "sha256", h256 + "  images/openbsd-min.qcow2\n", "openbsd-min.qcow2", h256, ""},
		{"prefix is not a match", GNUSums, "sha256", h256 + "  xopenbsd-min.qcow2\n", "openbsd-min.qcow2", "", "no sha256 line"},
		{"short hash", GNUSums, "sha512", h256 + "  f\n", "f", "", "line 1: "},
		{"listed twice, two hashes", GNUSums, "sha256", h256 + "  f\n" + strings.Repeat("0", 64) + "  f\n", "f", "", "line 2: f is listed again"},
		{"omnios bare", BareSums, "sha256", h256 + "\n", "omnios.vmdk", h256, ""},
		{"bare with the right name", BareSums, "sha256", h256 + "  omnios.vmdk\n", "omnios.vmdk", h256, ""},
		{"bare with another name", BareSums, "sha256", h256 + "  other.vmdk\n", "omnios.vmdk", "", "not \"omnios.vmdk\""},
		{"bare empty", BareSums, "sha256", "\n", "f", "", "empty"},
		{"bare not hex", BareSums, "sha256", strings.Repeat("g", 64), "f", "", "not a sha256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSums(tc.format, tc.hash, []byte(tc.data), tc.file)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseSums = %q, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSums = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func FuzzParseSums(f *testing.F) {
	f.Add("bsd", "SHA256 (x) = "+strings.Repeat("a", 64)+"\n", "x")
	f.Add("gnu", strings.Repeat("a", 64)+" *x\n", "x")
	f.Add("bare", strings.Repeat("a", 64), "x")
	f.Fuzz(func(t *testing.T, format, data, file string) {
		got, err := ParseSums(SumsFormat(format), "sha256", []byte(data), file)
		if err == nil && (len(got) != 64 || strings.Trim(got, "0123456789abcdef") != "") {
			t.Errorf("ParseSums returned %q", got)
		}
	})
}

func TestCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, im := range Catalog() {
		if seen[im.Name] {
			t.Errorf("%s twice", im.Name)
		}
		seen[im.Name] = true
		if (im.Sums == "") != (im.SumsFormat == "") || (im.Sums != "" && hexLen[im.Hash] == 0) {
			t.Errorf("%s: checksum file %q format %q hash %q", im.Name, im.Sums, im.SumsFormat, im.Hash)
		}
		if im.Community != strings.Contains(im.Publisher, "community") {
			t.Errorf("%s: community build not named as such: %q", im.Name, im.Publisher)
		}
		if !strings.HasPrefix(im.URL, "https://") || (im.Sums != "" && !strings.HasPrefix(im.Sums, "https://")) {
			t.Errorf("%s: not https: %s %s", im.Name, im.URL, im.Sums)
		}
	}
	if _, err := Lookup("windows-11"); err == nil || !strings.Contains(err.Error(), "freebsd-14.3") {
		t.Errorf("Lookup of an unknown name: %v", err)
	}
}
