package target

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestKeptAliveDown checks that a kept guest is recognised by the marker on
// its command line, never by its PID alone, and that Down ends it and
// forgets it. A shell whose $0 is the marker stands in for QEMU.
func TestKeptAliveDown(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("kept guests are found through /proc")
	}
	const marker = "lab-kept test-target /nonexistent"
	cmd := exec.Command("/bin/sh", "-c", "sleep 60", marker)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })

	cache := t.TempDir()
	k := &Kept{Target: "test-target", PID: cmd.Process.Pid, Marker: marker, SSHAddr: "127.0.0.1:2222",
		HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDMQ0rUPP5wlXY8tR6uRbNJ2WLVfKzd1nNqHvSB+hm7D",
		file:    KeptFile(cache, "test-target"), KnownHosts: filepath.Join(cache, "kept", "test-target.known_hosts")}
	if err := k.save(); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadKept(cache, "test-target")
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Alive() {
		t.Fatal("the kept process is not recognised as alive")
	}
	impostor := *loaded
	impostor.Marker = "lab-kept other-target /nonexistent"
	if impostor.Alive() {
		t.Fatal("a process without the marker was taken for the kept guest")
	}
	if err := impostor.Down(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		t.Fatal("Down killed a process that is not the kept guest")
	default:
	}

	if err := loaded.save(); err != nil { // the impostor's Down removed the state
		t.Fatal(err)
	}
	if err := loaded.Down(); err != nil {
		t.Fatal(err)
	}
	<-exited
	if _, err := os.Stat(KeptFile(cache, "test-target")); !os.IsNotExist(err) {
		t.Errorf("Down left the state file: %v", err)
	}
	if ks, _ := ListKept(cache); len(ks) != 0 {
		t.Errorf("ListKept after Down: %v", ks)
	}
}
