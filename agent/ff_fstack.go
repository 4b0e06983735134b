//go:build fstack

package agent

// F-Stack is FreeBSD 13's kernel network stack as a library. Its state is
// per thread (pcurthread is __thread), and packets on its lo0 move only
// inside ff_run()'s loop, so every ff_* call of the process is made on one
// locked OS thread that runs the loop. Other goroutines hand that thread
// tasks: labFFLoop, which the loop calls once per iteration, runs each
// pending task once; a task that waits for traffic (a handshake, a FIN) is
// run again in each later iteration, with packets processed in between,
// until it is done or its deadline passes.

/*
#include <stdlib.h>
#include <ff_api.h>

extern int labFFLoop(void *arg);

static int lab_ff_loop(void *arg) { return labFFLoop(arg); }
static void lab_ff_run(void) { ff_run(lab_ff_loop, NULL); }
*/
import "C"

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// fstackIni is the F-Stack configuration every run writes to its own temp
// dir with its own DPDK file prefix: no huge pages, one lcore, DPDK's
// net_null device as the only port (lo0 carries all of lab's traffic).
//
//go:embed fstack.ini
var fstackIni string

// fstackEAL are the DPDK EAL arguments F-Stack takes from $FF_EXTRA_EAL (a
// patch lab applies): a null device instead of a NIC, no PCI scan, no shared
// configuration files, no telemetry socket.
const fstackEAL = "--vdev=net_null0 --no-pci --no-shconf --no-telemetry"

// PrefixEnv names the environment variable that sets the DPDK file prefix
// of a run (a fresh one per process otherwise), so whoever starts the agent
// knows which /var/run/dpdk directory to remove.
const PrefixEnv = "LAB_FSTACK_PREFIX"

// confDirEnv names the directory the supervisor made for the run's ini.
const confDirEnv = "LAB_FSTACK_CONFDIR"

// Limits on F-Stack's own progress: how long ff_init may take, and how long
// the loop may go without an iteration before the process counts as hung.
// Start-up is about 1 s here; an iteration is microseconds. (Variables for
// the fault tests.)
var (
	ffInitTimeout = 60 * time.Second
	ffHangTimeout = 10 * time.Second
)

// ffTask is work for the loop thread. run returns true when it is done; a
// task with a deadline is run again in later iterations until then.
type ffTask struct {
	run      func() bool
	deadline time.Time // zero: run once
	done     chan bool // receives whether run finished
}

// ffStack is the process's one F-Stack instance.
type ffStack struct {
	startOnce sync.Once
	startErr  error
	prefix    string
	dir       string // holds the ini
	ownDir    bool   // made here, so removed by stopFStack

	tasks   chan *ffTask
	pending []*ffTask // the loop thread's only
	idle    *time.Timer
	beat    atomic.Int64 // UnixNano of the last iteration
	stopped chan struct{}
	stopReq atomic.Bool
}

var ff = &ffStack{tasks: make(chan *ffTask, 64), stopped: make(chan struct{})}

// start runs ff_init and the loop on a locked thread, once per process.
func (s *ffStack) start() error {
	s.startOnce.Do(func() { s.startErr = s.boot() })
	return s.startErr
}

func (s *ffStack) boot() error {
	s.prefix = os.Getenv(PrefixEnv)
	if s.prefix == "" {
		s.prefix = fmt.Sprintf("lab%d", os.Getpid())
	}
	// The supervisor makes the directory and removes it after the F-Stack
	// process, which may not live to do so; in a test binary the process
	// makes its own and stopFStack removes it.
	dir := os.Getenv(confDirEnv)
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "lab-fstack-"); err != nil {
			return fmt.Errorf("F-Stack: creating its config dir: %w", err)
		}
		s.ownDir = true
	}
	s.dir = dir
	ini := filepath.Join(dir, "f-stack.ini")
	conf := strings.ReplaceAll(fstackIni, "@PREFIX@", s.prefix)
	conf = strings.ReplaceAll(conf, "@LOGDIR@", dir+"/")
	if err := os.WriteFile(ini, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("F-Stack: writing %s: %w", ini, err)
	}
	if err := os.Setenv("FF_EXTRA_EAL", fstackEAL); err != nil {
		return fmt.Errorf("F-Stack: %w", err)
	}
	inited := make(chan struct{})
	go func() {
		runtime.LockOSThread() // for good: F-Stack's state lives on this thread
		args := []string{"lab-agent", "--conf", ini, "--proc-type=primary", "--proc-id=0"}
		argv := make([]*C.char, len(args)+1)
		for i, a := range args {
			argv[i] = C.CString(a) // F-Stack keeps pointers into argv
		}
		// ff_init exits the process when it fails, after DPDK or F-Stack
		// said why on stderr: that is the supervisor's to report.
		C.ff_init(C.int(len(args)), (**C.char)(unsafe.Pointer(&argv[0])))
		s.idle = time.NewTimer(time.Hour)
		s.beat.Store(time.Now().UnixNano())
		close(inited)
		C.lab_ff_run()
		close(s.stopped)
	}()
	select {
	case <-inited:
	case <-time.After(ffInitTimeout):
		return fmt.Errorf("F-Stack: ff_init did not return within %s", ffInitTimeout)
	}
	go s.watch()
	return nil
}

