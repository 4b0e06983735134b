package orchestrator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"lab/qemu"
)

// startDisk boots a cloud image (FreeBSD, OpenBSD, NetBSD, OmniOS, Debian,
// Ubuntu, ...) with a cloud-init NoCloud seed lab writes: the seed installs
// a host key lab generated, so the key is pinned before the first boot, and
// authorizes lab's client key for the image's default user. The image file
// itself is never modified: QEMU writes to an overlay.
func startDisk(ctx context.Context, t *Target, env StartEnv) (Machine, error) {
	env.Phase("image")
	keyDir := filepath.Join(env.CacheDir, "keys", t.Name)
	hostPub, hostPriv, err := keyPair(keyDir, "host")
	if err != nil {
		return nil, err
	}
	clientPub, clientPriv, err := keyPair(keyDir, "client")
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(clientPriv)
	if err != nil {
		return nil, fmt.Errorf("parsing client key: %w", err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(hostPub)
	if err != nil {
		return nil, fmt.Errorf("parsing host key: %w", err)
	}
	// The seed carries the host's private key, so it lives beside that key in
	// the cache's private key directory, never in the run directory (which is
	// published), and only while QEMU opens it: QEMU holds the file open from
	// its start, so it is removed as soon as boot returns.
	seedDir, err := os.MkdirTemp(keyDir, "seed-")
	if err != nil {
		return nil, fmt.Errorf("creating NoCloud seed directory: %w", err)
	}
	defer os.RemoveAll(seedDir)
	seed := filepath.Join(seedDir, "seed.img")
	if err := qemu.MakeNoCloudSeed(seed, userData(t.User, clientPub, hostPub, hostPriv), metaData(t.Name), ""); err != nil {
		return nil, fmt.Errorf("writing NoCloud seed: %w", err)
	}
	if t.BootTimeout == 0 {
		t.BootTimeout = Duration(180e9) // a full init and cloud-init under TCG
	}
	if t.MemoryMB == 0 {
		t.MemoryMB = 1024 // a full distribution with cloud-init; the microVMs' 256 MiB is too little
	}
	m, err := boot(ctx, t, env, qemu.Config{Arch: t.Arch, Disk: ExpandHome(t.Disk), Seed: seed}, t.User, signer, ssh.FixedHostKey(hostKey))
	if err != nil {
		return nil, err
	}
	// The guest is disposable, so the agent may run as root there.
	m.(*sshMachine).sudo = true
	return m, nil
}

// keyPair returns an ed25519 key pair kept in dir, generating it once:
// public in authorized_keys form, private in OpenSSH PEM form, mode 0600.
func keyPair(dir, name string) (pub, priv []byte, err error) {
	privPath := filepath.Join(dir, name)
	pubPath := privPath + ".pub"
	if priv, err = os.ReadFile(privPath); err == nil {
		if pub, err = os.ReadFile(pubPath); err == nil {
			return pub, priv, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating key directory: %w", err)
	}
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating %s key: %w", name, err)
	}
	block, err := ssh.MarshalPrivateKey(sk, "lab "+name)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding %s key: %w", name, err)
	}
	sshPub, err := ssh.NewPublicKey(pk)
	if err != nil {
		return nil, nil, err
	}
	priv = pem.EncodeToMemory(block)
	pub = ssh.MarshalAuthorizedKey(sshPub)
	if err := os.WriteFile(privPath, priv, 0o600); err != nil {
		return nil, nil, fmt.Errorf("writing %s key: %w", name, err)
	}
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		return nil, nil, fmt.Errorf("writing %s key: %w", name, err)
	}
	return pub, priv, nil
}

// userData is the cloud-config lab's seed carries: the default user with
// lab's key and passwordless sudo, a second unprivileged user for user=other
// scenarios, and the pinned host key in place of generated ones.
func userData(user string, clientPub, hostPub, hostPriv []byte) string {
	indent := func(b []byte) string {
		return "      " + strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\n      ")
	}
	return fmt.Sprintf(`#cloud-config
users:
  - name: %s
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    shell: /bin/sh
    ssh_authorized_keys:
      - %s
  - name: labother
    shell: /bin/sh
ssh_deletekeys: true
ssh_genkeytypes: [ed25519]
ssh_keys:
  ed25519_private: |
%s
  ed25519_public: %s
`, user, strings.TrimSpace(string(clientPub)), indent(hostPriv), strings.TrimSpace(string(hostPub)))
}

func metaData(name string) string {
	return fmt.Sprintf("instance-id: lab-%s\nlocal-hostname: %s\n", name, name)
}
