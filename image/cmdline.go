package image

// KernelCmdline is the kernel command line lab's microVMs boot with.
// mitigations=off spares the emulated CPU the speculative-execution
// workarounds, which cost TCG dearly and have nothing to do with socket
// semantics; panic=-1 makes a guest that panics exit QEMU at once.
const KernelCmdline = "console=ttyS0 panic=-1 quiet mitigations=off"
