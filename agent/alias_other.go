//go:build unix && !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd && !illumos && !solaris

package agent

func aliasArgs(ip string) []string { return []string{"ifconfig", "lo0", "alias", ip} }
