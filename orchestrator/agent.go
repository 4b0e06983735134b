package orchestrator

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"lab/target"
	"lab/wire"
)

// runAgent runs the agent and records each line as it arrives.
func (tr *targetRun) runAgent(ctx context.Context, m target.Machine, cmd string, req wire.Request) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding request: %w", err)
	}
	if req.Output.Gzip {
		// Where the output is gzipped the request is too (a megabyte for
		// 2,000 scenarios, 40 KB so); the agent knows it by its magic.
		body = gzipped(body)
	}
	// A live agent prints a line per scenario, each within the scenario's
	// deadline; one that stays silent far longer is hung or stopped, which
	// the connection's keepalives cannot see while sshd still answers.
	silence := agentSilence(req)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(silence, func() {
		cancel(fmt.Errorf("the agent printed nothing for %v (hung or stopped)", silence))
	})
	defer watchdog.Stop()
	// An OS pipe, not an io.Pipe: a local agent writes into it directly
	// (exec hands it the descriptor, no copying goroutine in between), and
	// its buffer lets the agent run on while lab records a result.
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("target %s, run: %w", tr.t.Name, err)
	}
	defer pr.Close()
	runErr := make(chan error, 1)
	go func() {
		err := m.Run(ctx, cmd, bytes.NewReader(body), pw)
		pw.Close() // the reader's EOF; the agent, and anything it started, hold no copy
		runErr <- err
	}()
	var out io.Reader = &resetReader{r: pr, t: watchdog, d: silence}
	if req.Output.Gzip {
		out = &gunzipper{r: out}
	}
	done, err := tr.readAgent(out)
	if err != nil && !errors.Is(err, errAgentOutput) {
		// Saving a result failed: stop reading, which ends the agent.
		pr.Close()
		<-runErr
		return err
	}
	readErr := err
	pr.Close()
	err = <-runErr
	if err == nil {
		err = readErr
	}
	if !done {
		if err == nil {
			err = errors.New("the agent exited without finishing")
		}
		return fmt.Errorf("target %s, run: agent stopped after %d of %d scenarios: %w", tr.t.Name, len(tr.res.Results), tr.res.Total, err)
	}
	if err != nil {
		return fmt.Errorf("target %s, run: %w", tr.t.Name, err)
	}
	return nil
}

// agentSilence is how long the agent may print nothing before it counts as
// hung: the longest scenario deadline (the agent's default is 3 s) twice
// over, plus time for a slow emulated guest to start the agent.
func agentSilence(req wire.Request) time.Duration {
	if silenceForTest > 0 {
		return silenceForTest
	}
	longest := 3 * time.Second
	for _, s := range req.Scenarios {
		longest = max(longest, s.Timeout.Duration())
	}
	return 2*longest + 30*time.Second
}

// silenceForTest, when set, replaces agentSilence's answer (export_test.go).
var silenceForTest time.Duration

// resetReader pushes a timer back by d whenever bytes arrive.
type resetReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (r *resetReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(r.d)
	}
	return n, err
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// gunzipper reads the agent's gzipped output (wire.Output.Gzip). A stream
// cut short (the agent or its connection died) ends after the last line
// the agent flushed, as a plain stream ends after the last line written;
// how it ended is the run's error to tell, not the reader's.
type gunzipper struct {
	r  io.Reader
	zr *gzip.Reader
}

func (g *gunzipper) Read(p []byte) (int, error) {
	if g.zr == nil {
		zr, err := gzip.NewReader(g.r)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, io.EOF // the agent wrote nothing, or not even a header
			}
			return 0, fmt.Errorf("the agent's gzipped output: %w", err)
		}
		g.zr = zr
	}
	n, err := g.zr.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

// errAgentOutput marks output of the agent that could not be read as lines
// (a line longer than the reader's limit, or a broken stream).
var errAgentOutput = errors.New("reading the agent's output")

// readAgent records each JSON line the agent prints on r, journalling each
// env and result line, until r ends. It reports
// whether the agent said it was done. Lines that are not JSON are logged
// and skipped; an error wrapping errAgentOutput means the stream itself
// could not be read, any other error that the results could not be saved.
func (tr *targetRun) readAgent(r io.Reader) (done bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		var l wire.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			tr.log.Warn("agent printed a line that is not JSON", "line", truncate(sc.Text(), 200))
			continue
		}
		var err error
		switch {
		case l.Env != nil:
			tr.mu.Lock()
			tr.res.Env = l.Env
			tr.mu.Unlock()
			err = tr.journal.SetEnv(l.Env)
		case l.Progress != nil:
			tr.progress()
		case l.Result != nil:
			err = tr.add(*l.Result)
		case l.Done != nil:
			done = true
		}
		if err != nil {
			return done, err
		}
	}
	if err := sc.Err(); err != nil {
		return done, fmt.Errorf("%w: %w", errAgentOutput, err)
	}
	return done, nil
}
