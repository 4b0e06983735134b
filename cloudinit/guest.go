package cloudinit

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Guest is what lab knows about the cloud images of one operating system:
// which program applies the seed there, which seeds it finds, how lab gets
// root, and how long a first boot may take. The values come from each
// image's own sources (see docs/other-os.md), not from booting them: only
// Linux can be booted on the machine lab is developed on.
type Guest struct {
	// OS is the guest's GOOS, as targets name it ("linux", "freebsd", ...).
	OS string
	// Reader names the program in the image that reads the seed, for messages.
	Reader string
	// ISOOnly is set where the reader never finds a vfat seed: NetBSD's cloud-init
	// reads labels with mscdlabel (ISO 9660 only), OmniOS's with labelit (no pcfs
	// labelit in illumos), OpenBSD's tries only the partitions the kernel spoofs.
	ISOOnly bool
	// SeedCDROM attaches the seed as a CD drive rather than a virtio disk (see
	// qemu.Config.SeedCDROM): how the publishers of the community OpenBSD image test
	// it, and what NetBSD's mscdlabel was written for.
	SeedCDROM bool
	// LoginAsRoot means the base system has no tool that gives lab's user root without
	// a password (FreeBSD and NetBSD have no sudo or doas in base; installing one needs
	// the network and minutes): the seed authorizes lab's key for root, allows root
	// logins with a key only, and lab logs in as root.
	LoginAsRoot bool
	// RootPrefix is the command that runs a command as root for the logged-in user, with
	// no password and no terminal; "" when lab logs in as root.
	RootPrefix string
	// BootDeadline bounds the first boot under TCG, from QEMU's start to the seed's
	// console line. Generous on purpose: a deadline that is too long costs nothing when
	// the guest comes up, and QEMU exiting ends the wait at once.
	BootDeadline time.Duration
	// MemoryMB is what the guest gets unless the target says otherwise.
	MemoryMB int

	// restartSSHD restarts sshd synchronously, where sshd may already run with keys
	// the seed replaced (it keeps serving the keys it loaded); "" where sshd starts
	// only after the reader installed the keys.
	restartSSHD string
	// allowRootLogin makes sshd accept root logins by key (LoginAsRoot).
	allowRootLogin string
	// grantRoot gives the user root with RootPrefix, where the reader cannot
	// (doas.conf on OpenBSD); %s is the user.
	grantRoot string
	// sudoRule and profiles are the users: entry's sudo and profiles (illumos RBAC)
	// fields, where the reader applies them.
	sudoRule, profiles string
	// cloudInit is set where the reader is cloud-init (or a fork of it), which knows
	// ssh_deletekeys, ssh_genkeytypes and lock_passwd; nuageinit does not.
	cloudInit bool
	// writeFiles are write_files entries the reader applies before the network comes
	// up: FreeBSD's first-boot update and package upgrade turned off.
	writeFiles []writeFile
}

