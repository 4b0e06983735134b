package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// agentBuilds serialises builds of one GOOS/GOARCH and remembers the result
// for the life of the process: parallel targets of the same kind share one
// binary and one go build.
var agentBuilds sync.Map // "cacheDir goos/goarch" -> *agentBuild

type agentBuild struct {
	mu   sync.Mutex
	path string
}

// agent cross-compiles the agent for t (static, CGO_ENABLED=0) into the
// cache and returns its path. Go's build cache makes a rebuild of unchanged
// sources take a fraction of a second, so lab always asks go build rather
// than guess whether the sources changed.
func (o Options) agent(ctx context.Context, t *Target) (string, error) {
	goos, goarch := t.OS, t.Arch
	if goos == "" {
		goos = runtime.GOOS
	}
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	return BuildAgent(ctx, o.CacheDir, goos, goarch)
}

// BuildAgent builds the agent for goos/goarch into cacheDir.
func BuildAgent(ctx context.Context, cacheDir, goos, goarch string) (string, error) {
	src, err := SourceDir()
	if err != nil {
		return "", err
	}
	v, _ := agentBuilds.LoadOrStore(cacheDir+" "+goos+"/"+goarch, &agentBuild{})
	ab := v.(*agentBuild)
	ab.mu.Lock()
	defer ab.mu.Unlock()
	if ab.path != "" {
		return ab.path, nil
	}
	name := "lab-agent"
	if goos == "windows" {
		name += ".exe"
	}
	// The directory is world-readable: the agent re-executes itself as
	// another user for user=other scenarios and must be reachable by it.
	dir := filepath.Join(cacheDir, "agent", goos+"-"+goarch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating agent cache: %w", err)
	}
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/lab-agent")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build agent for %s/%s: %w: %s", goos, goarch, err, strings.TrimSpace(stderr.String()))
	}
	ab.path = out
	return out, nil
}

// SourceDir finds lab's source tree, which the agent is built from: $LAB_SRC,
// or the first directory holding lab's go.mod above the working directory or
// the lab binary.
func SourceDir() (string, error) {
	if d := os.Getenv("LAB_SRC"); d != "" {
		return d, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, d := range starts {
		for {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module lab\n")) {
				return d, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", errors.New("cannot find lab's source tree to build the agent from: run lab inside it or set LAB_SRC")
}
