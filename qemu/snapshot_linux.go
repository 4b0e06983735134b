package qemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"lab/internal/flock"
	"lab/rundir"
)

const snapshotsSupported = true

// errSnapshotLoad means QEMU refused a snapshot or failed loading it: the snapshot is bad,
// unlike a QEMU that was killed or a Start that was cancelled.
var errSnapshotLoad = errors.New("snapshot failed to load")

// errSnapshotDamaged means a snapshot's checksums are wrong; it wraps errSnapshotLoad.
var errSnapshotDamaged = fmt.Errorf("%w: damaged", errSnapshotLoad)

// startSnapshotted is Start for a Config with Snapshot: a restore when a snapshot fits, else a
// cold boot that saves one.
func startSnapshotted(ctx context.Context, r *runner) (*VM, error) {
	key, err := r.snapshotKey()
	if err != nil {
		return nil, err
	}
	s := &snapshotStore{root: r.cfg.Snapshot, key: key, log: r.log}
	s.dir = filepath.Join(s.root, key.id())
	if r.cfg.Cold {
		return r.cold(ctx, nil)
	}
	bad := "" // the ID of a snapshot that failed to load
	for range maxRestores {
		snap, why, err := s.open(ctx, bad, false)
		if err != nil {
			return nil, err
		}
		if snap == nil {
			if why != "" {
				r.log.Warn("snapshot not usable; booting cold and replacing it", "snapshot", s.dir, "why", why)
				r.note("snapshot %s not usable (%s); booting cold", s.dir, why)
			}
			unlock, err := s.lock(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil, err
				}
				r.log.Warn("another start of this machine holds its snapshot too long; booting cold without saving", "snapshot", s.dir, "error", err)
				return r.cold(ctx, nil)
			}
			// Another Start may have saved one while this one waited.
			if snap, _, _ = s.open(ctx, bad, true); snap == nil {
				return r.cold(ctx, &capture{store: s, unlock: unlock})
			}
			unlock()
		}
		vm, err := r.restore(ctx, snap)
		snap.close()
		if err == nil {
			return vm, nil
		}
		if !errors.Is(err, errSnapshotLoad) {
			return nil, err
		}
		r.log.Warn("snapshot failed to load; booting cold and replacing it", "snapshot", s.dir, "error", err)
		r.note("snapshot %s failed to load (%v); booting cold", s.dir, err)
		bad = snap.meta.ID
	}
	return r.cold(ctx, nil)
}

// note writes a line of lab's own to the console file, so that a reader of the console sees
// which QEMU wrote what.
func (r *runner) note(format string, args ...any) {
	if r.console != nil {
		fmt.Fprintf(r.console, "lab: "+format+"\n", args...)
	}
}

// snapshotKey computes the key of the machine the runner's Config asks for.
func (r *runner) snapshotKey() (snapshotKey, error) {
	// One version cache for all images: beside their snapshot dirs.
	q, err := qemuIdentity(r.binary, filepath.Join(filepath.Dir(r.cfg.Snapshot), versionCacheFile))
	if err != nil {
		return snapshotKey{}, err
	}
	k := snapshotKey{
		Format: snapshotFormat,
		Image:  r.cfg.SnapshotKey,
		QEMU:   q,
		Args:   r.cfg.machineArgs(r.info, r.accel),
	}
	for _, p := range []string{r.cfg.Kernel, r.cfg.Initrd} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return k, fmt.Errorf("snapshot key: %w", err)
		}
		abs, _ := filepath.Abs(p)
		k.Files = append(k.Files, fileID{Path: abs, Size: fi.Size(), ModTime: fi.ModTime().UTC()})
	}
	if r.accel == "kvm" {
		k.Host = kvmHost()
	}
	return k, nil
}

