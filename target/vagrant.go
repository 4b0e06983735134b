package target

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"lab/diskimage"
	"lab/internal/output"
	"lab/qemu"
	"lab/remote"
)

// Vagrant brings a target up with Vagrant, from lab's lineup of public
// boxes (vagrant/Vagrantfile) or a box the target names, on vagrant-libvirt
// (the default) or VirtualBox. Lab asks Vagrant how to log in (vagrant
// ssh-config), connects with its own SSH client, checks the host key
// itself, and destroys the machine after the run unless the target says
// keep: true.
//
// Host keys: a box lab built (diskimage.BuildBox) carries the host key its machines
// have, so lab pins it. A public box's machines make their own keys, which
// nobody can know in advance; lab trusts the key it meets on the first
// connection after it created the machine, records it in a known_hosts file
// of that machine, and verifies it on every later connection (a kept
// machine reused by a later run). The record goes when the machine is
// destroyed. Vagrant's own SSH, which it uses while bringing the machine
// up, checks no host key; lab's verification does not rely on it.
type vagrantProvider struct{}

// vagrantConfig picks the box: by default the one lab's lineup
// (vagrant/Vagrantfile) names for a machine of the target's name;
// vagrant_provider is libvirt (default) or virtualbox.
type vagrantConfig struct {
	Box             string   `yaml:"box"`
	BoxVersion      string   `yaml:"box_version"`
	VagrantProvider string   `yaml:"vagrant_provider"`
	MemoryMB        int      `yaml:"memory_mb"`
	CPUs            int      `yaml:"cpus"`
	BootTimeout     duration `yaml:"boot_timeout"` // raises vagrant up's deadline
}

func (vagrantProvider) NewConfig() Config { return &vagrantConfig{} }

func (c *vagrantConfig) Describe() string {
	if c.Box != "" {
		return c.Box + " on " + c.VagrantProvider
	}
	return "lab's lineup box on " + c.VagrantProvider
}

// CanKeep: every Vagrant machine can be left up.
func (vagrantProvider) CanKeep(Spec) error { return nil }

// vagrantBox is the box a target resolves to.
type vagrantBox struct {
	Name, Version, Provider, OS string
}

// resolveBox picks t's box: its box: field, else the lineup's row for a
// machine of t's name and t's Vagrant provider. The version comes with the
// box it belongs to.
func resolveBox(s Spec, lineup []lineupBox) (vagrantBox, error) {
	c := s.Config.(*vagrantConfig)
	b := vagrantBox{Name: c.Box, Version: c.BoxVersion, Provider: c.VagrantProvider, OS: s.OS}
	for _, row := range lineup {
		if row.Machine != s.Name || row.Provider != b.Provider {
			continue
		}
		if b.Name == "" {
			b.Name = row.Box
			if b.Version == "" {
				b.Version = row.Version
			}
		}
		if b.OS == "" {
			b.OS = row.OS
		}
	}
	switch {
	case b.Name == "":
		return b, fmt.Errorf("no box: vagrant/Vagrantfile's lineup has no %s machine for %s, and the target has no \"box\"", s.Name, b.Provider)
	case b.OS == "":
		return b, fmt.Errorf("box %s: the target needs \"os\" (its GOOS)", b.Name)
	}
	return b, nil
}

// Validate checks a vagrant target's fields; Check looks at the host.
func (c *vagrantConfig) Validate(s *Spec) []string {
	var p []string
	switch c.VagrantProvider {
	case "":
		c.VagrantProvider = "libvirt"
	case "libvirt", "virtualbox":
	default:
		p = append(p, fmt.Sprintf("vagrant_provider %q: lab knows libvirt and virtualbox", c.VagrantProvider))
	}
	if c.BoxVersion != "" && c.Box == "" {
		p = append(p, "\"box_version\" needs \"box\" (the lineup's boxes carry their versions)")
	}
	if c.Box != "" && s.OS == "" {
		p = append(p, "a target with its own \"box\" needs \"os\" (its GOOS)")
	}
	if s.Arch == "" {
		s.Arch = "amd64"
	}
	return p
}

func vagrantHome() string {
	if h := os.Getenv("VAGRANT_HOME"); h != "" {
		return h
	}
	return expandHome("~/.vagrant.d")
}

