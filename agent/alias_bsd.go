//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package agent

func aliasArgs(ip string) []string { return []string{"ifconfig", "lo0", "alias", ip + "/32"} }
