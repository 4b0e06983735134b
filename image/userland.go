package image

import (
	"fmt"
	"path"
)

// userlandPackages are the packages whose programs the guest runs. apt resolves their
// dependencies, which brings in the shared libraries those programs need.
var userlandPackages = []string{"busybox-static", "openssh-server", "openssh-sftp-server"}

// sshPrograms are the OpenSSH programs a guest runs. sshd re-executes helpers that exist only in
// newer versions: sshd-session since OpenSSH 9.8, sshd-auth since 10.0 (trixie).
var sshPrograms = []struct {
	path     string
	optional bool
}{
	{"/usr/sbin/sshd", false},
	{"/usr/lib/openssh/sshd-session", true},
	{"/usr/lib/openssh/sshd-auth", true},
	{"/usr/lib/openssh/sftp-server", false},
}

// dlopenedLibs are loaded by glibc at run time, so no DT_NEEDED names them. Only glibc before 2.34
// (bullseye) has libnss_files as a separate library; it is what reads /etc/passwd.
var dlopenedLibs = []string{"libnss_files.so.2"}

// addUserland copies busybox, OpenSSH's server programs and their libraries from the unpacked
// packages into the tree.
func addUserland(t *tree, r rootfs, arch string) error {
	busybox, err := firstExisting(r, "/bin/busybox", "/usr/bin/busybox")
	if err != nil {
		return fmt.Errorf("finding busybox in busybox-static: %w", err)
	}
	if err := t.copyFile("/usr/bin/busybox", busybox, 0o755); err != nil {
		return err
	}
	// /bin/sh runs /init; the other applets are linked by busybox --install at boot.
	t.symlink("/usr/bin/sh", "busybox")

	for _, p := range sshPrograms {
		src, err := r.resolve(p.path)
		if err != nil {
			if p.optional {
				continue
			}
			return fmt.Errorf("finding %s: %w", p.path, err)
		}
		if err := addELF(t, r, arch, p.path, src, 0o755); err != nil {
			return err
		}
	}
	for _, soname := range dlopenedLibs {
		lib, err := findLib(r, arch, soname)
		if err != nil {
			continue
		}
		dest := path.Join("/usr/lib", multiarchTriplet[arch], soname)
		if err := addELF(t, r, arch, dest, lib, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// firstExisting returns the host path of the first of paths that exists in the rootfs.
func firstExisting(r rootfs, paths ...string) (string, error) {
	var err error
	for _, p := range paths {
		var src string
		if src, err = r.resolve(p); err == nil {
			return src, nil
		}
	}
	return "", err
}
