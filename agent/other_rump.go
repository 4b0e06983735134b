//go:build rump

package agent

// rumpOther holds the user=other sockets of a scenario in a second process
// of the rump kernel, with another uid. Its descriptors carry that process
// (kernel_rump.go), so the table's calls on them are made there.
type rumpOther struct {
	*table
	proc int
}

func (o *rumpOther) open(name string, ip6 bool, proto string) error {
	fd, err := socketIn(o.proc, ip6, proto)
	if err != nil {
		return err
	}
	return o.put(name, &sock{fd: fd, ip6: ip6, proto: proto})
}

// fd is the descriptor as the rump kernel numbers it in that process.
func (o *rumpOther) fd(name string) int {
	if n := o.table.fd(name); n >= 0 {
		return n & fdMask
	}
	return -1
}

// broken: the process lives as long as the rump kernel, which dies only
// with the agent.
func (o *rumpOther) broken() bool { return false }

func (o *rumpOther) stop() { o.closeAll() }