// kvmHost names what a KVM guest sees of the host: the CPU's model and flags, and the
// kernel, which decides which of them KVM passes on.
func kvmHost() string {
	release, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	first, _, _ := bytes.Cut(cpuinfo, []byte("\n\n"))
	var model, flags string
	for _, line := range strings.Split(string(first), "\n") {
		name, value, _ := strings.Cut(line, ":")
		switch strings.TrimSpace(name) {
		case "model name":
			model = strings.TrimSpace(value)
		case "flags":
			flags = strings.TrimSpace(value)
		}
	}
	return fmt.Sprintf("%s; %s; %s", strings.TrimSpace(string(release)), model, flags)
}

var (
	versionsMu sync.Mutex
	versions   = map[string]string{} // binaryFileID -> first line of --version
)

// qemuIdentity returns the binary's identity and version. `qemu --version` takes 0.05 to
// 0.2 s here, a fifth of a restore on a loaded host, so its answer is kept per binary file
// (path, inode, size, times: a new package or a rebuild is another file) in this process
// and in cacheFile.
func qemuIdentity(binary, cacheFile string) (qemuID, error) {
	fi, err := os.Stat(binary)
	if err != nil {
		return qemuID{}, fmt.Errorf("snapshot key: %w", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	var ino uint64
	var ctime int64
	if st != nil {
		ino, ctime = st.Ino, st.Ctim.Nano()
	}
	fileKey := fmt.Sprintf("%s ino %d size %d mtime %d ctime %d", binary, ino, fi.Size(), fi.ModTime().UnixNano(), ctime)
	id := qemuID{Path: binary, Size: fi.Size(), ModTime: fi.ModTime().UTC()}

	versionsMu.Lock()
	defer versionsMu.Unlock()
	if v, ok := versions[fileKey]; ok {
		id.Version = v
		return id, nil
	}
	cached := map[string]string{}
	if b, err := os.ReadFile(cacheFile); err == nil {
		json.Unmarshal(b, &cached)
	}
	if v, ok := cached[fileKey]; ok && v != "" {
		versions[fileKey] = v
		id.Version = v
		return id, nil
	}
	out, err := exec.Command(binary, "--version").Output()
	if err != nil {
		return id, fmt.Errorf("snapshot key: %s --version: %w", binary, err)
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	versions[fileKey] = v
	id.Version = v
	cached[fileKey] = v
	if b, err := json.MarshalIndent(cached, "", "  "); err == nil {
		if os.MkdirAll(filepath.Dir(cacheFile), 0o755) == nil {
			rundir.WriteFile(cacheFile, append(b, '\n')) // only a cache: a failure costs a run of --version
		}
	}
	return id, nil
}

// snapshotStore is the directory of one machine's snapshot and its lock.
//
// Layout, in Config.Snapshot: <id>/ holds snapshot.json, ram and state; <id>.lock is held
// shared while a Start opens the snapshot and exclusively while one boots cold to save it,
// so that Starts of one machine wait for one another instead of saving twice, and a
// snapshot is swapped in whole (the new directory is built as .<id>.tmp-*, the old one
// renamed to .<id>.old-* and removed) while no one opens it. A restored guest keeps its
// files open, so removing or replacing them never disturbs it.
type snapshotStore struct {
	root string // Config.Snapshot
	dir  string // root/<id>
	key  snapshotKey
	log  hclog.Logger
}

func (s *snapshotStore) lockPath() string { return s.dir + ".lock" }

// lock takes the snapshot's lock exclusively, waiting at most lockWait.
func (s *snapshotStore) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(s.root, 0o755); err != nil {
		return nil, fmt.Errorf("snapshot dir: %w", err)
	}
	lctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	return flock.Lock(lctx, s.lockPath())
}

// openSnapshot is a snapshot whose files are open and checked.
type openSnapshot struct {
	dir        string
	meta       snapshotMeta
	ram, state *os.File
}

func (o *openSnapshot) close() {
	o.ram.Close()
	o.state.Close()
}

// open opens and checks the snapshot. It returns nil and why when there is a snapshot that
// does not fit or is damaged, nil and "" when there is none (or it is bad, which was said
// already), and an error only when ctx ended. locked says the caller holds the lock.
func (s *snapshotStore) open(ctx context.Context, bad string, locked bool) (*openSnapshot, string, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, snapshotMetaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if !locked {
		lctx, cancel := context.WithTimeout(ctx, lockWait)
		unlock, err := flock.LockShared(lctx, s.lockPath())
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, "", err
			}
			return nil, "", nil // held too long by a cold boot: the caller boots cold too
		}
		defer unlock()
		if b, err = os.ReadFile(filepath.Join(s.dir, snapshotMetaFile)); errors.Is(err, fs.ErrNotExist) {
			return nil, "", nil
		}
	}
	if err != nil {
		return nil, err.Error(), nil
	}
	var meta snapshotMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Sprintf("reading %s: %v", snapshotMetaFile, err), nil
	}
	if meta.ID == bad {
		return nil, "", nil
	}
	if why := meta.Key.mismatch(s.key); why != "" {
		return nil, why, nil
	}
	snap := &openSnapshot{dir: s.dir, meta: meta}
	if snap.ram, err = os.Open(filepath.Join(s.dir, snapshotRAMFile)); err != nil {
		return nil, err.Error(), nil
	}
	if snap.state, err = os.Open(filepath.Join(s.dir, snapshotStateFile)); err != nil {
		snap.ram.Close()
		return nil, err.Error(), nil
	}
	if why := snap.checkSizes(); why != "" {
		snap.close()
		return nil, why, nil
	}
	return snap, "", nil
}