// boxDir is where Vagrant unpacked b: boxes/NAME/VERSION/PROVIDER under
// VAGRANT_HOME (Vagrant 2.4 puts an architecture directory before
// PROVIDER). Without a version, the highest one there.
func boxDir(home string, b vagrantBox) (string, bool) {
	name := filepath.Join(home, "boxes", strings.ReplaceAll(b.Name, "/", "-VAGRANTSLASH-"))
	versions := []string{b.Version}
	if b.Version == "" {
		entries, _ := os.ReadDir(name)
		versions = nil
		for i := len(entries) - 1; i >= 0; i-- {
			versions = append(versions, entries[i].Name())
		}
	}
	for _, v := range versions {
		for _, pattern := range []string{filepath.Join(name, v, b.Provider), filepath.Join(name, v, "*", b.Provider)} {
			if m, _ := filepath.Glob(pattern); len(m) > 0 {
				return m[0], true
			}
		}
	}
	return "", false
}

// vagrantPlugins lists Vagrant's plugins once per process: asking costs
// Vagrant's start-up, most of a second.
var vagrantPlugins = sync.OnceValues(func() (map[string]bool, error) {
	cmd := exec.Command("vagrant", "plugin", "list", "--machine-readable")
	cmd.Env = append(os.Environ(), "VAGRANT_CHECKPOINT_DISABLE=1")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("vagrant plugin list: %w", err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if _, typ, data, ok := parseMachineReadable(line); ok && typ == "plugin-name" && len(data) > 0 {
			names[data[0]] = true
		}
	}
	return names, nil
})

// Check says everything this host lacks for t at once: Vagrant, the
// provider's plugin or hypervisor, the box.
func (vagrantProvider) Check(s Spec, _ Env) error {
	var missing []string
	provider := s.Config.(*vagrantConfig).VagrantProvider
	if _, err := exec.LookPath("vagrant"); err != nil {
		missing = append(missing, "vagrant is not installed (Debian: apt-get install vagrant)")
	} else if provider == "libvirt" {
		plugins, err := vagrantPlugins()
		switch {
		case err != nil:
			missing = append(missing, err.Error())
		case !plugins["vagrant-libvirt"]:
			missing = append(missing, "the vagrant-libvirt plugin is not installed (Debian: apt-get install vagrant-libvirt; elsewhere: vagrant plugin install vagrant-libvirt)")
		}
	}
	switch provider {
	case "libvirt":
		if _, err := exec.LookPath("virsh"); err != nil {
			missing = append(missing, "libvirt is not installed (Debian: apt-get install libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients dnsmasq-base iptables)")
		} else if err := exec.Command("virsh", "-c", libvirtURI(), "version").Run(); err != nil {
			missing = append(missing, fmt.Sprintf("libvirtd does not answer at %s (start it: systemctl start libvirtd, or virtlogd -d and libvirtd -d)", libvirtURI()))
		}
	case "virtualbox":
		if _, err := exec.LookPath("VBoxManage"); err != nil {
			missing = append(missing, "VirtualBox is not installed (VBoxManage not found)")
		}
	}
	b, err := resolveBox(s, readLineup())
	if err == nil && b.OS == "windows" {
		if plugins, perr := vagrantPlugins(); perr == nil && !plugins["winrm"] {
			missing = append(missing, "the Windows box talks WinRM until lab's provisioner has installed OpenSSH, and Vagrant's WinRM communicator is not installed (vagrant plugin install winrm winrm-elevated winrm-fs; Debian's vagrant package cannot load it: use HashiCorp's)")
		}
	}
	if err != nil {
		missing = append(missing, err.Error())
	} else if _, ok := boxDir(vagrantHome(), b); !ok {
		add := "vagrant box add " + b.Name
		if b.Version != "" {
			add += " --box-version " + b.Version
		}
		add += " --provider " + b.Provider
		missing = append(missing, fmt.Sprintf("box %s %s for %s is not added in %s (%s; public boxes come from Vagrant Cloud, which needs internet)", b.Name, cmp.Or(b.Version, "(any version)"), b.Provider, vagrantHome(), add))
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}

// libvirtURI is the libvirt connection vagrant-libvirt uses by default.
func libvirtURI() string {
	if u := os.Getenv("LIBVIRT_DEFAULT_URI"); u != "" {
		return u
	}
	return "qemu:///system"
}

// Start brings the machine up (or finds it up, kept by an earlier run) and
// says how to log in; Prepare makes the second user of user=other
// scenarios once lab is connected.
func (vagrantProvider) Start(ctx context.Context, s Spec, env Env) (*Instance, error) {
	dir, err := vagrantDir(env.CacheDir)
	if err != nil {
		return nil, err
	}
	b, err := resolveBox(s, readLineup())
	if err != nil {
		return nil, err
	}
	s.OS = b.OS
	work, err := filepath.Abs(filepath.Join(env.CacheDir, "vagrant", s.Name))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", work, err)
	}
	console := ""
	if b.Provider == "libvirt" {
		if console, err = filepath.Abs(filepath.Join(env.RunDir, s.Name+".console.log")); err != nil {
			return nil, err
		}
	}
	v := &vagrantMachine{
		dir: dir, work: work, name: s.Name, provider: b.Provider, keep: s.Keep, log: env.Log,
		env: vagrantEnv(s, b, dir, work, console, libvirtDriver(ctx, b.Provider, s.Arch)),
	}

	// A machine of this target that is up already (kept by an earlier
	// run, or left by one that died) is reused when lab can verify its
	// host key; otherwise it is destroyed and made anew.
	state, err := v.state(ctx)
	if err != nil {
		return nil, err
	}
	hk, how, err := v.hostKeyCheck(b, state == "not_created")
	if err != nil {
		env.Log.Warn("destroying a machine of this target lab cannot verify", "state", state, "why", err)
		if err := v.destroy(ctx); err != nil {
			return nil, err
		}
		state = "not_created"
		if hk, how, err = v.hostKeyCheck(b, true); err != nil {
			return nil, err
		}
	}
	switch state {
	case "running":
		env.Phase("reuse")
		env.Log.Info("reusing the machine an earlier run left up", "machine", s.Name, "host key", how)
	default:
		env.Phase("up")
		if err := v.up(ctx, env.Phase); err != nil {
			return nil, errors.Join(err, v.stop(context.WithoutCancel(ctx)))
		}
	}

	env.Phase("connect")
	in, err := v.instance(ctx, s, hk, how)
	if err != nil {
		return nil, errors.Join(err, v.stop(context.WithoutCancel(ctx)))
	}
	return in, nil
}

