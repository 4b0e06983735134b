package main

import (
	"context"
	"fmt"
	"os"
)

func cmdImage(ctx context.Context, args []string) int {
	fmt.Fprintln(os.Stderr, "lab image: not built yet")
	return exitUsage
}
