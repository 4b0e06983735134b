package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// partState is what a partial download remembers of the response it came from,
// so that a resumed request asks for the rest of the same file (If-Range): a
// "latest" directory may hold a new image by then.
type partState struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Size         int64  `json:"size,omitempty"` // the whole file's, when the server said
}

// download fetches url into part, continuing a partial file left by an earlier
// attempt when the server allows (206 to a Range request); otherwise it starts over.
// Progress goes to progress every progressEvery.
func download(ctx context.Context, client *http.Client, url, part string, progress *progressBar) error {
	stateFile := part + ".json"
	var state partState
	var have int64
	if st, err := os.Stat(part); err == nil {
		if b, err := os.ReadFile(stateFile); err == nil && json.Unmarshal(b, &state) == nil && state.URL == url && (state.ETag != "" || state.LastModified != "") {
			have = st.Size()
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		if state.ETag != "" {
			req.Header.Set("If-Range", state.ETag)
		} else {
			req.Header.Set("If-Range", state.LastModified)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	flags := os.O_WRONLY | os.O_CREATE
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		start, total, err := contentRange(resp.Header.Get("Content-Range"))
		if err != nil || start != have {
			return fmt.Errorf("fetching %s: the server resumed at %q, not at byte %d", url, resp.Header.Get("Content-Range"), have)
		}
		flags |= os.O_APPEND
		progress.resumed(have, total)
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0 && have == state.Size:
		// The earlier attempt had it all; the checksum decides.
		progress.resumed(have, have)
		progress.done()
		return nil
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		// What is kept does not fit the file any more: start over.
		resp.Body.Close()
		os.Remove(part)
		os.Remove(stateFile)
		return download(ctx, client, url, part, progress)
	case resp.StatusCode == http.StatusOK:
		// A new download, or the file changed, or the server ignores ranges.
		flags |= os.O_TRUNC
		have = 0
		state = partState{URL: url, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), Size: resp.ContentLength}
		b, _ := json.Marshal(state)
		if err := os.WriteFile(stateFile, b, 0o644); err != nil {
			return fmt.Errorf("fetching %s: %w", url, err)
		}
		progress.resumed(0, resp.ContentLength)
	default:
		return fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	_, err = io.Copy(f, io.TeeReader(resp.Body, progress))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// What arrived stays in part for the next attempt to continue.
		return fmt.Errorf("fetching %s (the %s downloaded so far are kept and the next attempt resumes): %w", url, humanBytes(progress.bytes()), err)
	}
	progress.done()
	return nil
}

// contentRange parses "bytes START-END/TOTAL" (TOTAL may be "*").
func contentRange(h string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q", h)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	first, _, ok2 := strings.Cut(rng, "-")
	if !ok || !ok2 {
		return 0, 0, fmt.Errorf("Content-Range %q", h)
	}
	if start, err = strconv.ParseInt(first, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("Content-Range %q: %w", h, err)
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("Content-Range %q: %w", h, err)
		}
	}
	return start, total, nil
}

// progressEvery is how often the progress bar is drawn again.
const progressEvery = 250 * time.Millisecond

// progressBar draws "name  12.3 MiB / 600.0 MiB  2%  5.1 MiB/s" on one terminal
// line, redrawn in place with \r; nil draws nothing.
type progressBar struct {
	w       io.Writer
	name    string
	n       int64 // bytes of the file so far, including a resumed part
	fresh   int64 // bytes this attempt received
	total   int64 // -1 when unknown
	start   time.Time
	lastOut time.Time
}

func newProgress(w io.Writer, name string) *progressBar {
	if w == nil {
		return nil
	}
	return &progressBar{w: w, name: name, total: -1}
}

func (p *progressBar) resumed(have, total int64) {
	if p == nil {
		return
	}
	p.n, p.total, p.start = have, total, time.Now()
	if have > 0 {
		fmt.Fprintf(p.w, "%s: resuming at %s\n", p.name, humanBytes(have))
	}
}

func (p *progressBar) Write(b []byte) (int, error) {
	if p == nil {
		return len(b), nil
	}
	p.n += int64(len(b))
	p.fresh += int64(len(b))
	if time.Since(p.lastOut) >= progressEvery {
		p.draw("")
	}
	return len(b), nil
}

func (p *progressBar) bytes() int64 {
	if p == nil {
		return 0
	}
	return p.n
}

func (p *progressBar) draw(end string) {
	p.lastOut = time.Now()
	line := fmt.Sprintf("\r%s  %s", p.name, humanBytes(p.n))
	if p.total > 0 {
		line += fmt.Sprintf(" / %s  %3d%%", humanBytes(p.total), p.n*100/p.total)
	}
	if secs := time.Since(p.start).Seconds(); secs > 0 {
		line += fmt.Sprintf("  %s/s", humanBytes(int64(float64(p.fresh)/secs)))
	}
	fmt.Fprint(p.w, line+"  "+end)
}

func (p *progressBar) done() {
	if p == nil {
		return
	}
	p.draw("\n")
}

// humanBytes renders n as B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

var errMismatch = errors.New("checksum mismatch")