// libvirtDriver is vagrant-libvirt's domain type: kvm where a probe boot
// under KVM works, qemu (TCG) elsewhere, where KVM guests hang.
// LAB_LIBVIRT_DRIVER overrides it.
func libvirtDriver(ctx context.Context, provider, arch string) string {
	if provider != "libvirt" {
		return ""
	}
	if d := os.Getenv("LAB_LIBVIRT_DRIVER"); d != "" {
		return d
	}
	if qemu.ProbeAccel(ctx, arch) == "kvm" {
		return "kvm"
	}
	return "qemu"
}

// vagrantEnv is the environment of every vagrant command for t: lab's
// Vagrantfile in lab mode for one machine, state kept in the target's cache
// directory, and no calls home.
func vagrantEnv(s Spec, b vagrantBox, dir, work, console, driver string) []string {
	c := s.Config.(*vagrantConfig)
	env := []string{
		"VAGRANT_CWD=" + dir,
		"VAGRANT_DOTFILE_PATH=" + filepath.Join(work, "dot-vagrant"),
		"VAGRANT_CHECKPOINT_DISABLE=1",
		"VAGRANT_BOX_UPDATE_CHECK_DISABLE=1",
		"VAGRANT_NO_COLOR=1",
		"VAGRANT_DEFAULT_PROVIDER=" + b.Provider,
		"LAB_MACHINE=" + s.Name,
		"LAB_BOX=" + b.Name,
		"LAB_BOX_VERSION=" + b.Version,
		"LAB_OS=" + b.OS,
		"LAB_CONSOLE_LOG=" + console,
		"LAB_LIBVIRT_DRIVER=" + driver,
	}
	if c.MemoryMB > 0 {
		env = append(env, "LAB_MEMORY_MB="+strconv.Itoa(c.MemoryMB))
	}
	if c.CPUs > 0 {
		env = append(env, "LAB_CPUS="+strconv.Itoa(c.CPUs))
	}
	if c.BootTimeout > 0 {
		env = append(env, "LAB_BOOT_TIMEOUT="+strconv.Itoa(int(time.Duration(c.BootTimeout).Seconds())))
	}
	return env
}

// vagrantMachine runs vagrant for one target's machine.
type vagrantMachine struct {
	dir, work, name, provider string
	keep                      bool
	env                       []string
	log                       hclog.Logger
}

func (v *vagrantMachine) knownHosts() string { return filepath.Join(v.work, "known_hosts") }

