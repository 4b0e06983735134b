//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package agent

// ifconfig is named by path: under sudo, PATH is secure_path or whatever the
// host's sudoers says, and ifconfig lives in /sbin on every BSD and macOS.
var aliasTool = []string{"/sbin/ifconfig"}

// alias and unalias use the 4.4BSD keywords every BSD ifconfig and macOS's
// still have ("alias", "-alias": notealias in sbin/ifconfig/ifconfig.c).
func aliasArgs(ip string) []string   { return []string{"lo0", "inet", ip + "/32", "alias"} }
func unaliasArgs(ip string) []string { return []string{"lo0", "inet", ip, "-alias"} }
