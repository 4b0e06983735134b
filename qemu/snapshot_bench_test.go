//go:build linux

package qemu

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"lab/image"
)

// BenchmarkSnapshotStart measures one microVM from Start to its first command done over SSH,
// booted cold (Config.Cold: the same machine, no snapshot) and restored from a snapshot, one
// after the other in each iteration, so both see the same load; it reports the medians and
// their ratio (target: restored at most 0.25x cold, and under 1 s on an idle host), and the
// host's load average at the start and the end.
//
//	go test ./qemu -run XXX -bench SnapshotStart -benchtime 5x
func BenchmarkSnapshotStart(b *testing.B) {
	for _, name := range []string{"linux-5.10", "linux-6.1", "linux-6.12"} {
		b.Run(name, func(b *testing.B) {
			img := imageNamed(b, name)
			cfg := snapshotConfig(img, b.TempDir())
			cfg.Log = nil
			// The first start saves the snapshot.
			if vm, err := Start(context.Background(), cfg); err != nil {
				b.Fatal(err)
			} else {
				vm.Stop(context.Background())
			}
			load := loadAvg()
			var cold, restored, restoredStart []time.Duration
			b.ResetTimer()
			for range b.N {
				c := cfg
				c.Cold = true
				d, _ := startToSSH(b, c)
				cold = append(cold, d)
				d, s := startToSSH(b, cfg)
				restored = append(restored, d)
				restoredStart = append(restoredStart, s)
			}
			b.StopTimer()
			mc, mr := median(cold), median(restored)
			b.ReportMetric(mc.Seconds(), "cold-s")
			b.ReportMetric(mr.Seconds(), "restored-s")
			b.ReportMetric(median(restoredStart).Seconds(), "restored-Start-s")
			b.ReportMetric(float64(mr)/float64(mc), "restored/cold")
			b.Logf("%s: start to SSH, cold %v, restored %v (Start itself %v): %.2fx; load average %s at the start, %s at the end",
				name, round(cold), round(restored), round(restoredStart), float64(mr)/float64(mc), load, loadAvg())
		})
	}
}

// startToSSH starts a guest, connects and runs a command; it returns the time from Start to
// the command's end and the time Start itself took, and stops the guest.
func startToSSH(b *testing.B, cfg Config) (total, start time.Duration) {
	b.Helper()
	t0 := time.Now()
	vm, err := Start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Stop(context.Background())
	start = time.Since(t0)
	if cfg.Cold == vm.Restored() {
		b.Fatalf("Cold %v but Restored %v", cfg.Cold, vm.Restored())
	}
	c := dialGuest(b, imageFor(b, cfg), vm)
	guestRun(b, c, "true")
	total = time.Since(t0)
	c.Close()
	return total, start
}

// imageFor is the image whose kernel cfg boots.
func imageFor(b *testing.B, cfg Config) *image.Image {
	builtMu.Lock()
	defer builtMu.Unlock()
	for _, img := range built {
		if img.Kernel == cfg.Kernel {
			return img
		}
	}
	b.Fatalf("no image boots %s", cfg.Kernel)
	return nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func round(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, v := range d {
		out[i] = v.Round(10 * time.Millisecond)
	}
	return out
}

// loadAvg is the host's 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
