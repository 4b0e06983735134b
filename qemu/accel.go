package qemu

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"lab/rundir"
)

//go:generate sh -c "as --64 -o probe/amd64.o probe/amd64.S && objcopy -O binary -j .text probe/amd64.o probe/amd64.bin && rm probe/amd64.o"

// probeAMD64 is the x86_64 probe payload; probe/amd64.S says what it does and why.
//
//go:embed probe/amd64.bin
var probeAMD64 []byte

// probeMarker is what the payload prints when it has finished its work.
var probeMarker = []byte("LABPROBEOK")

// probeTimeout bounds the probe boot. A working KVM runs the payload in milliseconds and
// QEMU starts in well under a second even on a loaded host; a KVM that cannot boot Linux
// in useful time does not finish it in 30 s. Three seconds wasted once per process is the
// price of a wrong "no" on a very slow host, where TCG still works.
const probeTimeout = 3 * time.Second

// probeSem lets one probe run at a time, so that guests started in parallel share one
// answer instead of booting one probe each; a channel rather than a mutex so waiting
// honours ctx.
var probeSem = make(chan struct{}, 1)

// probed caches the answer per architecture for the life of the process. Guarded by probeSem.
var probed = map[string]string{}

// ProbeAccel returns "kvm" if a short probe boot under KVM works for arch on this host, and
// "tcg" otherwise. The answer is cached for the life of the process; an answer cut short
// by ctx is "tcg" and is not cached.
func ProbeAccel(ctx context.Context, arch string) string {
	return probeAccel(ctx, arch, "", hclog.NewNullLogger())
}

// probeAccel is ProbeAccel that also keeps its answer in cacheFile (see Config.AccelCache)
// and logs it.
func probeAccel(ctx context.Context, arch, cacheFile string, log hclog.Logger) string {
	a, info, err := lookupArch(arch)
	if err != nil {
		return "tcg"
	}
	select {
	case probeSem <- struct{}{}:
		defer func() { <-probeSem }()
	case <-ctx.Done():
		return "tcg"
	}
	if accel, ok := probed[a]; ok {
		return accel
	}
	host := ""
	if cacheFile != "" {
		host = hostIdentity(info.binary)
	}
	if rec, ok := readAccelCache(cacheFile)[a]; ok && rec.validFor(host, time.Now()) {
		log.Info("chose accelerator", "arch", a, "accel", rec.Accel, "why", rec.Why, "probed", rec.At.Format(time.TimeOnly), "from", cacheFile)
		probed[a] = rec.Accel
		return rec.Accel
	}
	accel, why, final := probeKVM(ctx, a, info, "host")
	log.Info("chose accelerator", "arch", a, "accel", accel, "why", why)
	if final {
		probed[a] = accel
		if err := writeAccelCache(cacheFile, a, accelRecord{Host: host, Accel: accel, Why: why, At: time.Now()}); err != nil {
			log.Debug("keeping the accelerator probe's answer", "error", err)
		}
	}
	return accel
}

// accelCacheTTL bounds how long a probe's answer is reused by later processes. The
// answer holds while the host runs the same kernel and QEMU, except that a probe that
// timed out on a loaded host may be a wrong "no": an hour keeps that mistake short
// while sparing each lab command of a session its 3 s probe.
const accelCacheTTL = time.Hour

// accelRecord is one architecture's probe answer as kept in Config.AccelCache.
type accelRecord struct {
	// Host is hostIdentity: a reboot, a reloaded KVM module, a /dev/kvm whose mode
	// changed, or another QEMU asks again.
	Host  string    `json:"host"`
	Accel string    `json:"accel"`
	Why   string    `json:"why"`
	At    time.Time `json:"at"`
}

func (r accelRecord) validFor(host string, now time.Time) bool {
	return host != "" && r.Host == host && (r.Accel == "kvm" || r.Accel == "tcg") &&
		!r.At.After(now) && now.Sub(r.At) < accelCacheTTL
}

// hostIdentity names this boot of the host, its /dev/kvm (a reloaded KVM module makes a
// new node; a chmod changes its mode) and the QEMU binary that would run; "" when the
// boot or the binary cannot be known, and then no answer is reused.
func hostIdentity(binary string) string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	kvm := "no /dev/kvm"
	if k, err := os.Stat("/dev/kvm"); err == nil {
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		kvm = fmt.Sprintf("/dev/kvm %v %s opens %v", k.Mode(), k.ModTime().UTC().Format(time.RFC3339Nano), err == nil)
	}
	return fmt.Sprintf("boot %s, %s, %s %d bytes %s", strings.TrimSpace(string(boot)), kvm, path, fi.Size(), fi.ModTime().UTC().Format(time.RFC3339Nano))
}

