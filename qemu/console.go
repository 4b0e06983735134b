package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

// consoleKeep is how much of the serial console stays in memory for ConsoleTail: a kernel
// panic with its stack trace fits many times over.
const consoleKeep = 256 << 10

// console receives the guest's serial output: it writes everything to an optional file and
// keeps the last consoleKeep bytes in memory.
type console struct {
	mu   sync.Mutex
	buf  []byte
	file io.Writer // nil when no ConsolePath was given
	ferr error     // first error writing file; the console still feeds the tail
	// total counts every byte ever written, so that a reader can say where
	// it stopped even after the front of buf was dropped.
	total int64
	// changed is closed, and replaced, by every Write: WaitConsole sleeps
	// on it instead of polling.
	changed chan struct{}

	marker  []byte        // a line to watch for, nil without
	seen    chan struct{} // closed once marker has been written
	scanned int           // bytes of buf already searched for marker
}

// watch returns a channel closed once the console shows marker.
func (c *console) watch(marker string) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.marker, c.seen, c.scanned = []byte(marker), make(chan struct{}), 0
	c.check()
	return c.seen
}

// check looks for the marker in what was written since the last look. Called with mu held.
func (c *console) check() {
	if c.marker == nil {
		return
	}
	from := max(0, min(c.scanned, len(c.buf))-len(c.marker)+1)
	if bytes.Contains(c.buf[from:], c.marker) {
		close(c.seen)
		c.marker = nil
		return
	}
	c.scanned = len(c.buf)
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.file != nil && c.ferr == nil {
		_, c.ferr = c.file.Write(p)
	}
	c.buf = append(c.buf, p...)
	c.check()
	c.total += int64(len(p))
	if over := len(c.buf) - consoleKeep; over > 0 {
		// Copy down instead of reslicing so the backing array does not grow forever.
		c.buf = append(c.buf[:0], c.buf[over:]...)
		c.scanned = max(0, c.scanned-over)
	}
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
	// Never fail: an error here would make QEMU's stdout pipe break and the guest stall.
	return len(p), nil
}

// linesFrom returns the complete lines written from offset from on
// (cleaned as tail cleans them), the offset after the last of them, and a
// channel closed at the next Write. A from older than what buf still holds
// starts at buf's first byte.
func (c *console) linesFrom(from int64) ([]string, int64, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	start := c.total - int64(len(c.buf))
	from = max(from, start)
	data := c.buf[from-start:]
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return nil, from, c.changed
	}
	return strings.Split(cleanConsole(data[:end]), "\n"), from + int64(end) + 1, c.changed
}

// tail returns the last n lines, with terminal control sequences and carriage returns
// removed so that the text reads well in a log or an error message.
func (c *console) tail(n int) string {
	if n <= 0 {
		return ""
	}
	c.mu.Lock()
	text := cleanConsole(c.buf)
	c.mu.Unlock()
	text = strings.TrimRight(text, "\n")
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cleanConsole drops CSI escape sequences (SeaBIOS and the kernel clear the screen with
// them) and carriage returns.
func cleanConsole(b []byte) string {
	var out bytes.Buffer
	out.Grow(len(b))
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == 0x1b && i+1 < len(b) && b[i+1] == '[':
			i += 2
			for i < len(b) && (b[i] < 0x40 || b[i] > 0x7e) {
				i++
			}
		case c == 0x1b:
			// A lone ESC or a two-byte sequence such as ESC c (reset).
			i++
		case c == '\r':
		default:
			out.WriteByte(c)
		}
	}
	return out.String()
}

// limitedBuffer keeps the first max bytes written to it: QEMU's own error messages come
// first and are short, and a misbehaving QEMU must not grow lab's memory.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// errConsoleNotSeen is the error of a console wait that ended without a match.
var errConsoleNotSeen = errors.New("no console line matched")

// WaitConsole waits until the guest writes a console line that re matches and returns the
// match (re.FindStringSubmatch), looking at the lines written since the VM started. It
// gives up when ctx ends or QEMU exits, saying which. Lines are cleaned of terminal
// escape sequences first, as in ConsoleTail. A detached VM's console is read back from
// its ConsolePath.
func (vm *VM) WaitConsole(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	if vm.detachedConsole != "" {
		return waitConsoleFile(ctx, vm.detachedConsole, re, vm.exited)
	}
	var from int64
	for {
		lines, next, changed := vm.console.linesFrom(from)
		from = next
		for _, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				return m, nil
			}
		}
		select {
		case <-changed:
		case <-vm.exited:
			// QEMU's last words may have arrived with its exit.
			lines, _, _ := vm.console.linesFrom(from)
			for _, l := range lines {
				if m := re.FindStringSubmatch(l); m != nil {
					return m, nil
				}
			}
			return nil, fmt.Errorf("%w %s: QEMU exited (%v)", errConsoleNotSeen, re, vm.ExitErr())
		case <-ctx.Done():
			return nil, fmt.Errorf("%w %s: %w", errConsoleNotSeen, re, context.Cause(ctx))
		}
	}
}

// consolePoll is how often waitConsoleFile reads a detached guest's console file again.
const consolePoll = 100 * time.Millisecond

// waitConsoleFile is WaitConsole for a console that goes straight to a file.
func waitConsoleFile(ctx context.Context, path string, re *regexp.Regexp, exited <-chan struct{}) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading console: %w", err)
	}
	defer f.Close()
	var pending []byte
	buf := make([]byte, 64<<10)
	scan := func() []string {
		for {
			n, _ := f.Read(buf)
			if n == 0 {
				return nil
			}
			pending = append(pending, buf[:n]...)
			end := bytes.LastIndexByte(pending, '\n')
			if end < 0 {
				continue
			}
			for _, l := range strings.Split(cleanConsole(pending[:end]), "\n") {
				if m := re.FindStringSubmatch(l); m != nil {
					return m
				}
			}
			pending = append(pending[:0], pending[end+1:]...)
		}
	}
	tick := time.NewTicker(consolePoll)
	defer tick.Stop()
	for {
		if m := scan(); m != nil {
			return m, nil
		}
		select {
		case <-tick.C:
		case <-exited:
			if m := scan(); m != nil {
				return m, nil
			}
			return nil, fmt.Errorf("%w %s: QEMU exited", errConsoleNotSeen, re)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w %s: %w", errConsoleNotSeen, re, context.Cause(ctx))
		}
	}
}
