//go:build darwin || dragonfly || freebsd

package agent

// ephemeralSysctls: FreeBSD, DragonFly and macOS keep the range FreeBSD's
// way.
var ephemeralSysctls = [2]string{"net.inet.ip.portrange.first", "net.inet.ip.portrange.last"}
