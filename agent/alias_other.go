//go:build unix && !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd && !illumos && !solaris

package agent

var aliasTool = []string{"/sbin/ifconfig", "/usr/sbin/ifconfig"}

func aliasArgs(ip string) []string   { return []string{"lo0", "alias", ip} }
func unaliasArgs(ip string) []string { return []string{"lo0", "inet", ip, "-alias"} }
