//go:build illumos || solaris

package agent

func aliasArgs(ip string) []string { return []string{"ifconfig", "lo0", "addif", ip + "/32", "up"} }