// watch ends the process when the loop stops iterating: every task would
// wait for it forever, and the supervisor reports what was printed.
func (s *ffStack) watch() {
	for {
		select {
		case <-s.stopped:
			return
		case <-time.After(time.Second):
		}
		if last := time.Unix(0, s.beat.Load()); time.Since(last) > ffHangTimeout && !s.stopReq.Load() {
			fmt.Fprintf(os.Stderr, "lab-agent: F-Stack's loop has not run for %s: the F-Stack thread hangs\n", time.Since(last).Round(time.Second))
			os.Exit(3)
		}
	}
}

//export labFFLoop
func labFFLoop(unsafe.Pointer) C.int {
	ff.iterate()
	return 0
}

// iterate is one turn of the loop on the F-Stack thread: take new tasks and
// run every pending one. With nothing pending it waits up to a millisecond
// for a task rather than spinning: no one is waiting for a packet then, and
// F-Stack's timers tick at 10 ms.
func (s *ffStack) iterate() {
	s.beat.Store(time.Now().UnixNano())
	if len(s.pending) == 0 {
		s.idle.Reset(time.Millisecond)
		select {
		case t := <-s.tasks:
			s.pending = append(s.pending, t)
		case <-s.idle.C:
		}
		if !s.idle.Stop() {
			select {
			case <-s.idle.C:
			default:
			}
		}
	}
	for more := true; more; {
		select {
		case t := <-s.tasks:
			s.pending = append(s.pending, t)
		default:
			more = false
		}
	}
	now := time.Now()
	kept := s.pending[:0]
	for _, t := range s.pending {
		switch {
		case t.run():
			t.done <- true
		case t.deadline.IsZero() || now.After(t.deadline):
			t.done <- false
		default:
			kept = append(kept, t)
		}
	}
	for i := len(kept); i < len(s.pending); i++ {
		s.pending[i] = nil
	}
	s.pending = kept
}

// errStackDown is returned once the loop has stopped.
var errStackDown = errors.New("F-Stack's loop is not running")

// submit runs t on the loop thread and says whether it finished.
func (s *ffStack) submit(t *ffTask) (bool, error) {
	if err := s.start(); err != nil {
		return false, err
	}
	t.done = make(chan bool, 1)
	select {
	case s.tasks <- t:
	case <-s.stopped:
		return false, errStackDown
	}
	select {
	case ok := <-t.done:
		return ok, nil
	case <-s.stopped:
		return false, errStackDown
	}
}

// onLoop runs f once on the loop thread.
func onLoop(f func()) error {
	_, err := ff.submit(&ffTask{run: func() bool { f(); return true }})
	return err
}

// pollLoop runs f on the loop thread in every iteration until it returns
// true (then pollLoop does) or deadline passes (then false); f runs at
// least once.
func pollLoop(deadline time.Time, f func() bool) (bool, error) {
	if deadline.IsZero() {
		deadline = time.Now()
	}
	return ff.submit(&ffTask{run: f, deadline: deadline})
}

// stopFStack ends the loop (DPDK cleans up after it) and removes what the
// run left: its config dir and DPDK's runtime dir. It is for tests, which
// run F-Stack inside the test binary; the agent's supervisor cleans up
// after the F-Stack process instead, also when it crashed.
func stopFStack() {
	if ff.startErr == nil && ff.dir != "" {
		ff.stopReq.Store(true)
		select {
		case ff.tasks <- &ffTask{run: func() bool { C.ff_stop_run(); return true }, done: make(chan bool, 1)}:
			select {
			case <-ff.stopped:
			case <-time.After(5 * time.Second):
			}
		case <-ff.stopped:
		}
	}
	if ff.ownDir {
		os.RemoveAll(ff.dir)
	}
	if ff.prefix != "" {
		RemoveDPDKState(ff.prefix)
	}
}
