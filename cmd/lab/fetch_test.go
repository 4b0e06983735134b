//go:build linux

package main

import (
	"crypto/sha512"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImageFetch runs lab image fetch against a server on 127.0.0.1 laid
// out as Debian's image site (--mirror), serving a stand-in qcow2 and
// Debian's SHA512SUMS: the image lands in the cache and a target's disk:
// finds it by name (lab targets says ready); a wrong checksum is refused
// with exit 3 and no image stays in the cache (its lock file does).
func TestImageFetch(t *testing.T) {
	img := filepath.Join(t.TempDir(), "debian-12-genericcloud-amd64.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(data)
	sums := hex.EncodeToString(sum[:]) + "  debian-12-genericcloud-amd64.qcow2\n"
	for _, tc := range []struct {
		name string
		sums string
		code int
	}{
		{"verified", sums, exitOK},
		{"wrong checksum", strings.Repeat("0", 128) + "  debian-12-genericcloud-amd64.qcow2\n", exitInfra},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2":
					http.ServeContent(w, r, "x.qcow2", fileTime(t, img), strings.NewReader(string(data)))
				case "/images/cloud/bookworm/latest/SHA512SUMS":
					w.Write([]byte(tc.sums))
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			cache := t.TempDir()
			bin := labBinary(t)
			code, stdout, stderr := runLab(t, bin, nil, "image", "fetch", "--cache", cache, "--mirror", srv.URL, "debian-12")
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			var left []string
			for _, ext := range []string{"qcow2", "raw", "json", "part"} {
				m, _ := filepath.Glob(filepath.Join(cache, "images", "debian-12*."+ext))
				left = append(left, m...)
			}
			if tc.code != exitOK {
				if !strings.Contains(stderr, "sha512") || len(left) > 0 {
					t.Errorf("a wrong checksum: stderr %q, left in the cache %v", stderr, left)
				}
				return
			}
			if !strings.Contains(stdout, filepath.Join(cache, "images")) || len(left) == 0 {
				t.Errorf("stdout %q, cache %v", stdout, left)
			}
			_, tstdout, _ := runLab(t, bin, nil, "targets", "--cache", cache)
			for _, l := range strings.Split(tstdout, "\n") {
				if strings.HasPrefix(l, "debian-12-cloud ") && !strings.HasSuffix(l, "ready") {
					t.Errorf("lab targets after the fetch: %s", l)
				}
			}
		})
	}
}

func fileTime(t *testing.T, p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}
