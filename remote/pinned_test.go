//go:build linux

package remote

import (
	"context"
	"errors"
	"os/user"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"lab/internal/testenv"
)

// TestPinnedHostKeyAmongTypes is the host a guest's sshd becomes when its rc scripts
// create the key types the seed did not bring (FreeBSD, NetBSD): Debian's sshd holding
// rsa, ecdsa and ed25519 keys. With any one of them pinned, PinnedHostKey connects,
// whichever key the server offers first; a wrong key of the same type is refused at
// once, as is ssh.FixedHostKey, which cannot ask for the pinned type and is why the
// disk-image path must pin with PinnedHostKey.
func TestPinnedHostKeyAmongTypes(t *testing.T) {
	types := []string{"rsa", "ecdsa", "ed25519"}
	s := testenv.StartSSHDWith(t, testenv.SSHDOptions{HostKeyTypes: types})
	signer, err := LoadSigner(s.Key)
	if err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dial := func(t *testing.T, hk ssh.HostKeyCallback) (*Client, time.Duration, error) {
		start := time.Now()
		c, err := Dial(context.Background(), Config{
			Addr: s.Addr, User: me.Username, Signer: signer, HostKey: hk,
			Deadline: 20 * time.Second, Log: testLogger(t),
		})
		return c, time.Since(start), err
	}
	wrongKey := func(t *testing.T, typ string) []byte {
		other := testenv.StartSSHDWith(t, testenv.SSHDOptions{HostKeyTypes: []string{typ}})
		return []byte(other.HostKeys[typ])
	}
	for _, typ := range types {
		t.Run(typ, func(t *testing.T) {
			var asked countKeys
			hk, err := PinnedHostKey([]byte(s.HostKeys[typ]))
			if err != nil {
				t.Fatal(err)
			}
			c, took, err := dial(t, asked.wrap(hk))
			if err != nil {
				t.Fatalf("pinned %s: %v", typ, err)
			}
			c.Close()
			t.Logf("pinned %s: connected in %v; the server offered %v", typ, took.Round(time.Millisecond), asked.types)
			if last := asked.types[len(asked.types)-1]; !strings.Contains(last, keyTypeName(typ)) {
				t.Errorf("the accepted key was %s, not the pinned %s", last, typ)
			}

			hk, err = PinnedHostKey(wrongKey(t, typ))
			if err != nil {
				t.Fatal(err)
			}
			_, took, err = dial(t, hk)
			var te *TransportError
			if !errors.Is(err, ErrHostKey) || !errors.As(err, &te) {
				t.Fatalf("wrong %s key: %v, want a *TransportError wrapping ErrHostKey", typ, err)
			}
			if took > 2*time.Second {
				t.Errorf("wrong %s key refused after %v, want at once", typ, took)
			}
		})
	}
	t.Run("ssh.FixedHostKey ed25519", func(t *testing.T) {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.HostKeys["ed25519"]))
		if err != nil {
			t.Fatal(err)
		}
		if c, _, err := dial(t, ssh.FixedHostKey(pub)); err == nil {
			c.Close()
			t.Fatal("FixedHostKey(ed25519) connected; the server must have offered another type first")
		} else if !errors.Is(err, ErrHostKey) {
			t.Fatalf("FixedHostKey: %v, want ErrHostKey", err)
		}
	})
}

// keyTypeName is the part every SSH algorithm name of an ssh-keygen type has.
func keyTypeName(typ string) string {
	switch typ {
	case "rsa":
		return "rsa"
	case "ecdsa":
		return "ecdsa"
	}
	return "ed25519"
}
