package agent

// ephemeralSysctls: OpenBSD picks ports from its "hi" range.
var ephemeralSysctls = [2]string{"net.inet.ip.porthifirst", "net.inet.ip.porthilast"}
