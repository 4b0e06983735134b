// Package cloudinit makes the NoCloud seeds lab boots cloud images with: the one
// place that knows what each operating system's seed reader (cloud-init, FreeBSD's
// nuageinit, OmniOS's cloud-init fork) does with a seed, so that every guest comes up
// the same way: the image's default user with lab's key, root without a password
// (sudo, doas, pfexec, or a root login where the base system has none of them), a
// second unprivileged user labother, the host key lab generated and pins in place of
// generated ones, sshd restarted where it started before the seed was applied, and
// last a console line carrying the host key's fingerprint (ReadyPattern), which lab
// waits for before it dials.
//
// Seeds are ISO 9660 volumes labelled "cidata", made with xorriso (Debian package
// xorriso) or genisoimage/mkisofs: every reader finds those. A vfat seed
// (dosfstools, mtools) is made only where no ISO tool is installed, and never for a
// guest whose reader cannot find one (Guest.ISOOnly).
package cloudinit

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// OtherUser is the unprivileged second user every seed creates, for the scenarios
// whose steps run as another user (user=other).
const OtherUser = "labother"

// Config is one guest's seed.
type Config struct {
	// OS is the guest's GOOS; Lookup must know it.
	OS string
	// Name names the guest: meta-data's instance-id is "lab-"+Name, and its
	// local-hostname is Name made a valid host name.
	Name string
	// User is the image's default user (debian, freebsd, ...), created with
	// AuthorizedKeys; on an OS where lab logs in as root (Guest.LoginAsRoot) the keys
	// are authorized for root too.
	User string
	// Shell is User's login shell; "" means /bin/sh, which every image has.
	Shell string
	// AuthorizedKeys are public keys in authorized_keys form ("ssh-ed25519 AAAA...").
	AuthorizedKeys []string
	// HostKey is the ed25519 host key the guest's sshd gets instead of generated ones.
	HostKey HostKey
}

// HostKey is an ed25519 host key: Private in OpenSSH PEM form, Public in
// authorized_keys form.
type HostKey struct {
	Private, Public []byte
}

// userName is what lab accepts as a user name: portable, and safe unquoted in a
// shell command and a doas rule.
var userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// check validates c and returns its guest, reporting every problem at once.
func (c Config) check() (Guest, []string, error) {
	var errs []error
	g, err := Lookup(c.OS)
	if err != nil {
		errs = append(errs, err)
	}
	if !userName.MatchString(c.User) {
		errs = append(errs, fmt.Errorf("user %q is not a user name lab accepts (%s)", c.User, userName))
	}
	if c.User == OtherUser || c.User == "root" {
		errs = append(errs, fmt.Errorf("user %q: the seed's login user must be the image's default user", c.User))
	}
	if c.Shell != "" && !strings.HasPrefix(c.Shell, "/") {
		errs = append(errs, fmt.Errorf("shell %q is not an absolute path", c.Shell))
	}
	if strings.TrimSpace(c.Name) == "" {
		errs = append(errs, errors.New("no Name"))
	}
	if len(c.AuthorizedKeys) == 0 {
		errs = append(errs, errors.New("no AuthorizedKeys: lab could never log in"))
	}
	var keys []string
	for i, k := range c.AuthorizedKeys {
		pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil || len(bytes.TrimSpace(rest)) > 0 {
			errs = append(errs, fmt.Errorf("authorized key %d is not one authorized_keys line: %v", i+1, err))
			continue
		}
		// Re-encoded without the comment: one line of base64, safe in YAML and in
		// the shell commands that authorize it for root.
		keys = append(keys, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))))
	}
	if err := c.HostKey.check(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return g, nil, fmt.Errorf("cloudinit: invalid seed config: %w", errors.Join(errs...))
	}
	return g, keys, nil
}

// check makes sure the host key is an ed25519 pair whose halves belong together: a
// seed with a public half that is not the private key's would make sshd present a key
// lab refuses.
func (k HostKey) check() error {
	pub, _, _, _, err := ssh.ParseAuthorizedKey(k.Public)
	if err != nil {
		return fmt.Errorf("host key: public half: %w", err)
	}
	if pub.Type() != ssh.KeyAlgoED25519 {
		return fmt.Errorf("host key: public half is %s; seeds carry ed25519 keys (ssh_keys: ed25519_*)", pub.Type())
	}
	raw, err := ssh.ParseRawPrivateKey(k.Private)
	if err != nil {
		return fmt.Errorf("host key: private half: %w", err)
	}
	priv, ok := raw.(*ed25519.PrivateKey)
	if !ok {
		return fmt.Errorf("host key: private half is %T, not ed25519", raw)
	}
	mine, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	if !bytes.Equal(mine.Marshal(), pub.Marshal()) {
		return errors.New("host key: the public half is not the private key's")
	}
	return nil
}

