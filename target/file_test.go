package target

import (
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"lab"

	"lab/image"
	"lab/scenario"
)

func TestParseTargetsErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		pos  string // file:line:col of the problem
		msg  string // a phrase of its message
	}{
		{
			name: "unknown field",
			src: `targets:
  - name: a
    provider: local
    colour: red
`,
			pos: "t.yaml:4:5",
			msg: `unknown field "colour" of a target`,
		},
		{
			name: "unknown provider",
			src: `targets:
  - name: a
    provider: vbox
`,
			pos: "t.yaml:2:5",
			msg: `target "a": unknown provider "vbox"; expected one of fstack, local, qemu, rump, ssh, vagrant, wine`,
		},
		{
			name: "missing provider",
			src: `targets:
  - name: a
`,
			pos: "t.yaml:2:5",
			msg: `"provider" is required`,
		},
		{
			name: "qemu without suite or disk",
			src: `targets:
  - name: local
    provider: local
  - name: vm
    provider: qemu
    kernel: linux-image-cloud-amd64
`,
			pos: "t.yaml:4:5",
			msg: `target "vm": a qemu target needs either "suite" and "kernel"`,
		},
		{
			name: "qemu with both suite and disk",
			src: `targets:
  - name: vm
    provider: qemu
    suite: bookworm
    kernel: linux-image-cloud-amd64
    disk: debian.qcow2
    os: linux
    user: debian
`,
			pos: "t.yaml:2:5",
			msg: `a qemu target needs either "suite" and "kernel"`,
		},
		{
			name: "qemu suite without kernel",
			src: `targets:
  - name: vm
    provider: qemu
    suite: bookworm
`,
			pos: "t.yaml:2:5",
			msg: `"kernel" (a Debian kernel package) is required with "suite"`,
		},
		{
			name: "qemu disk without user",
			src: `targets:
  - name: vm
    provider: qemu
    disk: freebsd.qcow2
    os: freebsd
`,
			pos: "t.yaml:2:5",
			msg: `a disk image target needs "os" (its GOOS) and "user"`,
		},
		{
			name: "ssh without host",
			src: `targets:
  - name: box
    provider: ssh
    user: root
    os: freebsd
    arch: amd64
`,
			pos: "t.yaml:2:5",
			msg: `target "box": an ssh target needs "host", "user", "os" and "arch"`,
		},
		{
			name: "duplicate name",
			src: `targets:
  - name: a
    provider: local
  - name: a
    provider: local
`,
			pos: "t.yaml:4:5",
			msg: `duplicate target name "a" (first at t.yaml:2:5)`,
		},
		{
			name: "name that cannot name a file",
			src: `targets:
  - name: a/b
    provider: local
`,
			pos: "t.yaml:2:5",
			msg: `"name" must be letters, digits`,
		},
		{
			name: "bad boot timeout",
			src: `targets:
  - name: a
    provider: ssh
    boot_timeout: soon
`,
			pos: "t.yaml:2:5",
			msg: `"soon" is not a positive duration`,
		},
		{
			name: "wrong type",
			src: `targets:
  - name: a
    provider: qemu
    cpus: many
`,
			pos: "t.yaml:2:5",
			msg: "cannot unmarshal",
		},
		{
			name: "unknown top-level field",
			src: `target:
  - name: a
`,
			pos: "t.yaml:1:1",
			msg: `unknown top-level field "target"`,
		},
		{
			name: "targets not a list",
			src: `targets: local
`,
			pos: "t.yaml:1:1",
			msg: `expected "targets": a list of targets`,
		},
		{
			name: "target not a mapping",
			src: `targets:
  - local
`,
			pos: "t.yaml:2:5",
			msg: "target: expected a mapping",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := Parse("t.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("ParseTargets succeeded with %d targets; want an error", len(ts))
			}
			var ps scenario.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error is %T (%v); want scenario.Problems", err, err)
			}
			for _, p := range ps {
				if p.Pos.String() == tc.pos && strings.Contains(p.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("no problem at %s containing %q; got:\n%v", tc.pos, tc.msg, err)
		})
	}
}

// TestParseTargetsAllProblems checks every bad entry is reported at once,
// each at its own line.
func TestParseTargetsAllProblems(t *testing.T) {
	src := `targets:
  - name: a
    provider: vbox
  - name: b
    provider: ssh
  - name: a
    provider: local
    colour: red
`
	_, err := Parse("t.yaml", []byte(src))
	want := []string{
		`t.yaml:2:5: target "a": unknown provider "vbox"`,
		`t.yaml:4:5: target "b": an ssh target needs "host"`,
		`t.yaml:8:5: unknown field "colour" of a target`,
		`t.yaml:6:5: duplicate target name "a" (first at t.yaml:2:5)`,
	}
	if err == nil {
		t.Fatal("ParseTargets succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q; want prefix %q", i, lines[i], w)
		}
	}
}

