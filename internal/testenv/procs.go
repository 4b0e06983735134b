package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// procStat is what a test needs of one /proc/PID/stat.
type procStat struct {
	pid, ppid int
	state     string
	label     string // "PID (comm)"
}

// procStats reads every process's /proc/PID/stat; none where there is no
// /proc.
func procStats() []procStat {
	var out []procStat
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ")".
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		st := procStat{label: s[:i+1]}
		if _, err := fmt.Sscan(s, &st.pid); err != nil {
			continue
		}
		if _, err := fmt.Sscan(s[i+1:], &st.state, &st.ppid); err != nil {
			continue
		}
		out = append(out, st)
	}
	return out
}

// Children lists the live (not zombie) children of pid from /proc, each as
// "PID (comm)": what a test checks a program left running. Empty where
// there is no /proc.
func Children(pid int) []string {
	var out []string
	for _, st := range procStats() {
		if st.ppid == pid && st.state != "Z" {
			out = append(out, st.label)
		}
	}
	return out
}

// Descendants lists the processes below pid (children, their children,
// ...), zombies included, read from /proc: what a test kills or checks is
// gone when a server it started ends.
func Descendants(pid int) []int {
	children := map[int][]int{}
	for _, st := range procStats() {
		children[st.ppid] = append(children[st.ppid], st.pid)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// Processes lists the processes whose /proc/PID/<file> (cmdline, environ,
// ...) satisfies match, each as "PID: command line" with its NULs as
// spaces: what a test checks a program left running, and where to find it.
func Processes(file string, match func(content []byte) bool) []string {
	var out []string
	files, _ := filepath.Glob("/proc/[0-9]*/" + file)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !match(b) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "cmdline"))
		out = append(out, filepath.Base(filepath.Dir(f))+": "+strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return out
}

// HasField reports whether content, NUL-separated fields (a cmdline, an
// environ), holds field exactly.
func HasField(content []byte, field string) bool {
	for _, f := range bytes.Split(content, []byte{0}) {
		if string(f) == field {
			return true
		}
	}
	return false
}

// Alive reports whether process pid exists and is not a zombie.
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}