// The cloud-config document, in the order its sections are written. Only keys every
// reader of the guest applies are emitted (see Guest).
type userData struct {
	Users       []user      `yaml:"users"`
	DeleteKeys  *bool       `yaml:"ssh_deletekeys,omitempty"`
	GenKeyTypes *[]string   `yaml:"ssh_genkeytypes,omitempty"`
	SSHKeys     sshKeys     `yaml:"ssh_keys"`
	WriteFiles  []writeFile `yaml:"write_files,omitempty"`
	RunCmd      []string    `yaml:"runcmd"`
}

type user struct {
	Name           string   `yaml:"name"`
	Shell          string   `yaml:"shell"`
	LockPasswd     *bool    `yaml:"lock_passwd,omitempty"`
	Sudo           string   `yaml:"sudo,omitempty"`
	Profiles       string   `yaml:"profiles,omitempty"`
	AuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
}

type sshKeys struct {
	Private string `yaml:"ed25519_private"`
	Public  string `yaml:"ed25519_public"`
}

type writeFile struct {
	Path    string `yaml:"path"`
	Content string `yaml:"content"`
}

// ReadyMarker starts the console line the seed's last step prints.
const ReadyMarker = "LAB-READY"

// hostKeyFile is where every reader writes the seed's ed25519 public host key.
const hostKeyFile = "/etc/ssh/ssh_host_ed25519_key.pub"

// readyCommand prints ReadyMarker and the installed host key's fingerprint on the
// console, after everything else the seed does. ssh-keygen -l prints "256
// SHA256:... comment (ED25519)"; lab compares the second field with the key it pins.
const readyCommand = `fp=$(ssh-keygen -lf ` + hostKeyFile + ` | awk '{print $2}'); echo "` + ReadyMarker + ` $fp" > /dev/console`

// UserData returns the seed's user-data: a #cloud-config document for c.OS's reader.
func (c Config) UserData() (string, error) {
	g, keys, err := c.check()
	if err != nil {
		return "", err
	}
	shell := c.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	yes := true
	main := user{Name: c.User, Shell: shell, Sudo: g.sudoRule, Profiles: g.profiles, AuthorizedKeys: keys}
	other := user{Name: OtherUser, Shell: "/bin/sh"}
	if g.cloudInit {
		main.LockPasswd, other.LockPasswd = &yes, &yes
	}
	ud := userData{
		Users: []user{main, other},
		SSHKeys: sshKeys{
			Private: strings.TrimSpace(string(c.HostKey.Private)) + "\n",
			Public:  strings.TrimSpace(string(c.HostKey.Public)),
		},
		WriteFiles: g.writeFiles,
	}
	if g.cloudInit {
		// Remove the image's own keys and generate none: sshd then holds only the
		// pinned key (nuageinit has neither option; there sshd adds other types, which
		// remote.PinnedHostKey copes with).
		none := []string{}
		ud.DeleteKeys, ud.GenKeyTypes = &yes, &none
	}
	if g.grantRoot != "" {
		ud.RunCmd = append(ud.RunCmd, fmt.Sprintf(g.grantRoot, c.User))
	}
	if g.LoginAsRoot {
		for _, k := range keys {
			// A subshell, so the umask stays with these files: the runcmd steps
			// are one script.
			ud.RunCmd = append(ud.RunCmd, fmt.Sprintf("(umask 077; mkdir -p /root/.ssh && echo '%s' >> /root/.ssh/authorized_keys)", k))
		}
		ud.RunCmd = append(ud.RunCmd, g.allowRootLogin)
	}
	if g.restartSSHD != "" {
		ud.RunCmd = append(ud.RunCmd, g.restartSSHD)
	}
	ud.RunCmd = append(ud.RunCmd, readyCommand)

	var b bytes.Buffer
	fmt.Fprintf(&b, "#cloud-config\n# Written by lab (package cloudinit) for %s's %s.\n", g.OS, g.Reader)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(ud); err != nil {
		return "", fmt.Errorf("cloudinit: encoding user-data: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("cloudinit: encoding user-data: %w", err)
	}
	return b.String(), nil
}

// MetaData returns the seed's meta-data: the instance id (a new id makes cloud-init
// apply a seed again) and the host name.
func (c Config) MetaData() string {
	return fmt.Sprintf("instance-id: lab-%s\nlocal-hostname: %s\n", yamlSafe(c.Name), hostName(c.Name))
}

// hostName turns a target name into a host name every reader accepts: lower-case
// letters, digits and inner hyphens, at most 63 characters.
func hostName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	h := strings.Trim(b.String(), "-")
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-")
	}
	if h == "" {
		h = "lab"
	}
	return h
}

// yamlSafe keeps only characters that need no quoting in a plain YAML scalar.
func yamlSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, s)
}