func TestParseTargetsInvalidYAML(t *testing.T) {
	_, err := Parse("t.yaml", []byte("targets: [\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "t.yaml") || !strings.Contains(err.Error(), "invalid YAML") {
		t.Errorf("err = %v; want one naming t.yaml and invalid YAML", err)
	}
}

// TestDefaults: the targets lab carries parse, hold this machine, and hold
// a microVM for each of image.Defaults with that image's suite, kernel and
// architecture, so lab run and lab image build agree on them.
func TestDefaults(t *testing.T) {
	ts := Defaults()
	byName := map[string]Spec{}
	for _, s := range ts {
		byName[s.Name] = s
		if s.Pos.File != "(built-in) lab.yaml" || s.Pos.Line < 1 {
			t.Errorf("%s: position %v", s.Name, s.Pos)
		}
	}
	if l, ok := byName["local"]; !ok || l.Provider != "local" || l.OS != runtime.GOOS {
		t.Errorf("local: %+v", l)
	}
	for _, img := range image.Defaults {
		s, ok := byName[img.Name]
		if !ok {
			t.Errorf("no built-in target %s", img.Name)
			continue
		}
		c, ok := s.Config.(*qemuConfig)
		if !ok || c.Suite != img.Suite || c.Kernel != img.KernelPackage || s.Arch != img.Arch || s.OS != "linux" || c.MemoryMB != microVMMemoryMB {
			t.Errorf("%s: %+v %+v; want a microVM of %+v", img.Name, s, s.Config, img)
		}
	}
	// Each call gives values of its own.
	ts[0].Name = "changed"
	if Defaults()[0].Name == "changed" {
		t.Error("Defaults shares its values between calls")
	}
}

func TestParseTargetsProviders(t *testing.T) {
	src := `targets:
  - name: freebsd-14
    provider: qemu
    disk: ~/images/freebsd-14.1.qcow2
    os: freebsd
    user: freebsd
    memory_mb: 1024
    cpus: 2
    boot_timeout: 4m
  - name: box
    provider: ssh
    host: box.example:2222
    user: lab
    key: ~/.ssh/lab
    os: openbsd
    arch: arm64
    sudo: true
`
	ts, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{
		{Name: "freebsd-14", Provider: "qemu", OS: "freebsd", Arch: "amd64", Pos: scenario.Pos{File: "t.yaml", Line: 2, Col: 5},
			Config: &qemuConfig{Disk: "~/images/freebsd-14.1.qcow2", User: "freebsd", MemoryMB: 1024, CPUs: 2, BootTimeout: duration(4 * time.Minute)}},
		{Name: "box", Provider: "ssh", OS: "openbsd", Arch: "arm64", Pos: scenario.Pos{File: "t.yaml", Line: 10, Col: 5},
			Config: &sshConfig{Host: "box.example:2222", User: "lab", Key: "~/.ssh/lab", Sudo: true, BootTimeout: duration(sshDialTimeout)}},
	}
	for i := range want {
		if !reflect.DeepEqual(ts[i], want[i]) {
			t.Errorf("target %d:\n got %+v %+v\nwant %+v %+v", i, ts[i], ts[i].Config, want[i], want[i].Config)
		}
	}
}

func TestSelect(t *testing.T) {
	all, err := Parse("t.yaml", []byte(`targets:
  - {name: local, provider: local}
  - {name: linux-5.10, provider: qemu, suite: bullseye, kernel: k}
  - {name: linux-6.1, provider: qemu, suite: bookworm, kernel: k}
  - {name: linux-6.12, provider: qemu, suite: trixie, kernel: k}
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		names string
		want  []string
		err   string
	}{
		{"one", "local", []string{"local"}, ""},
		{"in the order asked", " linux-6.12 ,local", []string{"linux-6.12", "local"}, ""},
		{"empty items ignored", "linux-6.1,,", []string{"linux-6.1"}, ""},
		{"unknown lists the known", "local,linux-9", nil, `unknown target "linux-9"; the targets file defines: local, linux-5.10, linux-6.1, linux-6.12`},
		{"none", " , ", nil, "no targets selected; the targets file defines: local, linux-5.10, linux-6.1, linux-6.12"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Select(all, tc.names)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Errorf("Select(%q) error = %v; want %q", tc.names, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tg := range got {
				names = append(names, tg.Name)
			}
			if !reflect.DeepEqual(names, tc.want) {
				t.Errorf("Select(%q) = %v, want %v", tc.names, names, tc.want)
			}
		})
	}
}

// FuzzParseTargets checks Parse never panics and that a failure
// other than invalid YAML is Problems pointing into the file.
func FuzzParseTargets(f *testing.F) {
	f.Add(lab.Targets)
	f.Add([]byte("targets:\n  - {name: a, provider: ssh, host: h, user: u, os: linux, arch: amd64, boot_timeout: 1m}\n"))
	f.Add([]byte("targets:\n  - name: vm\n    provider: qemu\n    disk: d.qcow2\n    os: freebsd\n    user: u\n    cpus: x\n"))
	f.Add([]byte("targets: [a, *b]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := Parse("f.yaml", data)
		if err == nil {
			for _, tg := range ts {
				if tg.Name == "" || tg.Pos.Line < 1 {
					t.Errorf("accepted target without a name or place: %+v", tg)
				}
			}
			return
		}
		if !strings.HasPrefix(err.Error(), "f.yaml") {
			t.Errorf("error does not name the file: %v", err)
		}
		var ps scenario.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				if p.Pos.File != "f.yaml" || p.Pos.Line < 1 {
					t.Errorf("problem without a place: %+v", p)
				}
			}
		}
	})
}