// checkSizes compares the files' sizes with the meta's; restore compares their checksums
// while QEMU starts.
func (o *openSnapshot) checkSizes() string {
	for _, f := range []struct {
		name string
		file *os.File
		want int64
	}{{snapshotStateFile, o.state, o.meta.State.Size}, {snapshotRAMFile, o.ram, o.meta.RAM.Size}} {
		fi, err := f.file.Stat()
		if err != nil {
			return err.Error()
		}
		if fi.Size() != f.want {
			return fmt.Sprintf("%s is %d bytes, want %d", f.name, fi.Size(), f.want)
		}
	}
	return ""
}

// check compares the files' checksums with the meta's: QEMU would load damaged RAM without a
// word, and the guest would then fail in any way at all. It takes 20 to 100 ms for 100 MB of
// RAM here, which restore spends while QEMU starts.
func (o *openSnapshot) check() string {
	for _, f := range []struct {
		name string
		file *os.File
		want blobSum
		ram  bool
	}{{snapshotStateFile, o.state, o.meta.State, false}, {snapshotRAMFile, o.ram, o.meta.RAM, true}} {
		var got blobSum
		var err error
		if f.ram {
			got, err = scanRAM(f.file, f.want.Size, nil)
		} else {
			got, err = sumFile(f.file)
		}
		if err != nil {
			return fmt.Sprintf("reading %s: %v", f.name, err)
		}
		if got.CRC32C != f.want.CRC32C {
			return fmt.Sprintf("%s is damaged: checksum %08x, want %08x", f.name, got.CRC32C, f.want.CRC32C)
		}
	}
	if _, err := o.state.Seek(0, io.SeekStart); err != nil {
		return err.Error()
	}
	return ""
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const pageSize = 4096

// sumFile is the size and checksum of f's contents.
func sumFile(f *os.File) (blobSum, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return blobSum{}, err
	}
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, f)
	return blobSum{Size: n, CRC32C: h.Sum32()}, err
}

