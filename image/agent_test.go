package image

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAgentInitrd checks that the agent initramfs is the image's with a second archive holding
// the agent, made once per agent build and image build, and that only the newest few are kept.
func TestAgentInitrd(t *testing.T) {
	cache := t.TempDir()
	dir := filepath.Join(cache, "images", "linux-6.1-aaaa")
	os.MkdirAll(dir, 0o755)
	img := &Image{Dir: dir, Initrd: filepath.Join(dir, "initrd.img")}
	base := []byte("\x1f\x8b the image's own archive")
	put(t, img.Initrd, string(base))
	agent := filepath.Join(cache, "lab-agent")
	put(t, agent, "agent build 1")

	path, key, err := AgentInitrd(img, agent)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "snapshots", "linux-6.1-aaaa", "initrd-"+key+".img"); path != want {
		t.Errorf("path %s, want %s", path, want)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, base) {
		t.Fatalf("the agent initramfs does not begin with the image's")
	}
	zr, err := gzip.NewReader(bytes.NewReader(b[len(base):]))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := readCPIO(zr)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := entries[strings.TrimPrefix(GuestAgentPath, "/")]
	if !ok || got.mode != 0o100755 || string(got.data) != "agent build 1" {
		t.Errorf("agent entry %+v (present %v), want mode 0100755 and the agent", got, ok)
	}
	if again, key2, _ := AgentInitrd(img, agent); again != path || key2 != key {
		t.Errorf("the same agent gave %s %s, want %s %s", again, key2, path, key)
	}

	// The image rebuilt (its inputs, so img.Hash, the same; its initrd new, with new host and
	// client keys): the same agent gets a new initramfs, made from the new initrd. The old
	// one had the old build's host key, which the guest would have presented.
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	rebuilt := []byte("\x1f\x8b the image rebuilt, with new keys")
	put(t, img.Initrd, string(rebuilt))
	p, k, err := AgentInitrd(img, agent)
	if err != nil {
		t.Fatal(err)
	}
	if k == key || p == path {
		t.Errorf("a rebuilt image gave the old build's initramfs %s (key %s)", p, k)
	}
	if b, _ := os.ReadFile(p); !bytes.HasPrefix(b, rebuilt) {
		t.Errorf("the rebuilt image's agent initramfs does not begin with its initrd")
	}

	var paths []string
	for i := 2; i <= 5; i++ {
		put(t, agent, fmt.Sprintf("agent build %d", i))
		p, k, err := AgentInitrd(img, agent)
		if err != nil {
			t.Fatal(err)
		}
		if k == key {
			t.Fatalf("build %d has the first build's key", i)
		}
		paths = append(paths, p)
		time.Sleep(10 * time.Millisecond) // distinct modification times
	}
	left, _ := filepath.Glob(filepath.Join(img.SnapshotDir(), "initrd-agent-*.img"))
	slices.Sort(left)
	want := slices.Clone(paths[len(paths)-agentInitrdsKept:])
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("kept %v, want the %d newest %v", left, agentInitrdsKept, want)
	}
}