// command is a vagrant command for this machine. On cancel vagrant gets
// SIGINT, on which it cleans up what it was doing, and is killed only if
// it has not exited a minute later.
func (v *vagrantMachine) command(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "vagrant", args...)
	c.Env = append(os.Environ(), v.env...)
	c.Cancel = func() error { return c.Process.Signal(os.Interrupt) }
	c.WaitDelay = time.Minute
	return c
}

// state is the machine's state as Vagrant names it: not_created, running,
// shutoff (libvirt), poweroff (VirtualBox), ...
func (v *vagrantMachine) state(ctx context.Context) (string, error) {
	c := v.command(ctx, "status", v.name, "--machine-readable")
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("vagrant status: %w: %s%s", err, output.Tail(stderr.String(), 5), vagrantError(string(out)))
	}
	for _, line := range strings.Split(string(out), "\n") {
		if target, typ, data, ok := parseMachineReadable(line); ok && target == v.name && typ == "state" && len(data) > 0 {
			return data[0], nil
		}
	}
	return "", fmt.Errorf("vagrant status printed no state for %s", v.name)
}

// up runs vagrant up, turning its progress messages into phases.
func (v *vagrantMachine) up(ctx context.Context, phase func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, vagrantUpTimeout)
	defer cancel()
	c := v.command(ctx, "up", v.name, "--provider="+v.provider, "--machine-readable")
	var stderr bytes.Buffer
	c.Stderr = &stderr
	stdout, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("vagrant up: %w", err)
	}
	var errs []string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		_, typ, data, ok := parseMachineReadable(sc.Text())
		if !ok {
			continue
		}
		switch {
		case typ == "ui" && len(data) >= 2:
			level, msg := data[0], strings.TrimSpace(data[1])
			if p := upPhase(msg); p != "" {
				phase(p)
			}
			if level == "error" {
				errs = append(errs, msg)
				v.log.Warn("vagrant", "msg", msg)
			} else {
				v.log.Debug("vagrant", "msg", msg)
			}
		case typ == "error-exit" && len(data) >= 2:
			errs = append(errs, data[1])
		}
	}
	err = c.Wait()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
	}
	return fmt.Errorf("vagrant up: %w: %s %s", err, strings.Join(errs, " "), output.Tail(stderr.String(), 5))
}

// upPhases maps Vagrant's progress messages to lab's phase names, so the
// results say where the time went. Providers word them differently.
var upPhases = []struct{ marker, phase string }{
	{"Uploading base box image as volume", "box-import"}, // libvirt, a box's first machine
	{"Importing base box", "box-import"},                 // VirtualBox
	{"Creating image (snapshot of base box volume)", "create"},
	{"Starting domain", "boot"}, // libvirt
	{"Booting VM", "boot"},      // VirtualBox
	{"Waiting for domain to get an IP address", "dhcp"},
	{"Waiting for machine to boot", "ssh-wait"},
	{"Waiting for SSH to become available", "ssh-wait"},
	{"Vagrant insecure key detected", "key"}, // SSH is up; Vagrant puts its own key in
}

// upPhase is the phase a message starts, or "".
func upPhase(msg string) string {
	for _, p := range upPhases {
		if strings.Contains(msg, p.marker) {
			return p.phase
		}
	}
	return ""
}

// parseMachineReadable splits a line of vagrant's --machine-readable output,
// "timestamp,target,type,data...", undoing Vagrant's escapes in the data.
func parseMachineReadable(line string) (target, typ string, data []string, ok bool) {
	f := strings.Split(strings.TrimRight(line, "\r"), ",")
	if len(f) < 3 {
		return "", "", nil, false
	}
	if _, err := strconv.ParseInt(f[0], 10, 64); err != nil {
		return "", "", nil, false
	}
	for _, d := range f[3:] {
		d = strings.ReplaceAll(d, "%!(VAGRANT_COMMA)", ",")
		d = strings.ReplaceAll(d, `\n`, "\n")
		d = strings.ReplaceAll(d, `\r`, "\r")
		data = append(data, d)
	}
	return f[1], f[2], data, true
}

// vagrantError picks the error messages out of machine-readable output.
func vagrantError(out string) string {
	var msgs []string
	for _, line := range strings.Split(out, "\n") {
		if _, typ, data, ok := parseMachineReadable(line); ok && typ == "error-exit" && len(data) >= 2 {
			msgs = append(msgs, strings.TrimSpace(data[1]))
		}
	}
	return strings.Join(msgs, " ")
}

