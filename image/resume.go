package image

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// ResumeCommand is the shell command to run as root over SSH right after connecting to a
// guest restored from a snapshot (qemu.VM.Restored), before anything else runs there.
//
// It sets the guest's clock, which stands where it stood when the snapshot was taken: first
// to now's whole second, at once, then, in the background, exactly to the next whole second
// when that comes (busybox date takes whole seconds; usleep waits for the boundary), so the
// clock ends up behind by the command's latency only, a few ms. The SSH session does not wait
// for the second step.
//
// It also writes 32 random bytes from the host into the kernel's entropy pool: kernels
// without a vmgenid driver (Debian's 5.10 and 6.1 cloud kernels) do not reseed when restored,
// and this makes their next reseed, at most a second or two of guest uptime away (early in
// boot the kernel reseeds every max(1 s, uptime/2)), differ from every other guest's. Until
// then guests restored from one snapshot draw the same random numbers.
func ResumeCommand(now time.Time) string {
	var seed [32]byte
	rand.Read(seed[:])
	sec := now.Unix()
	wait := time.Unix(sec+1, 0).Sub(now)
	return fmt.Sprintf("echo %s >/dev/urandom; date -u -s @%d >/dev/null && (usleep %d; date -u -s @%d) </dev/null >/dev/null 2>&1 &",
		hex.EncodeToString(seed[:]), sec, wait.Microseconds(), sec+1)
}
