package agent

// ephemeralSysctls: NetBSD names the range after anonymous ports.
var ephemeralSysctls = [2]string{"net.inet.ip.anonportmin", "net.inet.ip.anonportmax"}
