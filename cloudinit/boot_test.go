//go:build linux

package cloudinit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"lab/cloudinit"
	"lab/diskimage"
	"lab/internal/testenv"
	"lab/qemu"
	"lab/remote"
)

// TestBootDebianCloud boots the Debian cloud image lab builds from Debian's
// packages (diskimage.BuildDebianCloud: real cloud-init, as on the official image)
// under QEMU with an ISO seed from WriteSeed, attached as a virtio disk and as a CD,
// and checks everything the seed promises: the ready line on the console with the
// pinned key's fingerprint, that key presented by sshd and no other, lab's key
// logging in as the default user, root through the OS's tool, labother, and the seed
// itself read by the guest's kernel as an ISO 9660 volume labelled cidata.
//
// It needs root (the image build), mmdebstrap, grub-pc-bin, qemu-utils,
// qemu-system-x86 and xorriso, as scripts/setup installs; -short skips it.
func TestBootDebianCloud(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a guest (a minute under TCG)")
	}
	if os.Geteuid() != 0 {
		t.Skip("building the image needs root (mmdebstrap)")
	}
	testenv.NeedTools(t, "qemu-system-x86_64", "qemu-img", "mmdebstrap", "xorriso")
	cache := os.Getenv("LAB_CACHE")
	if cache == "" {
		cache = t.TempDir()
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "boot", Level: hclog.Info, Output: testWriter{t}})
	start := time.Now()
	disk, err := diskimage.BuildDebianCloud(context.Background(), filepath.Join(cache, "disks"), "", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s ready in %v", disk, time.Since(start).Round(100*time.Millisecond))
	for _, cdrom := range []bool{false, true} {
		name := "virtio-disk"
		if cdrom {
			name = "cdrom"
		}
		t.Run(name, func(t *testing.T) { bootAndCheck(t, disk, cache, cdrom) })
	}
}

func bootAndCheck(t *testing.T, disk, cache string, cdrom bool) {
	g, err := cloudinit.Lookup("linux")
	if err != nil {
		t.Fatal(err)
	}
	hostPriv, hostPub, _ := newKey(t)
	_, clientPub, signer := newKey(t)
	c := cloudinit.Config{OS: "linux", Name: "cloudinit-boot-test", User: "debian",
		AuthorizedKeys: []string{string(clientPub)}, HostKey: cloudinit.HostKey{Private: hostPriv, Public: hostPub}}
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.iso")
	format, err := cloudinit.WriteSeed(seed, c)
	if err != nil {
		t.Fatal(err)
	}
	if format != cloudinit.ISO9660 {
		t.Fatalf("seed format %s, want iso9660", format)
	}

	console := filepath.Join(dir, "console.log")
	start := time.Now()
	vm, err := qemu.Start(context.Background(), qemu.Config{
		Arch: "amd64", Disk: disk, Seed: seed, SeedCDROM: cdrom, MemoryMB: g.MemoryMB,
		Accel: "auto", AccelCache: filepath.Join(cache, "accel.json"),
		ConsolePath: console, Name: "lab cloudinit test " + dir,
		Log: hclog.New(&hclog.LoggerOptions{Name: "qemu", Level: hclog.Info, Output: testWriter{t}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	pid := vm.PID()
	t.Cleanup(func() {
		if err := vm.Stop(context.Background()); err != nil {
			t.Errorf("stopping QEMU (pid %d): %v", pid, err)
		}
		// Stop returns once QEMU is reaped: its PID must be gone.
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("QEMU pid %d still exists after Stop", pid)
		}
		if t.Failed() {
			t.Logf("console:\n%s", vm.ConsoleTail(60))
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), g.BootDeadline)
	defer cancel()
	if err := cloudinit.WaitReady(ctx, vm, hostPub); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(start)

	user := g.LoginUser(c.User)
	pinned, err := remote.PinnedHostKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	client, err := remote.Dial(ctx, remote.Config{
		Addr: vm.SSHAddr(), User: user, Signer: signer, HostKey: pinned,
		Deadline: time.Minute, Abort: vm.Exited(), MaxBannerWait: time.Second,
	})
	if err != nil {
		t.Fatalf("dial after the ready line: %v", err)
	}
	defer client.Close()
	t.Logf("accel %s; ready line %v after QEMU started, logged in %v after it", vm.Accel(), ready.Round(100*time.Millisecond), (time.Since(start) - ready).Round(10*time.Millisecond))

	run := func(cmd string) (string, error) {
		var out bytes.Buffer
		remoteErr, transportErr := client.Run(ctx, cmd, nil, &out, &out)
		if transportErr != nil {
			t.Fatalf("%s: %v", cmd, transportErr)
		}
		return out.String(), remoteErr
	}
	prefix, check := g.RootCommand()
	out, err := run(check)
	if err := g.CheckRoot(out, err); err != nil {
		t.Fatal(err)
	}
	if out, err := run("id " + cloudinit.OtherUser); err != nil || !strings.Contains(out, "("+cloudinit.OtherUser+")") {
		t.Errorf("id %s = %q, %v", cloudinit.OtherUser, out, err)
	}
	// The seed's key and no other: cloud-init deleted the image's keys and made none.
	out, err = run("ls /etc/ssh/ | grep '^ssh_host_' | sort")
	if want := "ssh_host_ed25519_key\nssh_host_ed25519_key.pub\n"; err != nil || out != want {
		t.Errorf("host keys in /etc/ssh: %q, %v; want only the seed's ed25519 pair", out, err)
	}
	// The guest's kernel reads the seed: an iso9660 volume labelled cidata, mounted
	// with its Rock Ridge names.
	out, err = run(prefix + " sh -c 'd=$(blkid -l -t LABEL=" + cloudinit.Label + " -o device) && blkid -o export $d && m=$(mktemp -d) && mount -o ro $d $m && ls $m && umount $m'")
	if err != nil || !strings.Contains(out, "TYPE=iso9660") || !strings.Contains(out, "\nmeta-data\nuser-data\n") {
		t.Errorf("the seed as the guest sees it: %q, %v", out, err)
	}
	wantDev := "/dev/vdb"
	if cdrom {
		wantDev = "/dev/sr0"
	}
	if !strings.Contains(out, "DEVNAME="+wantDev) {
		t.Errorf("the seed is not %s: %q", wantDev, out)
	}

	// The ready line is on the console exactly once, and the console log kept it.
	logged, err := os.ReadFile(console)
	if err != nil {
		t.Fatal(err)
	}
	var readyLines []string
	for _, l := range strings.Split(string(logged), "\n") {
		if fp, ok := cloudinit.ParseReady(l); ok {
			readyLines = append(readyLines, fp)
		}
	}
	want, _, _, _, _ := ssh.ParseAuthorizedKey(hostPub)
	if len(readyLines) != 1 || readyLines[0] != ssh.FingerprintSHA256(want) {
		t.Errorf("ready lines in the console log: %q, want one with %s", readyLines, ssh.FingerprintSHA256(want))
	}
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
