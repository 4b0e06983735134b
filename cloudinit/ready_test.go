package cloudinit

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestParseReady(t *testing.T) {
	fp := "SHA256:" + strings.Repeat("A", 43)
	tests := []struct {
		line string
		want string
	}{
		{"LAB-READY " + fp, fp},
		{"[  176.8] cloud-init[327]: LAB-READY " + fp + "\r", fp},
		{"LAB-READY " + fp + " trailing", fp},
		{readyCommand, ""},                        // the command itself, echoed by a reader
		{"LAB-READY SHA256:short", ""},            // truncated on the serial line
		{"LAB-READY " + fp[:len(fp)-1] + "!", ""}, // not base64
		{"lab-ready " + fp, ""},
		{"LAB-READY " + fp + "A", ""}, // 44 characters: not a SHA256 fingerprint
	}
	for _, tc := range tests {
		got, ok := ParseReady(tc.line)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("ParseReady(%q) = %q, %v; want %q", tc.line, got, ok, tc.want)
		}
	}
}

func FuzzParseReady(f *testing.F) {
	f.Add("LAB-READY SHA256:" + strings.Repeat("x", 43))
	f.Add(readyCommand)
	f.Fuzz(func(t *testing.T, line string) {
		fp, ok := ParseReady(line)
		if ok && (!strings.Contains(line, ReadyMarker+" "+fp) || len(fp) != len("SHA256:")+43) {
			t.Errorf("ParseReady(%q) = %q", line, fp)
		}
	})
}

// fakeConsole stands in for a guest's console in the unit test of WaitReady only
// (TestBootDebianCloud waits on a real one): it answers with a fixed line or error.
type fakeConsole struct {
	line string
	err  error
}

func (f fakeConsole) WaitConsole(_ context.Context, re *regexp.Regexp) ([]string, error) {
	if f.err != nil {
		return nil, f.err
	}
	return re.FindStringSubmatch(f.line), nil
}

func TestWaitReady(t *testing.T) {
	_, pub, _ := newKey(t)
	key, _, _, _, _ := ssh.ParseAuthorizedKey(pub)
	_, otherPub, _ := newKey(t)
	other, _, _, _, _ := ssh.ParseAuthorizedKey(otherPub)
	if err := WaitReady(context.Background(), fakeConsole{line: "LAB-READY " + ssh.FingerprintSHA256(key)}, pub); err != nil {
		t.Errorf("the right key: %v", err)
	}
	err := WaitReady(context.Background(), fakeConsole{line: "LAB-READY " + ssh.FingerprintSHA256(other)}, pub)
	if err == nil || !strings.Contains(err.Error(), "did not apply ssh_keys") {
		t.Errorf("another key: %v", err)
	}
	gone := errors.New("QEMU exited")
	if err := WaitReady(context.Background(), fakeConsole{err: gone}, pub); !errors.Is(err, gone) || !strings.Contains(err.Error(), "seed was not applied") {
		t.Errorf("no line: %v", err)
	}
}
