package diskimage

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// KeyPair returns an ed25519 key pair kept in dir, generating it once:
// public in authorized_keys form, private in OpenSSH PEM form, mode 0600.
// Cloud images and Vagrant boxes get host keys made this way, so that lab
// knows a machine's key before its first boot and pins it.
func KeyPair(dir, name string) (pub, priv []byte, err error) {
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