// scanRAM checksums the non-zero pages of f (size bytes, maybe sparse), visiting only its
// data (SEEK_DATA), and with dst set writes them there at the same offsets, leaving holes
// for the zeros: a 256 MB guest's RAM had 110 MB of non-zero pages at its ready marker.
func scanRAM(f *os.File, size int64, dst *os.File) (blobSum, error) {
	sum := blobSum{Size: size}
	h := crc32.New(castagnoli)
	buf := make([]byte, 1<<20)
	zero := make([]byte, pageSize)
	var offBytes [8]byte
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only holes from off on
		}
		if err != nil {
			return sum, os.NewSyscallError("lseek", err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return sum, os.NewSyscallError("lseek", err)
		}
		data -= data % pageSize
		for pos := data; pos < hole; {
			chunk := buf[:min(int64(len(buf)), hole-pos)]
			n, err := f.ReadAt(chunk, pos)
			if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
				return sum, err
			}
			chunk = chunk[:n]
			runStart := -1 // start in chunk of a run of non-zero pages to write
			flush := func(end int) error {
				if dst != nil && runStart >= 0 {
					if _, err := dst.WriteAt(chunk[runStart:end], pos+int64(runStart)); err != nil {
						return err
					}
				}
				runStart = -1
				return nil
			}
			for i := 0; i < len(chunk); i += pageSize {
				page := chunk[i:min(i+pageSize, len(chunk))]
				if bytes.Equal(page, zero[:len(page)]) {
					if err := flush(i); err != nil {
						return sum, err
					}
					continue
				}
				if runStart < 0 {
					runStart = i
				}
				binary.LittleEndian.PutUint64(offBytes[:], uint64(pos)+uint64(i))
				h.Write(offBytes[:])
				h.Write(page)
				sum.Data += int64(len(page))
			}
			if err := flush(len(chunk)); err != nil {
				return sum, err
			}
			pos += int64(n)
		}
		off = hole
	}
	sum.CRC32C = h.Sum32()
	return sum, nil
}

// capture is what a cold boot needs to save a snapshot: where, and the lock to release once
// it is saved or given up.
type capture struct {
	store  *snapshotStore
	unlock func()
}

// ramFile returns an unnamed file on /dev/shm (or the temp dir) for a cold boot's RAM. It
// never has a name, so nothing is left behind whoever dies: the memory is freed once QEMU
// and lab have both closed it.
func ramFile() (*os.File, error) {
	for _, dir := range []string{"/dev/shm", os.TempDir()} {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err == nil {
			return os.NewFile(uintptr(fd), dir+"/(guest RAM)"), nil
		}
		if dir == os.TempDir() {
			return nil, fmt.Errorf("creating the guest's RAM file in %s: %w", dir, os.NewSyscallError("open O_TMPFILE", err))
		}
	}
	panic("unreachable")
}

// cold boots the guest with its RAM in an unnamed file and, with c, saves a snapshot when the
// ready marker shows, then lets the guest go on. It returns the guest even when saving fails:
// the snapshot is only a saving for the next start.
func (r *runner) cold(ctx context.Context, c *capture) (*VM, error) {
	if c != nil {
		defer c.unlock()
	}
	ram, err := ramFile()
	if err != nil {
		return nil, err
	}
	defer ram.Close()
	ours, theirs, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	q, err := newQMP(ours)
	if err != nil {
		return nil, err
	}
	defer q.close()
	watch := ""
	if c != nil {
		watch = r.cfg.ReadyMarker
		r.log.Info("booting cold to save a snapshot", "snapshot", c.store.dir)
	}
	start := time.Now()
	vm, err := r.run(ctx, snapshotArgs(r.cfg.memoryMB(), "on", false), []*os.File{theirs, ram}, watch)
	if err != nil {
		return nil, err
	}
	theirs.Close()
	if c == nil {
		return vm, nil
	}
	if err := q.handshake(ctx); err != nil {
		return r.giveUp(ctx, vm, c, fmt.Errorf("talking to QEMU: %w", err))
	}
	if err := vm.waitReady(ctx, r.cfg.ReadyMarker); err != nil {
		return r.giveUp(ctx, vm, c, err)
	}
	boot := time.Since(start)
	if err := c.store.save(ctx, q, ram, r.cfg.memoryMB(), boot); err != nil {
		return r.giveUp(ctx, vm, c, err)
	}
	vm.snapshot = c.store.dir
	return vm, nil
}

// giveUp ends a cold boot's attempt to save a snapshot: the guest is returned as it is, or
// stopped when ctx ended.
func (r *runner) giveUp(ctx context.Context, vm *VM, c *capture, err error) (*VM, error) {
	if ctx.Err() != nil {
		vm.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("waiting to save a snapshot: %w", ctx.Err())
	}
	r.log.Warn("no snapshot saved", "snapshot", c.store.dir, "error", err)
	return vm, nil
}

