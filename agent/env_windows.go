package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"unsafe"

	"golang.org/x/sys/windows"
)

// kernelRelease is the Windows version RtlGetVersion reports. Under Wine
// that is the version Wine imitates (Windows 7's 6.1.7601 by default), so
// the version string then says the agent runs on Wine, and on which host:
// results from Wine are Wine's emulation of Winsock on another kernel, not
// Windows.
func kernelRelease() (release, version string) {
	v := windows.RtlGetVersion()
	return fmt.Sprintf("%d.%d.%d", v.MajorVersion, v.MinorVersion, v.BuildNumber), wineVersion()
}

// Wine's ntdll exports these; Windows's does not. Looking for them is how
// Wine's own documentation tells programs to detect it.
var (
	ntdll                  = windows.NewLazySystemDLL("ntdll.dll")
	procWineGetVersion     = ntdll.NewProc("wine_get_version")
	procWineGetHostVersion = ntdll.NewProc("wine_get_host_version")
)

// wineVersion is "Wine 8.0 on Linux 6.1.0-18-amd64" under Wine and "" on
// Windows.
func wineVersion() string {
	if procWineGetVersion.Find() != nil {
		return ""
	}
	r1, _, _ := procWineGetVersion.Call()
	s := "Wine " + windows.BytePtrToString(*(**byte)(unsafe.Pointer(&r1)))
	if procWineGetHostVersion.Find() == nil {
		var sysname, release *byte
		procWineGetHostVersion.Call(uintptr(unsafe.Pointer(&sysname)), uintptr(unsafe.Pointer(&release)))
		if sysname != nil && release != nil {
			s += " on " + windows.BytePtrToString(sysname) + " " + windows.BytePtrToString(release)
		}
	}
	return s
}

func hostname() string { h, _ := os.Hostname(); return h }

// uid is -1: Windows has no numeric user ids.
func uid() int { return -1 }

// otherUser: running a helper under a second account needs that account's
// password or a token, which lab does not manage on Windows.
func otherUser(string) (string, string) {
	return "", "not implemented on Windows: user=other needs a second account's logon token, which lab does not manage"
}

func runAs(*exec.Cmd, string) error {
	return errors.New("user=other is not implemented on Windows")
}
