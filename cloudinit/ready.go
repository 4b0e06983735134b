package cloudinit

import (
	"context"
	"fmt"
	"regexp"

	"golang.org/x/crypto/ssh"
)

// ReadyPattern matches the console line a seed prints last (readyCommand); its group
// is the SHA256 fingerprint of the host key the guest has installed. A line holding
// the command itself (a reader that echoes its script) does not match: the command
// has no fingerprint in it.
var ReadyPattern = regexp.MustCompile(ReadyMarker + ` (SHA256:[A-Za-z0-9+/]{43})(?:[^A-Za-z0-9+/=]|$)`)

// ParseReady returns the host key fingerprint of a ready line, or false for any other
// line.
func ParseReady(line string) (fingerprint string, ok bool) {
	m := ReadyPattern.FindStringSubmatch(line)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// Console is a guest's serial console that can be waited on; qemu.VM is one.
type Console interface {
	// WaitConsole returns the submatches of the first line re matches, or an error
	// when ctx ends or the guest stops first.
	WaitConsole(ctx context.Context, re *regexp.Regexp) ([]string, error)
}

// WaitReady waits until the guest's seed has done its work, that is until its ready
// line appears on the console, and checks that the host key it installed is the one
// lab pins (hostPub, authorized_keys form). Dial only after it returns nil: before,
// sshd may still serve the image's own keys (OpenBSD), the user may not exist yet, or
// the seed may never be applied, which this reports as such instead of as an SSH
// timeout.
func WaitReady(ctx context.Context, c Console, hostPub []byte) error {
	want, _, _, _, err := ssh.ParseAuthorizedKey(hostPub)
	if err != nil {
		return fmt.Errorf("cloudinit: parsing the pinned host key: %w", err)
	}
	m, err := c.WaitConsole(ctx, ReadyPattern)
	if err != nil {
		return fmt.Errorf("cloudinit: the seed was not applied (no %q line on the console): %w", ReadyMarker, err)
	}
	if got := m[1]; got != ssh.FingerprintSHA256(want) {
		return fmt.Errorf("cloudinit: the guest installed host key %s, not the seed's %s: its reader did not apply ssh_keys", got, ssh.FingerprintSHA256(want))
	}
	return nil
}
