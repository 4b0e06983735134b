package agent

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

var (
	dynStartRE = regexp.MustCompile(`(?m)^\s*Start Port\s*:\s*(\d+)`)
	dynCountRE = regexp.MustCompile(`(?m)^\s*Number of Ports\s*:\s*(\d+)`)
)

// sysEphemeralPorts asks netsh for TCP's dynamic port range, which Winsock
// has no call for. netsh prints English labels on English systems only, so
// elsewhere the range is reported as unknown rather than guessed.
func sysEphemeralPorts() (lo, hi int, err error) {
	out, err := exec.Command("netsh", "int", "ipv4", "show", "dynamicport", "tcp").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: netsh: %w", err)
	}
	s, c := dynStartRE.FindSubmatch(out), dynCountRE.FindSubmatch(out)
	if s == nil || c == nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: netsh printed no Start Port and Number of Ports: %q", out)
	}
	start, _ := strconv.Atoi(string(s[1]))
	count, _ := strconv.Atoi(string(c[1]))
	return start, start + count - 1, nil
}