// vagrantSSH is what `vagrant ssh-config` says about logging in.
type vagrantSSH struct {
	HostName, User string
	Port           int
	IdentityFiles  []string
}

// parseVagrantSSH reads `vagrant ssh-config` output (OpenSSH client
// configuration for one host).
func parseVagrantSSH(out string) (vagrantSSH, error) {
	var c vagrantSSH
	for _, line := range strings.Split(out, "\n") {
		key, val, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		val = strings.Trim(strings.TrimSpace(val), `"`)
		switch strings.ToLower(key) {
		case "hostname":
			c.HostName = val
		case "user":
			c.User = val
		case "port":
			p, err := strconv.Atoi(val)
			if err != nil {
				return c, fmt.Errorf("ssh-config: port %q: %w", val, err)
			}
			c.Port = p
		case "identityfile":
			c.IdentityFiles = append(c.IdentityFiles, val)
		}
	}
	if c.HostName == "" || c.User == "" || c.Port == 0 || len(c.IdentityFiles) == 0 {
		return c, fmt.Errorf("ssh-config lacks HostName, User, Port or IdentityFile: %q", strings.TrimSpace(out))
	}
	return c, nil
}

// instance says how to log in, as vagrant ssh-config does, with lab's own
// host key check, and how to make the machine ready for the agent.
func (v *vagrantMachine) instance(ctx context.Context, s Spec, hk ssh.HostKeyCallback, how string) (*Instance, error) {
	c := v.command(ctx, "ssh-config", v.name)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return nil, fmt.Errorf("vagrant ssh-config: %w: %s", err, output.Tail(stderr.String(), 5))
	}
	cfg, err := parseVagrantSSH(string(out))
	if err != nil {
		return nil, err
	}
	// Vagrant lists the key it inserted first, then the insecure one it
	// falls back to; take the first that loads (and is 0600).
	var signer ssh.Signer
	var keyErrs []error
	for _, f := range cfg.IdentityFiles {
		s, err := remote.LoadSigner(f)
		if err == nil {
			signer = s
			break
		}
		keyErrs = append(keyErrs, err)
	}
	if signer == nil {
		return nil, fmt.Errorf("no usable key in vagrant ssh-config: %w", errors.Join(keyErrs...))
	}
	addr := net.JoinHostPort(cfg.HostName, strconv.Itoa(cfg.Port))
	v.log.Info("connecting", "addr", addr, "user", cfg.User, "host key", how)
	in := &Instance{
		Agent: AgentBuild{GOOS: s.OS, GOARCH: s.Arch},
		SSH:   &remote.Config{Addr: addr, User: cfg.User, Signer: signer, HostKey: hk, Deadline: vagrantDialTimeout, Log: v.log},
		Stop:  v.stop,
		CC:    CBuildTarget,
	}
	// Vagrant boxes give their user passwordless sudo, and the machine
	// is lab's to use, so the agent runs as root as on lab's guests; that
	// is checked once, on the first connection, with a clear error.
	if s.OS != "windows" {
		in.Root = "sudo -n"
	}
	addUser, why := otherUserCommand(s.OS)
	if addUser == "" {
		v.log.Info("no second user", "why", why)
	}
	in.Prepare = func(ctx context.Context, client *remote.Client) error {
		if in.Root != "" {
			if err := checkRoot(ctx, client, in.Root, s.OS, cfg.User); err != nil {
				return err
			}
		}
		if addUser == "" {
			return nil
		}
		var out bytes.Buffer
		remoteErr, transportErr := client.Run(ctx, addUser, nil, &out, &out)
		if transportErr != nil {
			return transportErr
		}
		if remoteErr != nil {
			v.log.Warn("could not create the second user; user=other scenarios fall back to the agent's choice", "command", addUser, "error", remoteErr, "output", strings.TrimSpace(out.String()))
		}
		return nil
	}
	return in, nil
}

// checkRoot checks that root (the prefix, "sudo -n") gives uid 0 without a
// password, before the agent runs, so that a box that does not (OpenBSD's
// generic boxes keep their sudo rule in a directory OpenBSD's sudo never
// reads) fails with what is wrong instead of with every scenario.
func checkRoot(ctx context.Context, client *remote.Client, root, goos, user string) error {
	var out bytes.Buffer
	remoteErr, transportErr := client.Run(ctx, root+" id -u", nil, &out, &out)
	if transportErr != nil {
		return transportErr
	}
	if remoteErr == nil && strings.TrimSpace(out.String()) == "0" {
		return nil
	}
	hint := ""
	if goos == "openbsd" {
		hint = " (OpenBSD's generic boxes keep the rule in /etc/sudoers.d, which OpenBSD's sudo does not read; the disk-image target openbsd-7 gets root through doas instead)"
	}
	return fmt.Errorf("%s id -u as %s did not give root: %v: %s%s", root, user, remoteErr, strings.TrimSpace(out.String()), hint)
}

