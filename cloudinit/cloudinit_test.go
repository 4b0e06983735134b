package cloudinit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenConfig is a seed for os with the keys kept in testdata (made for these tests
// only), so the user-data is the same on every run.
func goldenConfig(t *testing.T, goos string) Config {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	users := map[string]string{"linux": "debian", "freebsd": "freebsd", "netbsd": "netbsd", "openbsd": "openbsd", "illumos": "omnios"}
	return Config{
		OS: goos, Name: goos + "-golden", User: users[goos],
		AuthorizedKeys: []string{string(read("client_key.pub"))},
		HostKey:        HostKey{Private: read("host_key"), Public: read("host_key.pub")},
	}
}

// TestUserDataGolden keeps each OS's user-data under testdata/<os>.user-data
// (go test -run TestUserDataGolden -update rewrites them), and checks in every one
// what the seed must do whatever its wording.
func TestUserDataGolden(t *testing.T) {
	for _, goos := range OSes() {
		t.Run(goos, func(t *testing.T) {
			c := goldenConfig(t, goos)
			g, _ := Lookup(goos)
			got, err := c.UserData()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", goos+".user-data")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("user-data differs from %s (rerun with -update if intended):\n%s", golden, got)
			}

			if !strings.HasPrefix(got, "#cloud-config\n") {
				t.Errorf("user-data does not start with #cloud-config")
			}
			var doc struct {
				Users []struct {
					Name  string   `yaml:"name"`
					Shell string   `yaml:"shell"`
					Sudo  string   `yaml:"sudo"`
					Keys  []string `yaml:"ssh_authorized_keys"`
				} `yaml:"users"`
				SSHKeys map[string]string `yaml:"ssh_keys"`
				Files   []writeFile       `yaml:"write_files"`
				RunCmd  []string          `yaml:"runcmd"`
			}
			if err := yaml.Unmarshal([]byte(got), &doc); err != nil {
				t.Fatalf("user-data is not YAML: %v", err)
			}
			if len(doc.Users) != 2 || doc.Users[0].Name != c.User || doc.Users[1].Name != OtherUser {
				t.Fatalf("users = %+v, want %s then %s", doc.Users, c.User, OtherUser)
			}
			if len(doc.Users[0].Keys) != 1 || !strings.HasPrefix(c.AuthorizedKeys[0], doc.Users[0].Keys[0]) {
				t.Errorf("the default user's keys = %q, want lab's key", doc.Users[0].Keys)
			}
			if len(doc.Users[1].Keys) != 0 {
				t.Errorf("%s has keys %q; nobody logs in as it", OtherUser, doc.Users[1].Keys)
			}
			if doc.SSHKeys["ed25519_private"] != strings.TrimSpace(string(c.HostKey.Private))+"\n" ||
				doc.SSHKeys["ed25519_public"] != strings.TrimSpace(string(c.HostKey.Public)) {
				t.Errorf("ssh_keys do not carry the pinned host key: %v", doc.SSHKeys)
			}
			if n := len(doc.RunCmd); n == 0 || doc.RunCmd[n-1] != readyCommand {
				t.Errorf("runcmd does not end with the ready line: %q", doc.RunCmd)
			}
			all := strings.Join(doc.RunCmd, "\n")
			if g.restartSSHD != "" && !strings.Contains(all, g.restartSSHD) {
				t.Errorf("runcmd does not restart sshd (%s): %q", g.restartSSHD, doc.RunCmd)
			}
			if g.LoginAsRoot != strings.Contains(all, "/root/.ssh/authorized_keys") {
				t.Errorf("LoginAsRoot=%v but runcmd is %q", g.LoginAsRoot, doc.RunCmd)
			}
			if g.RootPrefix == "sudo -n" && doc.Users[0].Sudo == "" {
				t.Errorf("root through sudo, but the user has no sudo rule")
			}
			if goos == "freebsd" {
				for _, f := range []string{"firstboot_freebsd_update", "firstboot_pkg_upgrade"} {
					found := false
					for _, wf := range doc.Files {
						found = found || wf.Path == "/etc/rc.conf.d/"+f && strings.Contains(wf.Content, f+`_enable="NO"`)
					}
					if !found {
						t.Errorf("write_files does not turn off %s: %+v", f, doc.Files)
					}
				}
			}
		})
	}
}

