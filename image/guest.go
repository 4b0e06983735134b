package image

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ReadyMarker is the console line a guest prints once sshd listens on port 22, so whoever watches
// the console can tell boot progress from a hang.
const ReadyMarker = "lab-guest: sshd ready"

// The guest's users. OtherUID is the unprivileged user for user=other scenarios.
const (
	RootUser  = "root"
	OtherUser = "labother"
	OtherUID  = 1001
)

// initScript is the guest's PID 1. It brings up only what lab's agent needs (file systems, the
// virtio network card, sshd), prints ReadyMarker once sshd listens, and powers off if sshd dies,
// so a broken guest ends QEMU instead of hanging. It is part of the image hash.
const initScript = `#!/bin/sh
# PID 1 of a lab guest, written by lab's image package.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
/usr/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# lab uploads its agent to /tmp; tmpfs may grow to half the RAM.
mount -t tmpfs -o mode=1777,size=50% tmpfs /tmp
hostname -F /etc/hostname
echo "lab-guest: booted $(uname -r)"
while read -r mod; do
	insmod "$mod" || echo "lab-guest: insmod $mod failed"
done < /etc/lab/modules
ip link set lo up
if ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2; then
	echo "lab-guest: eth0 up at 10.0.2.15"
else
	echo "lab-guest: eth0 setup failed"
fi
# -r: a connection is served by a fork of this sshd, not by a new sshd it execs. Under TCG the
# exec (dynamic linking, libcrypto's start-up, reading the config and keys again) made the
# banner take 0.3 to 1.2 s instead of 0.02 to 0.2 s, a guest restored from a snapshot most of
# its start. The re-exec re-randomises a session's address space: nothing a disposable guest
# on loopback needs.
/usr/sbin/sshd -D -e -r &
sshd=$!
# sshd writes its pid file only once it listens.
while [ ! -s /run/sshd.pid ] && kill -0 $sshd 2>/dev/null; do usleep 20000; done
[ -s /run/sshd.pid ] && echo "lab-guest: sshd ready"
wait $sshd
echo "lab-guest: sshd exited with status $?, powering off"
poweroff -f
`

// sshdConfig lets root (and labother) in with lab's client key and nothing else. PAM is off: the
// guest has no PAM modules and no passwords.
const sshdConfig = `# sshd_config of a lab guest, written by lab's image package.
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
PermitEmptyPasswords no
UsePAM no
UseDNS no
PrintMotd no
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp /usr/lib/openssh/sftp-server
MaxSessions 64
MaxStartups 64
`

// passwdFile has root, labother, and sshd: Debian's privilege separation user, without which sshd
// refuses to start.
const passwdFile = `root:x:0:0:root:/root:/bin/sh
sshd:x:100:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin
labother:x:1001:1001:lab unprivileged user:/home/labother:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`

const groupFile = `root:x:0:
tty:x:5:
labother:x:1001:
nogroup:x:65534:
`

// "*" matches no password but, unlike "!", does not mark the account locked, which sshd would
// refuse even for key logins.
const shadowFile = `root:*:19000:0:99999:7:::
sshd:!:19000::::::
labother:*:19000:0:99999:7:::
nobody:!:19000::::::
`

// nsswitchFile matters for bullseye, whose glibc loads libnss_files.so.2 through it.
const nsswitchFile = `passwd: files
group: files
shadow: files
hosts: files
`

// guestFiles lists the fixed text files of every guest, for the tree and the input hash.
var guestFiles = []struct {
	path string
	perm uint32
	text string
}{
	{"/init", 0o755, initScript},
	{"/etc/ssh/sshd_config", 0o644, sshdConfig},
	{"/etc/passwd", 0o644, passwdFile},
	{"/etc/group", 0o644, groupFile},
	{"/etc/shadow", 0o600, shadowFile},
	{"/etc/nsswitch.conf", 0o644, nsswitchFile},
}

// hostname derives the guest's host name from the image name: "linux-6.1" -> "lab-linux-6-1".
func hostname(name string) string {
	h := regexp.MustCompile(`[^a-z0-9-]+`).ReplaceAllString(strings.ToLower(name), "-")
	return strings.Trim("lab-"+h, "-")
}

// keyPair is an ed25519 key in OpenSSH's private key format and in authorized_keys format.
type keyPair struct {
	private, public []byte
}

func newKeyPair(comment string) (keyPair, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return keyPair{}, fmt.Errorf("generating ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return keyPair{}, fmt.Errorf("encoding private key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return keyPair{}, fmt.Errorf("encoding public key: %w", err)
	}
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment + "\n"
	return keyPair{private: pem.EncodeToMemory(block), public: []byte(authorized)}, nil
}

// addGuestFiles adds the guest's configuration, users, keys and empty dirs to the tree.
func addGuestFiles(t *tree, name string, hostKey, clientKey keyPair, k *kernel) {
	for _, f := range guestFiles {
		t.file(f.path, f.perm, []byte(f.text))
	}
	h := hostname(name)
	t.file("/etc/hostname", 0o644, []byte(h+"\n"))
	t.file("/etc/hosts", 0o644, []byte(fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n", h)))
	t.file("/etc/ssh/ssh_host_ed25519_key", 0o600, hostKey.private)
	t.file("/etc/ssh/ssh_host_ed25519_key.pub", 0o644, hostKey.public)

	var mods strings.Builder
	for _, m := range k.modules {
		t.file(m.guestPath(k.release), 0o644, m.data)
		mods.WriteString(m.guestPath(k.release) + "\n")
	}
	t.file("/etc/lab/modules", 0o644, []byte(mods.String()))

	// StrictModes: sshd ignores authorized_keys unless the file and its dirs are private to
	// their owner.
	t.dir("/root", 0o700, 0, 0)
	t.dir("/root/.ssh", 0o700, 0, 0)
	t.ownedFile("/root/.ssh/authorized_keys", 0o600, 0, 0, clientKey.public)
	t.dir("/home/labother", 0o755, OtherUID, OtherUID)
	t.dir("/home/labother/.ssh", 0o700, OtherUID, OtherUID)
	t.ownedFile("/home/labother/.ssh/authorized_keys", 0o600, OtherUID, OtherUID, clientKey.public)

	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/run/sshd", "/var/log", "/var/empty", "/etc/lab"} {
		t.dir(d, 0o755, 0, 0)
	}
	t.dir("/tmp", 0o1777, 0, 0)
	t.symlink("/var/run", "../run")
	// The kernel opens /dev/console for init before devtmpfs is mounted; without the node init
	// would have no stdout and the console would show nothing.
	t.charDev("/dev/console", 0o600, 5, 1)
	t.charDev("/dev/null", 0o666, 1, 3)
}
