// Command lab-agent runs lab's scenarios on the machine it runs on. It reads
// one wire.Request as JSON on standard input and writes one wire.Line of
// JSON per line on standard output, a result as soon as each scenario ends
// (or within the hold the request asks for), so that whatever it measured
// survives a crash of the agent or its connection.
//
// Run with -helper it instead serves the sockets of user=other steps; the
// agent starts it that way itself, as the other user.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"lab/agent"
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
	req, err := agent.ReadRequest(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab-agent: reading request from stdin:", err)
		os.Exit(2)
	}
	// Each line leaves as it ends, or as the request's output shape says.
	out := agent.NewOutput(os.Stdout, req.Output)
	err = agent.Run(ctx, req, out.Emit)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("writing results: %w", cerr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab-agent:", err)
		os.Exit(1)
	}
}