// waitReady waits for the watched console line, at most readyTimeout.
func (vm *VM) waitReady(ctx context.Context, marker string) error {
	timeout := time.NewTimer(readyTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	seen := vm.seen
	var poll func() bool
	if vm.detach {
		// A detached QEMU writes its console straight to the file.
		seen = nil
		name := vm.console.file.(*os.File).Name()
		poll = func() bool {
			b, _ := os.ReadFile(name)
			return int64(len(b)) > vm.consoleStart && bytes.Contains(b[vm.consoleStart:], []byte(marker))
		}
	}
	for {
		if poll != nil && poll() {
			return nil
		}
		select {
		case <-seen:
			return nil
		case <-vm.exited:
			return fmt.Errorf("QEMU exited (%v) before the guest printed %q", vm.exitErr, marker)
		case <-timeout.C:
			return fmt.Errorf("the guest did not print %q within %v", marker, readyTimeout)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// save stops the guest, saves its device state and RAM into a new snapshot directory, lets
// the guest go on and swaps the new snapshot in. The caller holds the lock.
func (s *snapshotStore) save(ctx context.Context, q *qmp, ram *os.File, memMB int, boot time.Duration) (err error) {
	s.removeDebris()
	tmp, err := os.MkdirTemp(s.root, "."+filepath.Base(s.dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("creating the snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	state, err := os.OpenFile(filepath.Join(tmp, snapshotStateFile), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating the snapshot: %w", err)
	}
	defer state.Close()
	dst, err := os.OpenFile(filepath.Join(tmp, snapshotRAMFile), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating the snapshot: %w", err)
	}
	defer dst.Close()

	paused := time.Now()
	if _, err := q.execute(ctx, "stop", nil); err != nil {
		return err
	}
	// Whatever happens from here on, the guest goes on.
	defer func() {
		if _, cerr := q.execute(context.WithoutCancel(ctx), "cont", nil); cerr != nil && err == nil {
			err = fmt.Errorf("letting the guest continue: %w", cerr)
		}
	}()
	meta := snapshotMeta{Key: s.key, Created: time.Now().UTC(), Boot: duration(boot)}
	if err := migrateOut(ctx, q, state); err != nil {
		return err
	}
	size := int64(memMB) << 20
	if meta.RAM, err = scanRAM(ram, size, dst); err != nil {
		return fmt.Errorf("copying the guest's RAM: %w", err)
	}
	if err := dst.Truncate(size); err != nil {
		return fmt.Errorf("copying the guest's RAM: %w", err)
	}
	meta.Pause = duration(time.Since(paused))
	if meta.State, err = sumFile(state); err != nil {
		return fmt.Errorf("reading the saved state: %w", err)
	}
	var id [8]byte
	rand.Read(id[:])
	meta.ID = hex.EncodeToString(id[:])
	b, _ := json.MarshalIndent(meta, "", "  ")
	// No fsync: the checksums catch files a crash left incomplete, and the snapshot is
	// then replaced.
	if err := os.WriteFile(filepath.Join(tmp, snapshotMetaFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the snapshot: %w", err)
	}
	if err := s.swapIn(tmp); err != nil {
		return err
	}
	s.log.Info("snapshot saved", "snapshot", s.dir, "boot", time.Duration(meta.Boot).Round(time.Millisecond),
		"pause", time.Duration(meta.Pause).Round(time.Millisecond), "ram_data_mb", meta.RAM.Data>>20, "state_kb", meta.State.Size>>10)
	s.removeStale()
	return nil
}

// migrateOut saves the stopped guest's device state into f. x-ignore-shared leaves out the
// RAM, which lives in a shared file and is copied by lab.
func migrateOut(ctx context.Context, q *qmp, f *os.File) error {
	caps := map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}
	if _, err := q.execute(ctx, "migrate-set-capabilities", caps); err != nil {
		return err
	}
	if _, err := q.execute(ctx, "getfd", map[string]string{"fdname": "snapshot"}, f); err != nil {
		return err
	}
	if _, err := q.execute(ctx, "migrate", map[string]string{"uri": "fd:snapshot"}); err != nil {
		return err
	}
	for {
		status, why, err := q.migrationStatus(ctx)
		if err != nil {
			return err
		}
		switch status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("saving the device state: migration %s: %s", status, why)
		}
		time.Sleep(pollInterval)
	}
}

// swapIn makes the directory tmp the snapshot, replacing the one there.
func (s *snapshotStore) swapIn(tmp string) error {
	old := ""
	if _, err := os.Stat(s.dir); err == nil {
		old = strings.Replace(tmp, ".tmp-", ".old-", 1)
		if err := os.Rename(s.dir, old); err != nil {
			return fmt.Errorf("replacing the snapshot: %w", err)
		}
	}
	if err := os.Rename(tmp, s.dir); err != nil {
		return fmt.Errorf("saving the snapshot: %w", err)
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

// removeDebris removes what saves of this snapshot that were killed left. The caller holds
// the lock, so none is in use.
func (s *snapshotStore) removeDebris() {
	for _, pattern := range []string{".tmp-*", ".old-*"} {
		matches, _ := filepath.Glob(filepath.Join(s.root, "."+filepath.Base(s.dir)+pattern))
		for _, m := range matches {
			os.RemoveAll(m)
		}
	}
}

// removeStale removes the other snapshots in root that can never load again: made by another
// version or build of the same QEMU path, or from a kernel or initrd that is gone (an old
// agent build's initramfs). Snapshots of other machines (say, another memory size) stay. One
// that someone holds is left for next time.
func (s *snapshotStore) removeStale() {
	entries, _ := os.ReadDir(s.root)
	for _, e := range entries {
		dir := filepath.Join(s.root, e.Name())
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || dir == s.dir {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, snapshotMetaFile))
		if err != nil {
			continue
		}
		var m snapshotMeta
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		why := ""
		if m.Key.QEMU.Path == s.key.QEMU.Path && m.Key.QEMU != s.key.QEMU {
			why = "made by another build of QEMU: " + m.Key.QEMU.Version
		}
		for _, f := range m.Key.Files {
			if _, err := os.Stat(f.Path); errors.Is(err, fs.ErrNotExist) {
				why = f.Path + " is gone" // an old agent's initramfs (image.AgentInitrd)
			}
		}
		if why == "" {
			continue
		}
		unlock, ok, err := flock.TryLock(dir + ".lock")
		if err != nil || !ok {
			continue
		}
		os.RemoveAll(dir)
		unlock()
		s.log.Info("removed a snapshot that can no longer load", "snapshot", dir, "why", why)
	}
}

// restoreHook, when set by a test, is called with QEMU's PID once a restoring QEMU runs and
// before its state is loaded: the fault tests kill it there.
var restoreHook func(pid int)

// restore starts QEMU on the snapshot: its RAM file mapped copy-on-write, its device state
// loaded, and the guest running. errSnapshotLoad wraps the failures that are the snapshot's.
func (r *runner) restore(ctx context.Context, snap *openSnapshot) (*VM, error) {
	ours, theirs, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	q, err := newQMP(ours)
	if err != nil {
		return nil, err
	}
	defer q.close()
	r.note("restoring snapshot %s (saved %s)", snap.dir, snap.meta.Created.Format(time.RFC3339))
	start := time.Now()
	// The checksums are compared while QEMU starts, which does not read the RAM before
	// its state is loaded; QEMU gets the state file only after.
	checked := make(chan string, 1)
	go func() { checked <- snap.check() }()
	vm, err := r.run(ctx, snapshotArgs(r.cfg.memoryMB(), "off", true), []*os.File{theirs, snap.ram}, "")
	why := <-checked
	r.log.Debug("snapshot checked", "snapshot", snap.dir, "why", why, "after", time.Since(start).Round(time.Millisecond))
	if why != "" {
		if err == nil {
			vm.Stop(context.WithoutCancel(ctx))
		}
		return nil, fmt.Errorf("%w: %s", errSnapshotDamaged, why)
	}
	if err != nil {
		// QEMU may refuse the RAM file before it listens; a QEMU killed then is no fault
		// of the snapshot's.
		var ee *exec.ExitError
		if errors.As(err, &ee) && !killed(ee) {
			return nil, fmt.Errorf("%w: %v", errSnapshotLoad, err)
		}
		return nil, err
	}
	theirs.Close()
	if restoreHook != nil {
		restoreHook(vm.PID())
	}
	listening := time.Since(start)
	if err := migrateIn(ctx, q, snap.state); err != nil {
		return nil, r.failedRestore(ctx, vm, err)
	}
	vm.restored, vm.snapshot = true, snap.dir
	r.log.Info("guest restored", "snapshot", snap.dir, "took", time.Since(start).Round(time.Millisecond),
		"qemu_listening", listening.Round(time.Millisecond), "loaded", (time.Since(start) - listening).Round(time.Millisecond))
	return vm, nil
}

// migrateIn loads the device state from f into a QEMU started with -incoming defer and makes
// sure the guest runs.
func migrateIn(ctx context.Context, q *qmp, f *os.File) error {
	if err := q.handshake(ctx); err != nil {
		return err
	}
	caps := map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}
	if _, err := q.execute(ctx, "migrate-set-capabilities", caps); err != nil {
		return err
	}
	if _, err := q.execute(ctx, "getfd", map[string]string{"fdname": "snapshot"}, f); err != nil {
		return err
	}
	if _, err := q.execute(ctx, "migrate-incoming", map[string]string{"uri": "fd:snapshot"}); err != nil {
		return fmt.Errorf("%w: %v", errSnapshotLoad, err)
	}
	for {
		status, why, err := q.migrationStatus(ctx)
		if err != nil {
			return err
		}
		if status == "failed" {
			return fmt.Errorf("%w: %s", errSnapshotLoad, why)
		}
		if status == "completed" {
			break
		}
		time.Sleep(pollInterval)
	}
	// Without -S QEMU runs the guest once it is loaded; ask, and continue it if not.
	for {
		state, err := q.runState(ctx)
		if err != nil {
			return err
		}
		switch state {
		case "running":
			return nil
		case "inmigrate", "finish-migrate":
			time.Sleep(pollInterval)
		default:
			if _, err := q.execute(ctx, "cont", nil); err != nil {
				return err
			}
		}
	}
}

// failedRestore stops a QEMU whose restore failed and says whose fault it was: a QEMU that
// exited with an error status refused the snapshot (it prints why and exits 1 when loading
// fails); one killed by a signal, or a cancelled ctx, is not the snapshot's doing.
func (r *runner) failedRestore(ctx context.Context, vm *VM, err error) error {
	// A QMP error may come before QEMU's exit; give it a moment to tell.
	select {
	case <-vm.exited:
	case <-time.After(time.Second):
	}
	exited := false
	select {
	case <-vm.exited:
		exited = true
	default:
	}
	vm.Stop(context.WithoutCancel(ctx))
	if ctx.Err() != nil {
		return fmt.Errorf("restoring the snapshot: %w", ctx.Err())
	}
	stderr := strings.TrimSpace(vm.stderr.String())
	if exited {
		var ee *exec.ExitError
		if errors.As(vm.exitErr, &ee) && killed(ee) {
			return fmt.Errorf("QEMU was killed (%v) while restoring the snapshot: %w", ee, err)
		}
		return fmt.Errorf("%w: QEMU exited (%v): %s", errSnapshotLoad, vm.exitErr, stderr)
	}
	if errors.Is(err, errSnapshotLoad) {
		return fmt.Errorf("%w (%s)", err, stderr)
	}
	return fmt.Errorf("restoring the snapshot: %w", err)
}

// killed reports whether a signal ended the process.
func killed(ee *exec.ExitError) bool {
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}
