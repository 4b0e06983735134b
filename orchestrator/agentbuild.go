package orchestrator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"lab"
	"lab/target"
)

// agentBuilds serialises builds of one kind of agent and remembers the
// result for the life of the process: parallel targets of the same kind
// share one binary and one go build.
var agentBuilds sync.Map // "cacheDir key" -> *agentBuild

type agentBuild struct {
	mu   sync.Mutex
	path string
}

// buildAgent builds the agent b describes into the cache and returns its
// path: static and CGO-free for most targets, with b's tags and environment
// for an agent linked against a user-space network stack. The binary's
// directory is named by everything that makes it (b, the hash of the
// sources lab carries, the go command), so an agent built once is used by
// every later lab process without asking go build again, which costs a
// few tenths of a second even when Go's build cache has everything.
func buildAgent(ctx context.Context, cacheDir string, b target.AgentBuild) (string, error) {
	goos, goarch := b.GOOS, b.GOARCH
	if goos == "" {
		goos = runtime.GOOS
	}
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	kind := goos + "-" + goarch
	if len(b.Tags) > 0 || len(b.Env) > 0 {
		sum := sha256.Sum256([]byte(strings.Join(b.Tags, ",") + "\x00" + strings.Join(b.Env, "\x00")))
		kind += "-" + strings.Join(b.Tags, "-") + "-" + hex.EncodeToString(sum[:4])
	}
	v, _ := agentBuilds.LoadOrStore(cacheDir+" "+kind, &agentBuild{})
	ab := v.(*agentBuild)
	ab.mu.Lock()
	defer ab.mu.Unlock()
	if ab.path != "" {
		return ab.path, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building the agent for %s needs the Go toolchain (go on PATH, https://go.dev/dl): lab builds it from the sources it carries", kind)
	}
	name := "lab-agent"
	if goos == "windows" {
		name += ".exe"
	}
	// The directory is world-readable: the agent re-executes itself as
	// another user for user=other scenarios and must be reachable by it.
	dir := filepath.Join(cacheDir, "agent", kind+"-"+lab.AgentSourceHash()+"-"+toolchainID(goBin))
	out := filepath.Join(dir, name)
	if _, err := os.Stat(out); err == nil {
		ab.path = out
		return out, nil
	}
	src, err := agentSource(cacheDir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating agent cache: %w", err)
	}
	// Built beside and renamed: another lab building the same agent at the
	// same time, or one killed mid-build, never leaves half a binary at out.
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d", name, os.Getpid()))
	defer os.Remove(tmp)
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", tmp}
	if len(b.Tags) > 0 {
		args = append(args, "-tags", strings.Join(b.Tags, ","))
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/lab-agent")...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	cmd.Env = append(cmd.Env, b.Env...) // later entries win: CGO_ENABLED=1 for cgo agents
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build agent for %s in %s (golang.org/x/sys comes from the module cache or the Go module proxy): %w: %s", kind, src, err, strings.TrimSpace(stderr.String()))
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("installing the agent build: %w", err)
	}
	ab.path = out
	return out, nil
}

// agentSource writes the agent's sources lab carries (lab.AgentSource)
// into the cache, once per version of them, and returns the directory: an
// agent always matches the lab that pushes it, wherever lab runs from, and
// the directory's stable path lets Go's build cache serve rebuilds.
func agentSource(cacheDir string) (string, error) {
	dir, err := filepath.Abs(filepath.Join(cacheDir, "agent-src", lab.AgentSourceHash()))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("writing the agent's sources: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return "", fmt.Errorf("writing the agent's sources: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.CopyFS(tmp, lab.AgentSource); err != nil {
		return "", fmt.Errorf("writing the agent's sources: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, fs.ErrExist) {
		if _, serr := os.Stat(filepath.Join(dir, "go.mod")); serr == nil {
			return dir, nil // another lab wrote the same sources first
		}
		return "", fmt.Errorf("writing the agent's sources: %w", err)
	}
	return dir, nil
}

// toolchainID names the go command lab builds agents with: its path, size
// and modification time, which change when Go is upgraded.
func toolchainID(goBin string) string {
	fi, err := os.Stat(goBin)
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%d", goBin, fi.Size(), fi.ModTime().UnixNano())))
	return hex.EncodeToString(sum[:4])
}
