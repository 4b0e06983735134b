package qemu

import (
	"bytes"
	"io"
	"strings"
	"sync"
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
	if over := len(c.buf) - consoleKeep; over > 0 {
		// Copy down instead of reslicing so the backing array does not grow forever.
		c.buf = append(c.buf[:0], c.buf[over:]...)
		c.scanned = max(0, c.scanned-over)
	}
	// Never fail: an error here would make QEMU's stdout pipe break and the guest stall.
	return len(p), nil
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
