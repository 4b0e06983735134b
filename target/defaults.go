package target

import "time"

// Defaults of the providers, in one place.
const (
	// microVMMemoryMB is a microVM's RAM: a kernel, busybox and sshd in an
	// initramfs boot and run the catalog in it with room to spare.
	microVMMemoryMB = 256
	// diskMemoryMB is a cloud image's RAM: a full distribution with
	// cloud-init, for which a microVM's 256 MiB is too little.
	diskMemoryMB = 1024
	// microVMBootTimeout bounds a microVM's boot and SSH readiness: 4-6 s
	// alone under TCG here, 6-9 s with four guests on two cores.
	microVMBootTimeout = 60 * time.Second
	// diskBootTimeout bounds a cloud image's first boot to its seed's
	// ready line (a full init and cloud-init under TCG) where cloudinit has
	// no figure for its OS.
	diskBootTimeout = 180 * time.Second
	// diskSSHAfterReady bounds connecting to a cloud image once its seed
	// said sshd serves the pinned key: the boot is over by then.
	diskSSHAfterReady = 60 * time.Second
	// sshDialTimeout bounds connecting to a host that is already up.
	sshDialTimeout = 30 * time.Second
	// vagrantDialTimeout bounds lab's own SSH connection to a Vagrant
	// machine: Vagrant has already logged in when `vagrant up` returns, so
	// this only covers a slow handshake under emulation.
	vagrantDialTimeout = 2 * time.Minute
	// vagrantUpTimeout bounds `vagrant up`: a box import, a boot under TCG
	// and Vagrant's key insertion. A Windows guest under TCG can take most
	// of it; boot_timeout raises it.
	vagrantUpTimeout = 20 * time.Minute
)