// readAccelCache returns the answers kept in file, by architecture; none when there is
// no file or it cannot be read (it is only a cache).
func readAccelCache(file string) map[string]accelRecord {
	recs := map[string]accelRecord{}
	if file == "" {
		return recs
	}
	b, err := os.ReadFile(file)
	if err != nil || json.Unmarshal(b, &recs) != nil {
		return map[string]accelRecord{}
	}
	return recs
}

// writeAccelCache keeps rec as arch's answer in file, atomically
// (rundir.WriteFile): processes probing at once each leave a whole file.
func writeAccelCache(file, arch string, rec accelRecord) error {
	if file == "" || rec.Host == "" {
		return nil
	}
	recs := readAccelCache(file)
	recs[arch] = rec
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return rundir.WriteFile(file, append(b, '\n'))
}

// probeKVM decides between KVM and TCG for arch by booting the probe payload with the
// given -cpu model ("" for QEMU's default). It says why, for the log, and whether the
// answer holds for the rest of the process (not when ctx ended the probe).
func probeKVM(ctx context.Context, arch string, info archInfo, cpu string) (accel, why string, final bool) {
	if arch != runtime.GOARCH {
		return "tcg", "guest arch differs from host " + runtime.GOARCH, true
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", "no usable /dev/kvm: " + err.Error(), true
	}
	f.Close()
	payload := probePayload(arch)
	if payload == nil {
		// KVM that opens is not KVM that works (see probe/amd64.S), so without a probe
		// for this arch the safe choice is the one that always works.
		return "tcg", "no probe payload for " + arch, true
	}
	binary, err := exec.LookPath(info.binary)
	if err != nil {
		return "tcg", err.Error(), true
	}

	tmp, err := os.CreateTemp("", "lab-probe-*.bin")
	if err != nil {
		return "tcg", "writing probe payload: " + err.Error(), false
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(payload)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "tcg", "writing probe payload: " + err.Error(), false
	}

	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	out := &markerWriter{marker: probeMarker, seen: make(chan struct{})}
	stderr := &limitedBuffer{max: 4 << 10}
	// microvm has no firmware to run, so QEMU reaches the payload at once. ProbeAccel asks
	// for -cpu host because that is what a KVM guest gets later.
	args := []string{"-accel", "kvm", "-M", "microvm", "-m", "128"}
	if cpu != "" {
		args = append(args, "-cpu", cpu)
	}
	args = append(args, "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", tmp.Name())
	cmd := exec.Command(binary, args...)
	cmd.Stdout = out
	cmd.Stderr = stderr
	cmd.SysProcAttr = sysProcAttr(false)
	cmd.WaitDelay = time.Second
	exited := make(chan struct{})
	var waitErr error
	start := time.Now()
	if err := startLocked(cmd, func(err error) { waitErr = err; close(exited) }); err != nil {
		return "tcg", "starting probe: " + err.Error(), true
	}
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	select {
	case <-out.seen:
		return "kvm", "probe boot finished in " + time.Since(start).Round(time.Millisecond).String(), true
	case <-exited:
		msg := "probe exited early"
		if waitErr != nil {
			msg += ": " + waitErr.Error()
		}
		if s := bytes.TrimSpace([]byte(stderr.String())); len(s) > 0 {
			msg += ": " + string(s)
		}
		return "tcg", msg, true
	case <-pctx.Done():
		if ctx.Err() != nil {
			return "tcg", "probe interrupted: " + ctx.Err().Error(), false
		}
		return "tcg", "KVM probe boot did not finish within " + probeTimeout.String(), true
	}
}

func probePayload(arch string) []byte {
	switch arch {
	case "amd64":
		return probeAMD64
	}
	return nil
}

// markerWriter closes seen once marker has appeared in what was written to it.
type markerWriter struct {
	marker []byte
	buf    []byte
	seen   chan struct{}
	done   bool
}

func (m *markerWriter) Write(p []byte) (int, error) {
	if !m.done {
		m.buf = append(m.buf, p...)
		if bytes.Contains(m.buf, m.marker) {
			m.done = true
			close(m.seen)
		} else if len(m.buf) > 4096 {
			m.buf = append(m.buf[:0], m.buf[len(m.buf)-len(m.marker):]...)
		}
	}
	return len(p), nil
}