// hostKeyCheck is pinned for a box lab built, which carries its machines'
// host key; otherwise the machine's known_hosts, recorded on the first
// connection after lab created it (trust on first use). For a machine that
// exists already, a missing record is an error: its key was never seen by
// lab and cannot be trusted now.
func (v *vagrantMachine) hostKeyCheck(b vagrantBox, fresh bool) (ssh.HostKeyCallback, string, error) {
	if dir, ok := boxDir(vagrantHome(), b); ok {
		if pub, err := os.ReadFile(filepath.Join(dir, diskimage.BoxHostKeyFile)); err == nil {
			hk, err := remote.PinnedHostKey(pub)
			return hk, "pinned (the box's " + diskimage.BoxHostKeyFile + ")", err
		}
	}
	file := v.knownHosts()
	if fresh {
		os.Remove(file) // a record of a machine that is gone
	}
	if _, err := os.Stat(file); err == nil {
		hk, err := remote.KnownHosts(file)
		return hk, "verified against " + file, err
	}
	if !fresh {
		return nil, "", fmt.Errorf("machine %s exists but lab recorded no host key for it (%s)", v.name, file)
	}
	return recordHostKey(file), "trusted on first use, recorded in " + file, nil
}

// recordHostKey accepts the first key it is shown and writes it to file;
// once the file exists it checks keys against it like known_hosts.
func recordHostKey(file string) ssh.HostKeyCallback {
	var mu sync.Mutex
	return func(host string, addr net.Addr, key ssh.PublicKey) error {
		mu.Lock()
		defer mu.Unlock()
		if _, err := os.Stat(file); err == nil {
			hk, err := knownhosts.New(file)
			if err != nil {
				return err
			}
			return hk(host, addr, key)
		}
		line := knownhosts.Line([]string{knownhosts.Normalize(host)}, key) + "\n"
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(line), 0o600); err != nil {
			return fmt.Errorf("recording host key: %w", err)
		}
		return os.Rename(tmp, file)
	}
}

// otherUserCommand is the shell command that creates labother, the
// unprivileged second user of user=other scenarios, with the OS's own
// tool, if it does not exist; or "" and why there is none.
func otherUserCommand(goos string) (cmd, why string) {
	var add string
	switch goos {
	case "linux":
		add = "useradd -M -s /usr/sbin/nologin labother"
	case "freebsd", "dragonfly":
		add = "pw useradd -n labother -d /nonexistent -s /usr/sbin/nologin"
	case "openbsd", "netbsd":
		add = "useradd -s /sbin/nologin labother"
	case "illumos", "solaris":
		add = "/usr/sbin/useradd -s /bin/false labother"
	case "windows":
		return "", "the Windows agent does not implement user=other (it would need the second account's logon token), so no account is made"
	default:
		return "", fmt.Sprintf("lab does not know how to add a user on %s", goos)
	}
	return "id labother >/dev/null 2>&1 || sudo -n " + add, ""
}

// stop destroys the machine, unless the target keeps it.
func (v *vagrantMachine) stop(ctx context.Context) error {
	if v.keep {
		v.log.Info("leaving the machine up (keep: true)", "destroy with", fmt.Sprintf("VAGRANT_CWD=%s VAGRANT_DOTFILE_PATH=%s LAB_MACHINE=%s vagrant destroy -f %s", v.dir, filepath.Join(v.work, "dot-vagrant"), v.name, v.name))
		return nil
	}
	return v.destroy(ctx)
}

// destroy runs vagrant destroy -f and forgets the machine's host key.
func (v *vagrantMachine) destroy(ctx context.Context) error {
	// Teardown must finish even when the run was interrupted.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	c := v.command(ctx, "destroy", "-f", v.name, "--machine-readable")
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	os.Remove(v.knownHosts())
	if err != nil {
		return fmt.Errorf("vagrant destroy: %w: %s %s", err, vagrantError(string(out)), output.Tail(stderr.String(), 5))
	}
	return nil
}
