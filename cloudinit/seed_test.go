package cloudinit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"lab/internal/testenv"
)

// isoVolumeID reads the volume identifier of an ISO 9660 image's primary volume
// descriptor (sector 16: type 1, "CD001", the identifier at bytes 40-71, padded with
// spaces), which is the label every reader matches.
func isoVolumeID(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pvd := make([]byte, 2048)
	if _, err := f.ReadAt(pvd, 16*2048); err != nil {
		t.Fatalf("reading the primary volume descriptor: %v", err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		t.Fatalf("sector 16 is not a primary volume descriptor: % x", pvd[:8])
	}
	return strings.TrimRight(string(pvd[40:72]), " ")
}

// blkid returns what util-linux's blkid, which cloud-init on Linux asks, says of path.
func blkid(t *testing.T, path string) map[string]string {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-o", "export", path).Output()
	if err != nil {
		t.Fatalf("blkid %s: %v", path, err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func names(files map[string]string) []string {
	var out []string
	for k := range files {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestWriteSeedISO writes a real seed and reads it back the ways guests do: the
// volume label from the descriptor and through blkid (which Linux cloud-init asks),
// and the files under their Rock Ridge names (FreeBSD, NetBSD and illumos prefer
// those), their Joliet names, and neither, which shows why the tools are asked for
// both (plain ISO 9660 names are "USER_DAT.;1"). The boot test mounts one in a guest.
func TestWriteSeedISO(t *testing.T) {
	testenv.NeedTools(t, "xorriso", "blkid")
	for _, goos := range OSes() {
		t.Run(goos, func(t *testing.T) {
			c := goldenConfig(t, goos)
			path := filepath.Join(t.TempDir(), "seed.iso")
			format, err := WriteSeed(path, c)
			if err != nil {
				t.Fatal(err)
			}
			if format != ISO9660 {
				t.Fatalf("format %s, want iso9660 (xorriso is installed)", format)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("seed mode %04o, want 0600: it holds the host's private key", st.Mode().Perm())
			}
			if id := isoVolumeID(t, path); id != Label {
				t.Errorf("volume id %q, want %q", id, Label)
			}
			if b := blkid(t, path); b["TYPE"] != "iso9660" || b["LABEL"] != Label {
				t.Errorf("blkid says %v, want TYPE=iso9660 LABEL=%s", b, Label)
			}
			if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("temporary file left: %v", err)
			}
			image, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ud, _ := c.UserData()
			want := map[string]string{"user-data": ud, "meta-data": c.MetaData()}
			for _, m := range []struct {
				name  string
				names isoNames
			}{{"rock ridge", rockRidge}, {"joliet", joliet}} {
				v, err := readISO(image, m.names)
				if err != nil {
					t.Fatalf("%s: %v", m.name, err)
				}
				if v.label != Label {
					t.Errorf("%s: label %q", m.name, v.label)
				}
				if strings.Join(names(v.files), " ") != "meta-data user-data" {
					t.Errorf("%s: files %v, want meta-data user-data", m.name, names(v.files))
				}
				for k, w := range want {
					if v.files[k] != w {
						t.Errorf("%s: %s differs:\n%s", m.name, k, v.files[k])
					}
				}
			}
			plain, err := readISO(image, plainNames)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := plain.files["user-data"]; ok || len(plain.files) != 2 {
				t.Errorf("plain ISO 9660 names are %v; want two names other than user-data", names(plain.files))
			}
			t.Logf("%d bytes; plain names %v", len(image), names(plain.files))
		})
	}
}

// TestWriteSeedFallback: without an ISO tool, a guest that reads vfat gets a vfat
// seed labelled cidata, and one that does not gets an error saying what to install.
func TestWriteSeedFallback(t *testing.T) {
	testenv.NeedTools(t, "mkfs.vfat", "mcopy", "blkid")
	var vfatOnly []seedTool
	for _, tool := range seedTools {
		if tool.format == VFAT {
			vfatOnly = append(vfatOnly, tool)
		}
	}
	files := []File{{"user-data", "#cloud-config\n"}, {"meta-data", "instance-id: lab-x\n"}}
	path := filepath.Join(t.TempDir(), "seed.img")
	format, err := writeWith(vfatOnly, path, []Format{ISO9660, VFAT}, files)
	if err != nil || format != VFAT {
		t.Fatalf("writeWith = %s, %v; want vfat", format, err)
	}
	if b := blkid(t, path); b["TYPE"] != "vfat" || b["LABEL"] != Label {
		t.Errorf("blkid says %v, want TYPE=vfat LABEL=%s", b, Label)
	}
	_, err = writeWith(vfatOnly, filepath.Join(t.TempDir(), "seed.iso"), []Format{ISO9660}, files)
	if err == nil || !strings.Contains(err.Error(), "apt-get install xorriso") || strings.Contains(err.Error(), "dosfstools") {
		t.Errorf("ISO-only guest without ISO tools: %v, want an error naming xorriso only", err)
	}
	// mtools reads the filesystem back, as FAT readers do, by its long names.
	for _, f := range files {
		out, err := exec.Command("mtype", "-i", path, "::"+f.Name).Output()
		if err != nil || string(out) != f.Data {
			t.Errorf("mtype %s = %q, %v; want %q", f.Name, out, err, f.Data)
		}
	}
}

// TestWriteSeedISOOnly: the seed of a guest that finds only ISO seeds is never vfat, even when that is all
// that is installed.
func TestWriteSeedISOOnly(t *testing.T) {
	for _, goos := range OSes() {
		g, _ := Lookup(goos)
		if !g.ISOOnly {
			continue
		}
		t.Setenv("PATH", t.TempDir()) // no tool at all
		_, err := WriteSeed(filepath.Join(t.TempDir(), "s"), goldenConfig(t, goos))
		if err == nil || !strings.Contains(err.Error(), "xorriso") || strings.Contains(err.Error(), "mkfs.vfat") {
			t.Errorf("%s without tools: %v, want an error naming the ISO tools only", goos, err)
		}
	}
}

func TestWriteFileNames(t *testing.T) {
	for _, files := range [][]File{
		nil,
		{{"../x", ""}},
		{{"-rf", ""}},
		{{"a", ""}, {"a", ""}},
	} {
		if err := checkFiles(files); err == nil {
			t.Errorf("checkFiles(%v) accepted", files)
		}
	}
	if err := checkFiles([]File{{"user-data", ""}, {"network-config", ""}}); err != nil {
		t.Error(err)
	}
}

// TestWriteRetriesACrashedTool: a tool that dies of a signal it reports
// (xorriso's "UNIX-SIGNAL: SIGSEGV") is run again; one that refuses the
// seed is not.
func TestWriteRetriesACrashedTool(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   string // the first run's error
		runs   int
		wantOK bool
	}{
		{"crash, then a seed", "xorriso: exit status 1: UNIX-SIGNAL:  SIGSEGV  errno= 0", 2, true},
		{"refused", "xorriso: exit status 1: cannot write", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs := 0
			tool := seedTool{name: "fake", format: ISO9660, build: func(out, dir string, files []string) error {
				runs++
				if runs == 1 {
					return errors.New(tc.fail)
				}
				return os.WriteFile(out, []byte("seed"), 0o600)
			}}
			_, err := writeWith([]seedTool{tool}, filepath.Join(t.TempDir(), "seed.iso"), []Format{ISO9660}, []File{{Name: "user-data", Data: "#cloud-config\n"}})
			if (err == nil) != tc.wantOK || runs != tc.runs {
				t.Errorf("err %v after %d runs; want ok=%v after %d", err, runs, tc.wantOK, tc.runs)
			}
		})
	}
}
