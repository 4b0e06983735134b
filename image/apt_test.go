package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"lab/internal/testenv"
)

func TestParseSimulation(t *testing.T) {
	out := `NOTE: This is only a simulation!
Inst libc6 (2.36-9+deb12u9 Debian:12.9/stable [amd64])
Inst openssh-server (1:9.2p1-2+deb12u3 Debian:12.9/stable [amd64])
Inst debconf (1.5.82 Debian:12.9/stable [all])
Inst foo [1.0] (2.0 Debian:12.9/stable [amd64])
Conf libc6 (2.36-9+deb12u9 Debian:12.9/stable [amd64])
`
	got := parseSimulation([]byte(out))
	want := []pkg{
		{"debconf", "1.5.82", "all"},
		{"foo", "2.0", "amd64"},
		{"libc6", "2.36-9+deb12u9", "amd64"},
		{"openssh-server", "1:9.2p1-2+deb12u3", "amd64"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseSimulation = %v, want %v", got, want)
	}
	if f := want[3].debFile(); f != "openssh-server_1%3a9.2p1-2+deb12u3_amd64.deb" {
		t.Errorf("debFile = %s", f)
	}
}

func TestParseControlAndDepends(t *testing.T) {
	rec := parseControl([]byte(`Package: linux-image-cloud-amd64
Version: 6.1.176-1
Depends: linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1), foo:any | bar
Description: Linux for x86-64 cloud (meta-package)
 This package depends on the latest Linux kernel.

Package: second
`))
	if rec["Package"] != "linux-image-cloud-amd64" || rec["Version"] != "6.1.176-1" {
		t.Errorf("parseControl = %v", rec)
	}
	got := parseDepends(rec["Depends"])
	want := []string{"linux-image-6.1.0-50-cloud-amd64", "foo"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseDepends = %v, want %v", got, want)
	}
}

func TestHostname(t *testing.T) {
	tests := []struct{ name, want string }{
		{"linux-6.1", "lab-linux-6-1"},
		{"Linux_5.10", "lab-linux-5-10"},
	}
	for _, tc := range tests {
		if got := hostname(tc.name); got != tc.want {
			t.Errorf("hostname(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRootfsResolve(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "lib/x86_64-linux-gnu"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "lib64"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "lib/x86_64-linux-gnu/ld-2.so"), nil, 0o644))
	// Absolute links point into the rootfs, never into the host.
	must(os.Symlink("/lib/x86_64-linux-gnu/ld-2.so", filepath.Join(dir, "lib64/ld.so")))
	must(os.Symlink("../lib", filepath.Join(dir, "usrlib")))
	r := rootfs{dir}
	for _, p := range []string{"/lib64/ld.so", "/usrlib/x86_64-linux-gnu/ld-2.so"} {
		got, err := r.resolve(p)
		if want := filepath.Join(dir, "lib/x86_64-linux-gnu/ld-2.so"); err != nil || got != want {
			t.Errorf("resolve(%s) = %s, %v; want %s", p, got, err, want)
		}
	}
	if _, err := r.resolve("/lib64/missing"); err == nil {
		t.Error("resolve of a missing file succeeded")
	}
}

func TestSpecDefaults(t *testing.T) {
	s, err := Spec{Name: "x", Suite: "bookworm", KernelPackage: "linux-image-cloud-amd64"}.withDefaults()
	if err != nil || s.Arch != "amd64" || s.Mirror != DefaultMirror {
		t.Errorf("withDefaults = %+v, %v", s, err)
	}
	if _, err := (Spec{Name: "a/b", Arch: "mips"}).withDefaults(); err == nil {
		t.Error("bad spec accepted")
	}
}

// A cancelled build stops at its first command and says why.
func TestBuildCancelled(t *testing.T) {
	testenv.NeedTools(t, "apt-get")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Build(ctx, Defaults[0], t.TempDir(), nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Build with a cancelled context: %v, want context.Canceled", err)
	}
}
