//go:build linux

package target

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The first tests here are fakes: they check the commands and files lab
// makes for operating systems that cannot boot on lab's build machines,
// without any of them. TestVagrantLibvirt at the end boots a real machine.

// TestFakeGuestOtherUserCommand: the second user is made with each OS's own
// tool, and only where it does not exist yet.
func TestFakeGuestOtherUserCommand(t *testing.T) {
	for _, tc := range []struct {
		goos, want, why string
	}{
		{"linux", "id labother >/dev/null 2>&1 || sudo -n useradd -M -s /usr/sbin/nologin labother", ""},
		{"freebsd", "id labother >/dev/null 2>&1 || sudo -n pw useradd -n labother -d /nonexistent -s /usr/sbin/nologin", ""},
		{"openbsd", "id labother >/dev/null 2>&1 || sudo -n useradd -s /sbin/nologin labother", ""},
		{"netbsd", "id labother >/dev/null 2>&1 || sudo -n useradd -s /sbin/nologin labother", ""},
		{"illumos", "id labother >/dev/null 2>&1 || sudo -n /usr/sbin/useradd -s /bin/false labother", ""},
		{"windows", "", "does not implement user=other"},
		{"plan9", "", "does not know how to add a user on plan9"},
	} {
		t.Run(tc.goos, func(t *testing.T) {
			cmd, why := otherUserCommand(tc.goos)
			if cmd != tc.want {
				t.Errorf("command %q, want %q", cmd, tc.want)
			}
			if (tc.why == "") != (why == "") || !strings.Contains(why, tc.why) {
				t.Errorf("reason %q, want one containing %q", why, tc.why)
			}
		})
	}
}

