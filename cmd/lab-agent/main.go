// Command lab-agent runs lab's scenarios on the machine it runs on. It reads
// one wire.Request as JSON on standard input and writes one wire.Line of
// JSON per line on standard output, a result as soon as each scenario ends,
// so that whatever it measured survives a crash of the agent or its
// connection.
//
// Run with -helper it instead serves the sockets of user=other steps; the
// agent starts it that way itself, as the other user.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"lab/agent"
	"lab/wire"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == agent.HelperFlag {
		if err := agent.ServeHelper(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "lab-agent helper:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: lab-agent < request.json > results.jsonl")
		os.Exit(2)
	}
	// A signal ends the run at the next scenario, so the agent still removes the
	// loopback aliases it added; so does a lost connection: with SIGPIPE
	// ignored, the next write fails instead of killing the agent.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	signal.Ignore(syscall.SIGPIPE)
	var req wire.Request
	if err := json.NewDecoder(bufio.NewReader(os.Stdin)).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "lab-agent: reading request from stdin:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	emit := func(l wire.Line) error {
		if err := enc.Encode(l); err != nil {
			return err
		}
		return out.Flush() // each line leaves at once: nothing measured waits in a buffer
	}
	if err := agent.Run(ctx, req, emit); err != nil {
		fmt.Fprintln(os.Stderr, "lab-agent:", err)
		os.Exit(1)
	}
}
