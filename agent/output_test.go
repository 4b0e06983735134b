package agent

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"lab/wire"
)

// writes records each Write it gets.
type writes struct {
	mu  sync.Mutex
	got []string
	err error
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.got = append(w.got, string(p))
	return len(p), nil
}

func (w *writes) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.got)
}

func (w *writes) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, g := range w.got {
		n += len(g)
	}
	return n
}

// decoded is what a reader of w's bytes so far can decode: gunzipped as
// far as the stream goes when gzipped (a stream not yet ended says
// io.ErrUnexpectedEOF after the last flushed byte).
func (w *writes) decoded(t *testing.T, gzipped bool) string {
	t.Helper()
	w.mu.Lock()
	raw := strings.Join(w.got, "")
	w.mu.Unlock()
	if !gzipped || raw == "" {
		return raw
	}
	zr, err := gzip.NewReader(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	var out bytes.Buffer
	if _, err := io.Copy(&out, zr); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("gunzip: %v", err)
	}
	return out.String()
}

func lineOf(id string) wire.Line { return wire.Line{Result: &wire.Result{ID: id}} }

func TestOutputWritesEachLineWithoutHold(t *testing.T) {
	w := &writes{}
	o := NewOutput(w, wire.Output{})
	for i, id := range []string{"a", "b", "c"} {
		if err := o.Emit(lineOf(id)); err != nil {
			t.Fatal(err)
		}
		if w.count() != i+1 {
			t.Fatalf("after %d lines, %d writes; want one per line", i+1, w.count())
		}
	}
}

func TestOutputHoldsLinesUpToTheHold(t *testing.T) {
	const hold = 200 * time.Millisecond
	w := &writes{}
	o := NewOutput(w, wire.Output{HoldMillis: wire.Millis(hold.Milliseconds())})
	start := time.Now()
	for _, id := range []string{"a", "b", "c"} {
		o.Emit(lineOf(id))
	}
	if n := w.count(); n != 0 && time.Since(start) < hold {
		t.Fatalf("%d writes before the hold ended", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for w.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	if w.count() != 1 || strings.Count(w.got[0], "\n") != 3 {
		t.Fatalf("writes %q; want the three lines in one", w.got)
	}
	if took < hold {
		t.Errorf("written after %v, before the hold of %v", took, hold)
	}
	// A line after the flush starts a new hold.
	o.Emit(lineOf("d"))
	if w.count() != 1 {
		t.Errorf("line d written at once; want it held")
	}
	// The run's last line takes everything held with it, at once.
	o.Emit(wire.Line{Done: &wire.Done{}})
	if w.count() != 2 || !strings.Contains(w.got[1], `"d"`) || !strings.Contains(w.got[1], "done") {
		t.Errorf("writes %q; want d and done written with done", w.got)
	}
}

func TestOutputCloseWritesWhatIsHeld(t *testing.T) {
	w := &writes{}
	o := NewOutput(w, wire.Output{HoldMillis: 3600_000})
	o.Emit(lineOf("a"))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if w.count() != 1 {
		t.Errorf("%d writes after Close, want 1", w.count())
	}
	if err := o.Emit(lineOf("b")); err == nil || w.count() != 1 {
		t.Errorf("Emit after Close: %v, %d writes; want an error and nothing written", err, w.count())
	}
}

func TestOutputKeepsTheFirstWriteError(t *testing.T) {
	broken := errors.New("broken pipe")
	w := &writes{err: broken}
	o := NewOutput(w, wire.Output{})
	if err := o.Emit(lineOf("a")); !errors.Is(err, broken) {
		t.Fatalf("Emit: %v, want %v", err, broken)
	}
	w.err = nil
	if err := o.Emit(lineOf("b")); !errors.Is(err, broken) {
		t.Errorf("Emit after a failed write: %v, want the first error again", err)
	}
	if err := o.Close(); !errors.Is(err, broken) {
		t.Errorf("Close: %v, want %v", err, broken)
	}
}

// BenchmarkOutput: lines through an Output without and with a hold, into
// a writer that counts; what a hold saves is writes (writes/op).
func BenchmarkOutput(b *testing.B) {
	for _, shape := range []wire.Output{{}, {HoldMillis: 20}, {HoldMillis: 20, Gzip: true}} {
		b.Run(fmt.Sprintf("hold=%dms,gzip=%v", shape.HoldMillis, shape.Gzip), func(b *testing.B) {
			w := &writes{}
			o := NewOutput(w, shape)
			line := lineOf(strings.Repeat("x", 1000))
			for b.Loop() {
				o.Emit(line)
			}
			o.Close()
			b.ReportMetric(float64(w.count())/float64(b.N), "writes/op")
			b.ReportMetric(float64(w.size())/float64(b.N), "bytes/op")
		})
	}
}

// TestOutputGzipIsReadableAfterEachWrite: with gzip, whatever the writer got
// so far decodes to every line emitted so far, after each line (no hold)
// or after the hold, and the closed stream ends cleanly.
func TestOutputGzipIsReadableAfterEachWrite(t *testing.T) {
	for _, hold := range []wire.Millis{0, 50} {
		t.Run(fmt.Sprint("hold=", hold), func(t *testing.T) {
			w := &writes{}
			o := NewOutput(w, wire.Output{HoldMillis: hold, Gzip: true})
			for i, id := range []string{"a", "b", "c"} {
				o.Emit(lineOf(id))
				if err := o.EmitLine([]byte(`{"progress":{}}`+"\n"), false); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Second)
				for strings.Count(w.decoded(t, true), "\n") < 2*(i+1) && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if got := w.decoded(t, true); strings.Count(got, "\n") != 2*(i+1) || !strings.Contains(got, `"id":"`+id+`"`) {
					t.Fatalf("after line %s the reader decodes %q", id, got)
				}
			}
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			zr, _ := gzip.NewReader(strings.NewReader(strings.Join(w.got, "")))
			if all, err := io.ReadAll(zr); err != nil || strings.Count(string(all), "\n") != 6 {
				t.Errorf("closed stream: %d lines, %v; want 6 and a clean end", strings.Count(string(all), "\n"), err)
			}
		})
	}
}

func TestReadRequest(t *testing.T) {
	want := wire.Request{Scenarios: []wire.Scenario{{ID: "x/y", Proto: "tcp"}}, Output: wire.Output{HoldMillis: 20, Gzip: true}}
	body, _ := json.Marshal(want)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(body)
	zw.Close()
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"plain", body, true},
		{"plain, stdin left open after it", append(append([]byte{}, body...), "\n{garbage"...), true},
		{"gzipped", zipped.Bytes(), true},
		{"gzip cut short", zipped.Bytes()[:zipped.Len()/2], false},
		{"not JSON", []byte("hello"), false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadRequest(bytes.NewReader(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && (len(got.Scenarios) != 1 || got.Scenarios[0].ID != "x/y" || got.Output != want.Output) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}
