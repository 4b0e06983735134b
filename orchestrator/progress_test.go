package orchestrator

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// screen replays what TermProgress writes the way a terminal would, for
// the escape sequences it uses: cursor up (ESC [ n A), erase to the end of
// the screen (ESC [ J) and erase the line (ESC [ 2 K).
func screen(out string) []string {
	var lines []string
	row := 0
	esc := regexp.MustCompile(`^\x1b\[(\d*)([AJK])`)
	for len(out) > 0 {
		if m := esc.FindStringSubmatch(out); m != nil {
			out = out[len(m[0]):]
			switch m[2] {
			case "A":
				n, _ := strconv.Atoi(m[1])
				row = max(0, row-n)
			case "J":
				lines = lines[:min(row, len(lines))]
			case "K":
				if row < len(lines) {
					lines[row] = ""
				}
			}
			continue
		}
		i := strings.IndexAny(out, "\x1b\n")
		if i < 0 {
			i = len(out)
		}
		for row >= len(lines) {
			lines = append(lines, "")
		}
		lines[row] += out[:i]
		out = out[i:]
		if strings.HasPrefix(out, "\n") {
			row++
			out = out[1:]
		}
	}
	return lines
}

func TestTermProgressKeepsLogsAboveTheView(t *testing.T) {
	var buf bytes.Buffer
	p := &TermProgress{W: &buf}
	p.Write([]byte("log before anything\n"))
	p.Update(TargetState{Name: "linux-6.1", Phase: "boot"})
	p.Update(TargetState{Name: "local", Phase: "run", Total: 3})
	p.Write([]byte("a log line while the view is up\n"))
	p.Update(TargetState{Name: "linux-6.1", Phase: "connect"})
	p.Write([]byte("a line without its newline"))
	p.Update(TargetState{Name: "local", Status: "complete", Done: 3, Total: 3})

	got := screen(buf.String())
	want := []string{
		"log before anything",
		"a log line while the view is up",
		"a line without its newline",
		"  linux-6.1      " + TargetState{Name: "linux-6.1", Phase: "connect"}.String(),
		"  local          done (3/3 scenarios)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("screen:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