// TestFakeGuestAgentCommand: how a vagrant machine runs the uploaded agent
// (sshMachine's command: sudo on Unix boxes, cmd.exe on Windows).
func TestFakeGuestAgentCommand(t *testing.T) {
	for _, tc := range []struct {
		name, goos, dst string
		root            string
		want            string
	}{
		{"freebsd box", "freebsd", "/tmp/lab-agent-0a1b", "sudo -n", "sudo -n '/tmp/lab-agent-0a1b'; s=$?; rm -f '/tmp/lab-agent-0a1b'; exit $s"},
		{"illumos box", "illumos", "/tmp/lab-agent-0a1b", "sudo -n", "sudo -n '/tmp/lab-agent-0a1b'; s=$?; rm -f '/tmp/lab-agent-0a1b'; exit $s"},
		{"no root", "linux", "/tmp/it's", "", `'/tmp/it'\''s'; s=$?; rm -f '/tmp/it'\''s'; exit $s`},
		{"windows box", "windows", "/C:/Windows/Temp/lab-agent-0a1b.exe", "", `C:\Windows\Temp\lab-agent-0a1b.exe`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := agentCommand(tc.goos, tc.dst, tc.root); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestParseMachineReadable(t *testing.T) {
	target, typ, data, ok := parseMachineReadable(`1795601700,vtest,ui,info,==> vtest:  -- Image(vda):        /p/vagrant_vtest.img%!(VAGRANT_COMMA) virtio\n`)
	if !ok || target != "vtest" || typ != "ui" || len(data) != 2 || data[0] != "info" || data[1] != "==> vtest:  -- Image(vda):        /p/vagrant_vtest.img, virtio\n" {
		t.Errorf("got %q %q %q %v", target, typ, data, ok)
	}
	if _, _, _, ok := parseMachineReadable("Bringing machine up"); ok {
		t.Error("a line without a timestamp parsed")
	}
	out := "1795601700,,error-exit,Vagrant::Errors::BoxNotFound,The box 'x' could not be found.\n"
	if got := vagrantError(out); got != "The box 'x' could not be found." {
		t.Errorf("vagrantError = %q", got)
	}
}

// TestUpPhase uses the messages of a real vagrant-libvirt `up` (and
// VirtualBox's wording, which is a fake here).
func TestUpPhase(t *testing.T) {
	for msg, want := range map[string]string{
		"==> vtest: Uploading base box image as volume into Libvirt storage...":        "box-import",
		"==> vtest: Creating image (snapshot of base box volume).":                     "create",
		"==> vtest: Starting domain.":                                                  "boot",
		"==> default: Booting VM...":                                                   "boot",
		"==> vtest: Waiting for domain to get an IP address...":                        "dhcp",
		"==> vtest: Waiting for machine to boot. This may take a few minutes...":       "ssh-wait",
		"    vtest: Vagrant insecure key detected. Vagrant will automatically replace": "key",
		"==> vtest:  -- Cpus:              1":                                          "",
	} {
		if got := upPhase(msg); got != want {
			t.Errorf("upPhase(%q) = %q, want %q", msg, got, want)
		}
	}
}

func TestParseSSHConfig(t *testing.T) {
	out := `Host vtest
  HostName 192.168.121.96
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  IdentityFile "/var/tmp/with space/private_key"
  IdentityFile /root/.vagrant.d/insecure_private_key
  IdentitiesOnly yes
`
	c, err := parseVagrantSSH(out)
	if err != nil {
		t.Fatal(err)
	}
	want := vagrantSSH{HostName: "192.168.121.96", User: "vagrant", Port: 22, IdentityFiles: []string{"/var/tmp/with space/private_key", "/root/.vagrant.d/insecure_private_key"}}
	if c.HostName != want.HostName || c.User != want.User || c.Port != want.Port || !slices.Equal(c.IdentityFiles, want.IdentityFiles) {
		t.Errorf("got %+v, want %+v", c, want)
	}
	if _, err := parseVagrantSSH("Host x\n  User vagrant\n"); err == nil {
		t.Error("ssh-config without HostName parsed")
	}
}

// TestLineup reads the real vagrant/Vagrantfile: every machine has a box
// for both providers, pinned by version, and an OS lab builds the agent
// for.
func TestLineup(t *testing.T) {
	data, err := os.ReadFile("../vagrant/Vagrantfile")
	if err != nil {
		t.Fatal(err)
	}
	rows := parseLineup(data)
	providers := map[string][]string{}
	for _, r := range rows {
		providers[r.Machine] = append(providers[r.Machine], r.Provider)
		if r.Version == "" {
			t.Errorf("%s (%s): box %s is not pinned by version", r.Machine, r.Provider, r.Box)
		}
		switch r.OS {
		case "freebsd", "openbsd", "netbsd", "linux", "illumos", "windows":
		default:
			t.Errorf("%s: os %q", r.Machine, r.OS)
		}
	}
	for _, m := range []string{"vagrant-freebsd-14", "vagrant-openbsd-7", "vagrant-netbsd-9", "vagrant-linux-3.8", "vagrant-linux-5.4", "vagrant-omnios", "vagrant-windows-2022"} {
		got := providers[m]
		slices.Sort(got)
		if !slices.Equal(got, []string{"libvirt", "virtualbox"}) {
			t.Errorf("%s: providers %v, want libvirt and virtualbox", m, got)
		}
	}
	// lab.yaml's vagrant targets are machines of the lineup.
	ts, err := Load("../lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range ts {
		if tg.Provider != "vagrant" {
			continue
		}
		if _, err := resolveBox(tg, rows); err != nil {
			t.Errorf("lab.yaml target %s: %v", tg.Name, err)
		}
	}
}

// TestVagrantfileValidates has Vagrant read the lineup Vagrantfile, by
// hand and in lab mode for each kind of guest.
func TestVagrantfileValidates(t *testing.T) {
	if testing.Short() {
		t.Skip("runs vagrant; skipped with -short")
	}
	if _, err := exec.LookPath("vagrant"); err != nil {
		t.Fatal("scripts/setup installs vagrant")
	}
	home := t.TempDir()
	for _, env := range [][]string{
		nil,
		{"LAB_MACHINE=x", "LAB_BOX=a/b", "LAB_OS=windows", "LAB_CONSOLE_LOG=/tmp/c.log", "LAB_MEMORY_MB=4096", "LAB_CPUS=2", "LAB_BOOT_TIMEOUT=900"},
		{"LAB_MACHINE=x", "LAB_BOX=a/b", "LAB_BOX_VERSION=1.0", "LAB_OS=illumos", "LAB_LIBVIRT_DRIVER=qemu", "LAB_LIBVIRT_POOL=p"},
	} {
		cmd := exec.Command("vagrant", "validate")
		cmd.Dir = "../vagrant"
		cmd.Env = append(os.Environ(), append([]string{"VAGRANT_HOME=" + home, "VAGRANT_CHECKPOINT_DISABLE=1"}, env...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("vagrant validate with %v: %v\n%s", env, err, out)
		}
	}
}

func TestResolveBox(t *testing.T) {
	lineup := []lineupBox{
		{"vagrant-freebsd-14", "libvirt", "generic/freebsd14", "4.3.12", "freebsd"},
		{"vagrant-freebsd-14", "virtualbox", "generic/freebsd14", "4.3.11", "freebsd"},
	}
	spec := func(name, os string, c vagrantConfig) Spec {
		s := Spec{Name: name, Provider: "vagrant", OS: os, Config: &c}
		c.Validate(&s)
		return s
	}
	for _, tc := range []struct {
		name    string
		t       Spec
		want    vagrantBox
		wantErr string
	}{
		{"lineup default provider", spec("vagrant-freebsd-14", "", vagrantConfig{}), vagrantBox{"generic/freebsd14", "4.3.12", "libvirt", "freebsd"}, ""},
		{"lineup virtualbox", spec("vagrant-freebsd-14", "", vagrantConfig{VagrantProvider: "virtualbox"}), vagrantBox{"generic/freebsd14", "4.3.11", "virtualbox", "freebsd"}, ""},
		{"box overrides, version does not carry over", spec("vagrant-freebsd-14", "", vagrantConfig{Box: "bento/freebsd-14"}), vagrantBox{"bento/freebsd-14", "", "libvirt", "freebsd"}, ""},
		{"own box", spec("mine", "linux", vagrantConfig{Box: "lab/debian-12"}), vagrantBox{"lab/debian-12", "", "libvirt", "linux"}, ""},
		{"unknown machine", spec("nope", "", vagrantConfig{}), vagrantBox{}, "no box"},
		{"own box without os", spec("mine", "", vagrantConfig{Box: "x/y"}), vagrantBox{}, "needs \"os\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveBox(tc.t, lineup)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestVagrantTargetFields(t *testing.T) {
	_, err := Parse("t.yaml", []byte(`targets:
  - name: a
    provider: vagrant
    vagrant_provider: hyperv
  - name: b
    provider: vagrant
    box: x/y
  - name: c
    provider: vagrant
    box_version: "1.0"
  - name: d
    provider: wine
    os: linux
`))
	for _, want := range []string{
		`t.yaml:2:5: target "a": vagrant_provider "hyperv"`,
		`t.yaml:5:5: target "b": a target with its own "box" needs "os"`,
		`t.yaml:8:5: target "c": "box_version" needs "box"`,
		`t.yaml:11:5: target "d": a wine target runs the windows agent`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("problems %v; want %q", err, want)
		}
	}
	ts, err := Parse("t.yaml", []byte("targets:\n  - {name: v, provider: vagrant, box: lab/debian-12, box_version: \"0\", os: linux, keep: true, vagrant_provider: libvirt}\n"))
	if c, _ := ts[0].Config.(*vagrantConfig); err != nil || !ts[0].Keep || c.Box != "lab/debian-12" || c.BoxVersion != "0" {
		t.Errorf("got %+v, %v", ts, err)
	}
}

// TestBoxDir finds boxes in Vagrant 2.3's layout and 2.4's, which adds an
// architecture directory.
func TestBoxDir(t *testing.T) {
	home := t.TempDir()
	for _, d := range []string{"boxes/lab-VAGRANTSLASH-debian-12/0/libvirt", "boxes/generic-VAGRANTSLASH-freebsd14/4.3.12/amd64/libvirt"} {
		os.MkdirAll(filepath.Join(home, d), 0o755)
	}
	for _, tc := range []struct {
		b    vagrantBox
		want string
	}{
		{vagrantBox{Name: "lab/debian-12", Provider: "libvirt"}, "boxes/lab-VAGRANTSLASH-debian-12/0/libvirt"},
		{vagrantBox{Name: "lab/debian-12", Version: "0", Provider: "libvirt"}, "boxes/lab-VAGRANTSLASH-debian-12/0/libvirt"},
		{vagrantBox{Name: "generic/freebsd14", Version: "4.3.12", Provider: "libvirt"}, "boxes/generic-VAGRANTSLASH-freebsd14/4.3.12/amd64/libvirt"},
		{vagrantBox{Name: "generic/freebsd14", Version: "4.3.11", Provider: "libvirt"}, ""},
		{vagrantBox{Name: "lab/debian-12", Provider: "virtualbox"}, ""},
	} {
		got, ok := boxDir(home, tc.b)
		if want := filepath.Join(home, tc.want); (tc.want == "" && ok) || (tc.want != "" && got != want) {
			t.Errorf("boxDir(%+v) = %q, %v; want %q", tc.b, got, ok, tc.want)
		}
	}
}

// TestRecordHostKey: trust on first use records the first key and refuses
// any other afterwards.
func TestRecordHostKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	cb := recordHostKey(file)
	k1, k2 := newHostKey(t), newHostKey(t)
	addr := &net.TCPAddr{IP: net.IPv4(192, 168, 121, 5), Port: 22}
	if err := cb("192.168.121.5:22", addr, k1); err != nil {
		t.Fatalf("first key refused: %v", err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("known_hosts: %v %v", fi, err)
	}
	if err := cb("192.168.121.5:22", addr, k1); err != nil {
		t.Errorf("recorded key refused: %v", err)
	}
	if err := cb("192.168.121.5:22", addr, k2); err == nil {
		t.Error("a second, different key was accepted")
	}
}

func newHostKey(t *testing.T) ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
