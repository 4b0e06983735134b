package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"golang.org/x/sys/windows"
)

func kernelRelease() (release, version string) {
	v := windows.RtlGetVersion()
	return fmt.Sprintf("%d.%d.%d", v.MajorVersion, v.MinorVersion, v.BuildNumber), ""
}

func hostname() string { h, _ := os.Hostname(); return h }

// uid is -1: Windows has no numeric user ids.
func uid() int { return -1 }

// otherUser: running a helper under a second account needs that account's
// password or a token, which lab does not manage on Windows.
func otherUser(string) (string, string) {
	return "", "user=other is not implemented on Windows (it needs a second account's logon token)"
}

func runAs(*exec.Cmd, string) error {
	return errors.New("user=other is not implemented on Windows")
}