// guests is every OS lab can boot a cloud image of, keyed by GOOS.
var guests = map[string]Guest{
	"linux": {
		OS: "linux", Reader: "cloud-init",
		RootPrefix: "sudo -n",
		// The Debian image lab builds printed its ready line 1m13s to 3m24s after QEMU
		// started under TCG on a 2-core host shared with other builds (four boots);
		// Ubuntu's full cloud image (snapd, more units) takes longer.
		BootDeadline: 10 * time.Minute, MemoryMB: 1024,
		// cloud-init's key step runs before ssh.service (Debian, Ubuntu): no restart.
		sudoRule: "ALL=(ALL) NOPASSWD:ALL", cloudInit: true,
	},
	"freebsd": {
		OS: "freebsd", Reader: "nuageinit",
		LoginAsRoot: true,
		// nuageinit, growfs and the firstboot scripts: minutes under emulation.
		BootDeadline: 15 * time.Minute, MemoryMB: 1024,
		// nuageinit installs the keys before sshd starts, but root logins are allowed only
		// from the runcmd step, after sshd started.
		restartSSHD:    "service sshd restart",
		allowRootLogin: `sysrc sshd_flags="-o PermitRootLogin=prohibit-password"`,
		writeFiles: []writeFile{
			// BASIC-CLOUDINIT enables both; freebsd-update installs patches and asks for
			// a reboot, which QEMU's -no-reboot turns into an exit. rc.subr reads
			// /etc/rc.conf.d/<name> when each script runs, after nuageinit wrote it
			// (nuageinit creates /etc/rc.conf.d for the hostname first).
			{Path: "/etc/rc.conf.d/firstboot_freebsd_update", Content: "firstboot_freebsd_update_enable=\"NO\"\n"},
			{Path: "/etc/rc.conf.d/firstboot_pkg_upgrade", Content: "firstboot_pkg_upgrade_enable=\"NO\"\n"},
		},
	},
	"netbsd": {
		OS: "netbsd", Reader: "cloud-init (pkgsrc)",
		ISOOnly: true, SeedCDROM: true, LoginAsRoot: true,
		// cloud-init is Python from pkgsrc: slow to start under emulation.
		BootDeadline: 15 * time.Minute, MemoryMB: 1024,
		// NetBSD's cloud-init rc.d scripts are not ordered before sshd.
		restartSSHD:    "/etc/rc.d/sshd restart",
		allowRootLogin: `echo 'sshd_flags="-o PermitRootLogin=prohibit-password"' >> /etc/rc.conf`,
		cloudInit:      true,
	},
	"openbsd": {
		OS: "openbsd", Reader: "cloud-init (hcartiaux/openbsd-cloud-image)",
		ISOOnly: true, SeedCDROM: true,
		RootPrefix: "doas -n",
		// /etc/rc relinks the kernel (KARL) at every boot, and cloud-init is Python.
		BootDeadline: 15 * time.Minute, MemoryMB: 1024,
		// /etc/rc starts sshd before rc.local, which runs cloud-init: sshd keeps the
		// keys it made at boot until it restarts.
		restartSSHD: "rcctl restart sshd",
		grantRoot:   "echo 'permit nopass %s as root' >> /etc/doas.conf",
		sudoRule:    "ALL=(ALL) NOPASSWD:ALL", cloudInit: true,
	},
	"illumos": {
		OS: "illumos", Reader: "cloud-init (omniosorg fork)",
		ISOOnly:    true,
		RootPrefix: "pfexec",
		// OmniOS's first boot imports and scans its ZFS pool; under emulation that is slow.
		BootDeadline: 20 * time.Minute, MemoryMB: 2048,
		// The order of cloud-init and ssh under SMF was not established; svcadm restart
		// returns at once, disable -s/enable -s wait.
		restartSSHD: "svcadm disable -s svc:/network/ssh:default && svcadm enable -s svc:/network/ssh:default",
		sudoRule:    "ALL=(ALL) NOPASSWD:ALL", profiles: "Primary Administrator", cloudInit: true,
	},
}

// Lookup returns what lab knows about cloud images of goos.
func Lookup(goos string) (Guest, error) {
	g, ok := guests[goos]
	if !ok {
		return Guest{}, fmt.Errorf("cloudinit: no cloud image support for os %q (known: %s)", goos, strings.Join(OSes(), ", "))
	}
	return g, nil
}

// OSes lists the operating systems Lookup knows, sorted.
func OSes() []string {
	var out []string
	for k := range guests {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// LoginUser is the user lab logs in as, given the image's default user: root where
// the seed makes root reachable because nothing else in the base system gives root.
func (g Guest) LoginUser(user string) string {
	if g.LoginAsRoot {
		return "root"
	}
	return user
}

// RootCommand returns the prefix that runs a command as root on the logged-in
// connection ("" when lab logs in as root) and the command that checks it once,
// right after connecting; CheckRoot reads that command's output.
func (g Guest) RootCommand() (prefix, check string) {
	if g.RootPrefix == "" {
		return "", "id"
	}
	return g.RootPrefix, g.RootPrefix + " id"
}

// CheckRoot says whether the root check (RootCommand) worked, from its combined output
// and the error running it gave; the error names the OS, the tool and what the seed
// should have done, since a missing tool or rule would otherwise only show as an agent
// failure later.
func (g Guest) CheckRoot(output string, runErr error) error {
	_, check := g.RootCommand()
	out := strings.TrimSpace(output)
	if runErr == nil && rootID(out) {
		return nil
	}
	how := fmt.Sprintf("%s (from the seed's users: entry)", g.RootPrefix)
	switch {
	case g.LoginAsRoot:
		how = "a root login (the seed authorizes lab's key for root)"
	case g.grantRoot != "":
		how = fmt.Sprintf("%s (the seed's runcmd adds the rule)", g.RootPrefix)
	}
	if runErr != nil {
		return fmt.Errorf("cloudinit: no root on this %s guest: %q failed: %w: %s; lab gets root there through %s", g.OS, check, runErr, out, how)
	}
	return fmt.Errorf("cloudinit: no root on this %s guest: %q printed %q, not uid=0; lab gets root there through %s", g.OS, check, out, how)
}

// rootID reports whether id's output says uid 0: "uid=0(root) gid=0(...)" on every
// Unix lab knows.
func rootID(out string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "uid=0(") {
			return true
		}
	}
	return false
}
