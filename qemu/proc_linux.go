package qemu

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts QEMU in its own process group, so that a Ctrl-C in lab's terminal
// reaches lab (which then stops its guests in order and keeps their consoles) instead of
// killing every QEMU at once behind lab's back; and asks the kernel to SIGKILL QEMU if lab
// dies without stopping it, so that no guest outlives lab. A detached QEMU gets its own
// session instead and no Pdeathsig: it is meant to outlive lab.
func sysProcAttr(detach bool) *syscall.SysProcAttr {
	if detach {
		return &syscall.SysProcAttr{Setsid: true}
	}
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// listeningOn reports whether process pid holds a listening TCP socket on port. Looking in
// /proc instead of connecting tells QEMU's socket apart from one another process may have
// bound to the same port in the meantime, and sends nothing to the guest.
func listeningOn(pid, port int) bool {
	inodes := listeningInodes(fmt.Sprintf("/proc/%d/net/tcp", pid), port)
	if len(inodes) == 0 {
		return false
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		link, err := os.Readlink(fdDir + "/" + e.Name())
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
			return true
		}
	}
	return false
}

// listeningInodes returns the socket inodes of the TCP sockets in LISTEN state on port, read
// from a /proc/net/tcp-format file.
func listeningInodes(path string, port int) map[string]bool {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const stateListen = "0A"
	inodes := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != stateListen {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
			inodes[fields[9]] = true
		}
	}
	return inodes
}