func TestMetaData(t *testing.T) {
	tests := []struct{ name, want string }{
		{"freebsd-14", "instance-id: lab-freebsd-14\nlocal-hostname: freebsd-14\n"},
		{"linux-6.1", "instance-id: lab-linux-6.1\nlocal-hostname: linux-6-1\n"},
		{"Odd name: x", "instance-id: lab-Odd-name--x\nlocal-hostname: odd-name--x\n"},
		{"---", "instance-id: lab----\nlocal-hostname: lab\n"},
		{strings.Repeat("a", 70), "instance-id: lab-" + strings.Repeat("a", 70) + "\nlocal-hostname: " + strings.Repeat("a", 63) + "\n"},
	}
	for _, tc := range tests {
		if got := (Config{Name: tc.name}).MetaData(); got != tc.want {
			t.Errorf("MetaData(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestConfigErrors: every problem of a config is reported, at once.
func TestConfigErrors(t *testing.T) {
	good := goldenConfig(t, "linux")
	otherPub, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	_ = otherPub
	block, _ := ssh.MarshalPrivateKey(otherPriv, "")
	tests := []struct {
		name  string
		edit  func(c *Config)
		wants []string
	}{
		{"unknown os", func(c *Config) { c.OS = "windows" }, []string{`no cloud image support for os "windows"`}},
		{"bad user", func(c *Config) { c.User = "a b'; rm" }, []string{"not a user name"}},
		{"root", func(c *Config) { c.User = "root" }, []string{"default user"}},
		{"no keys", func(c *Config) { c.AuthorizedKeys = nil }, []string{"no AuthorizedKeys"}},
		{"bad key", func(c *Config) { c.AuthorizedKeys = []string{"ssh-ed25519 AAAA\nssh-rsa x"} }, []string{"authorized key 1"}},
		{"mismatched host key", func(c *Config) { c.HostKey.Private = pem.EncodeToMemory(block) }, []string{"not the private key's"}},
		{"two problems", func(c *Config) { c.Name = ""; c.Shell = "sh" }, []string{"no Name", `shell "sh"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			_, err := c.UserData()
			if err == nil {
				t.Fatal("UserData accepted the config")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := good.UserData(); err != nil {
		t.Errorf("the good config: %v", err)
	}
}

func TestRootCommand(t *testing.T) {
	tests := []struct {
		os, user, login, prefix, check string
	}{
		{"linux", "debian", "debian", "sudo -n", "sudo -n id"},
		{"freebsd", "freebsd", "root", "", "id"},
		{"netbsd", "netbsd", "root", "", "id"},
		{"openbsd", "openbsd", "openbsd", "doas -n", "doas -n id"},
		{"illumos", "omnios", "omnios", "pfexec", "pfexec id"},
	}
	for _, tc := range tests {
		g, err := Lookup(tc.os)
		if err != nil {
			t.Fatal(err)
		}
		prefix, check := g.RootCommand()
		if prefix != tc.prefix || check != tc.check || g.LoginUser(tc.user) != tc.login {
			t.Errorf("%s: RootCommand = %q, %q; LoginUser = %q; want %q, %q, %q", tc.os, prefix, check, g.LoginUser(tc.user), tc.prefix, tc.check, tc.login)
		}
		if g.BootDeadline <= 0 || g.MemoryMB <= 0 {
			t.Errorf("%s: no boot deadline or memory", tc.os)
		}
	}
}

func TestCheckRoot(t *testing.T) {
	linux, _ := Lookup("linux")
	openbsd, _ := Lookup("openbsd")
	freebsd, _ := Lookup("freebsd")
	tests := []struct {
		name  string
		g     Guest
		out   string
		err   error
		wants []string // empty: the check passes
	}{
		{"root", linux, "uid=0(root) gid=0(root) groups=0(root)\n", nil, nil},
		{"illumos id", linux, "uid=0(root) gid=0(root)", nil, nil},
		{"not root", linux, "uid=1000(debian) gid=1000(debian)", nil, []string{`printed "uid=1000`, "sudo -n"}},
		{"sudo asks", linux, "sudo: a password is required", errors.New("exit status 1"), []string{"failed", "password is required", "users: entry"}},
		{"no doas rule", openbsd, "doas: Authentication failed", errors.New("exit status 1"), []string{"openbsd", "doas -n", "runcmd adds the rule"}},
		{"root login", freebsd, "uid=1001(freebsd)", nil, []string{"root login"}},
		{"uid 0 elsewhere", linux, "x uid=0(root)", nil, []string{"not uid=0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.g.CheckRoot(tc.out, tc.err)
			if len(tc.wants) == 0 {
				if err != nil {
					t.Fatalf("CheckRoot: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckRoot passed")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func FuzzCheckRoot(f *testing.F) {
	f.Add("uid=0(root) gid=0(root)")
	f.Add("uid=1000(x)\nuid=0(root)")
	f.Add("")
	g, _ := Lookup("linux")
	f.Fuzz(func(t *testing.T, out string) {
		err := g.CheckRoot(out, nil)
		if (err == nil) != rootID(strings.TrimSpace(out)) {
			t.Errorf("CheckRoot(%q) = %v, rootID disagrees", out, err)
		}
	})
}

// newKey returns an ed25519 key pair: the private half in OpenSSH PEM form and
// as a signer, the public half in authorized_keys form.
func newKey(t *testing.T) (pemPriv, pub []byte, signer ssh.Signer) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(sk, "lab test")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, _ := ssh.NewPublicKey(pk)
	signer, _ = ssh.NewSignerFromKey(sk)
	return pem.EncodeToMemory(block), ssh.MarshalAuthorizedKey(sshPub), signer
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
