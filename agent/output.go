package agent

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"lab/wire"
)

// Output writes the agent's lines to w as the request's wire.Output says.
// By default each line is written as it is emitted, so that nothing
// measured waits in the agent when it crashes. With a hold a line may wait
// up to the hold, and the lines emitted meanwhile leave with it in one
// write; with gzip the lines are one gzip stream, flushed whenever lines
// leave, so the reader can decode every line written so far.
//
// Both are for output that crosses an SSH connection: there every write
// becomes a packet that the guest's sshd reads, encrypts and sends, and
// under emulation that costs milliseconds, more than most scenarios take
// (2,000 scenarios: 1.9 s for the agent alone in a linux-6.1 guest, 13 s
// streamed line by line to lab). The trade is a stated bound: a crash of
// the agent process loses at most what it measured in the last hold.
type Output struct {
	hold time.Duration

	mu      sync.Mutex
	w       *bufio.Writer
	gz      *gzip.Writer // between lines and w, or nil
	lines   io.Writer    // where lines go: gz or w
	enc     *json.Encoder
	pending bool  // lines are held for a timer to flush
	err     error // the first write error; every later call returns it
}

// NewOutput returns an Output writing to w.
func NewOutput(w io.Writer, shape wire.Output) *Output {
	o := &Output{hold: shape.HoldMillis.Duration(), w: bufio.NewWriterSize(w, 64<<10)}
	var lines io.Writer = o.w
	if shape.Gzip {
		// BestSpeed: under emulation the agent's CPU is the scarce thing,
		// and traces compress well even so (17x).
		o.gz, _ = gzip.NewWriterLevel(o.w, gzip.BestSpeed)
		lines = o.gz
	}
	o.lines, o.enc = lines, json.NewEncoder(lines)
	return o
}

// Emit writes l, at once or within the hold. It is safe to call from
// several goroutines.
func (o *Output) Emit(l wire.Line) error {
	// The run's last line leaves at once: nothing follows it to share the
	// write, and lab must not wait for the end.
	return o.emit(func() error { return o.enc.Encode(l) }, l.Done != nil)
}

// EmitLine writes a line the agent already encoded (JSON and its newline),
// as Emit does: the F-Stack supervisor's relay.
func (o *Output) EmitLine(line []byte, last bool) error {
	return o.emit(func() error { _, err := o.lines.Write(line); return err }, last)
}

func (o *Output) emit(write func() error, last bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	if o.err = write(); o.err != nil {
		return o.err
	}
	if o.hold <= 0 || last {
		return o.flush()
	}
	if !o.pending {
		o.pending = true
		time.AfterFunc(o.hold, func() {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.pending = false
			if o.err == nil {
				o.flush()
			}
		})
	}
	return nil
}

// flush writes what is held; o.mu is held.
func (o *Output) flush() error {
	if o.gz != nil {
		if o.err = o.gz.Flush(); o.err != nil {
			return o.err
		}
	}
	o.err = o.w.Flush()
	return o.err
}

// Close writes every line still held and, with gzip, ends the stream. It
// returns the first write error. Emit must not be called after it.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	if o.gz != nil {
		if o.err = o.gz.Close(); o.err != nil {
			return o.err
		}
	}
	o.err = o.w.Flush()
	if o.err == nil {
		o.err = errClosed // a timer that fires late writes nothing
		return nil
	}
	return o.err
}

var errClosed = errors.New("agent output already closed")

// gzipMagic starts every gzip stream (RFC 1952).
var gzipMagic = []byte{0x1f, 0x8b}

// ReadRequest reads one request from r, plain JSON or gzipped (lab gzips
// it where the output is gzipped).
func ReadRequest(r io.Reader) (wire.Request, error) {
	br := bufio.NewReader(r)
	var in io.Reader = br
	if head, _ := br.Peek(len(gzipMagic)); bytes.Equal(head, gzipMagic) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return wire.Request{}, fmt.Errorf("reading the gzipped request: %w", err)
		}
		in = gz
	}
	// One JSON document, not the whole stream: lab may keep stdin open.
	var req wire.Request
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		return wire.Request{}, err
	}
	return req, nil
}
