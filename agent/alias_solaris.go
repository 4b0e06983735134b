//go:build illumos || solaris

package agent

var aliasTool = []string{"/usr/sbin/ifconfig", "/sbin/ifconfig"}

// addif makes a logical interface lo0:N for the address; removeif finds it by
// the address and removes it.
func aliasArgs(ip string) []string   { return []string{"lo0", "addif", ip + "/32", "up"} }
func unaliasArgs(ip string) []string { return []string{"lo0", "removeif", ip} }
