//go:build rump

package agent

// The rump build of the agent: its socket calls reach NetBSD's kernel code
// (uipc_socket.c, in_pcb.c, in6_pcb.c, tcp_*.c, udp_usrreq.c, the loopback
// interface), linked into this process as rump kernel libraries, rather than
// the host's kernel. The libraries are built by lab's package rump, which
// also gives the cgo flags (include and library dirs) this file needs.

/*
#cgo LDFLAGS: -Wl,--no-as-needed -lrumpnet_config -lrumpnet_netinet6 -lrumpnet_netinet -lrumpnet_net -lrumpnet -lrump -lrumpuser -lpthread -ldl
#include <sys/types.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <rump/rump.h>
#include <rump/rump_syscalls.h>
#include <rump/netconfig.h>
#if __has_include(<lab_rump.h>)
#include <lab_rump.h>
#else
#define LAB_RUMP_SOURCE "sources not recorded: libraries not built by lab"
#endif

static const char *lab_rump_source(void) { return LAB_RUMP_SOURCE; }

// lab_console_unbuffered: the rump kernel prints its console (a panic
// message) with putchar; unbuffered, nothing is lost when it aborts.
static void lab_console_unbuffered(void) { setvbuf(stdout, NULL, _IONBF, 0); }
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	// The rump kernel writes its console to the C library's stdout, which is
	// where the agent writes its results: the results move to a copy of
	// descriptor 1, and descriptor 1 becomes the agent's stderr, so a panic
	// message lands beside the agent's own errors and never in a result.
	fd, err := unix.Dup(1)
	if err == nil && unix.Dup3(2, 1, 0) == nil {
		unix.CloseOnExec(fd)
		os.Stdout = os.NewFile(uintptr(fd), "/dev/stdout")
	}
	C.lab_console_unbuffered()
}

// A process of the rump kernel, and the descriptors in it. The agent's
// sockets live in process mainProc; user=other sockets in a second process
// with another uid (newProcess). A descriptor carries its process in the
// bits above procShift, so that every call on it is made in that process;
// the trace shows only the low bits, the number the rump kernel gave.
const (
	mainProc  = 0
	procShift = 20
	fdMask    = 1<<procShift - 1
)

func procOf(fd sysFD) int              { return fd >> procShift }
func kernelFD(fd sysFD) C.int          { return C.int(fd & fdMask) }
func agentFD(proc int, fd C.int) sysFD { return proc<<procShift | int(fd) }

// kernel is the booted rump kernel and the one OS thread that calls it. A
// rump kernel binds its current process (lwp) to the calling host thread, so
// every call is made on that thread (do), which switches to the process the
// call belongs to.
//
// Handing a call to a goroutine locked to its thread costs two thread
// switches each way: tens of microseconds on an idle machine, hundreds on a
// loaded one, against well under a microsecond for the call itself. So the
// agent's whole run is made on the thread (onKernelThread), and its calls,
// made there, run at once.
type kernel struct {
	calls chan func()
	tid   int             // the thread's id
	lwps  []*C.struct_lwp // by process number
	cur   int             // the process the thread is in
}

var theKernel = sync.OnceValue(bootKernel)

// bootKernel boots the rump kernel on its own locked thread. A kernel that
// does not boot leaves the agent nothing to measure: it stops, saying why.
func bootKernel() *kernel {
	k := &kernel{calls: make(chan func())}
	booted := make(chan error)
	go func() {
		runtime.LockOSThread() // for good: this thread is the rump kernel's caller
		k.tid = unix.Gettid()
		err := k.boot()
		booted <- err
		if err != nil {
			return
		}
		for f := range k.calls {
			f()
		}
	}()
	if err := <-booted; err != nil {
		fmt.Fprintln(os.Stderr, "lab-agent: booting the rump kernel:", err)
		os.Exit(1)
	}
	return k
}

// onThread says the caller runs on the kernel's thread: only the kernel's
// goroutine can, as it is locked to it.
func (k *kernel) onThread() bool { return unix.Gettid() == k.tid }

// boot runs rump_init, configures lo0 as a NetBSD machine has it at boot
// (127.0.0.1/8 and ::1; addr1 and addr2 are added as aliases later, as the
// agent does on any BSD) and creates the agent's process.
func (k *kernel) boot() error {
	if e := C.rump_init(); e != 0 {
		return fmt.Errorf("rump_init: %w", netbsdErrno(e))
	}
	lo0 := C.CString("lo0")
	defer C.free(unsafe.Pointer(lo0))
	if err := netconfig4("127.0.0.1", 8); err != nil {
		return err
	}
	// Once lo0 is up it has ::1: in6_if_up (sys/netinet6/in6.c:2093) attaches
	// IPv6, and in6_ifattach gives loopback ::1 (in6_ifattach.c:816). It is
	// added here only if not.
	if e := C.rump_pub_netconfig_ifup(lo0); e != 0 {
		return fmt.Errorf("rump_pub_netconfig_ifup(lo0): %w", netbsdErrno(e))
	}
	loop6 := C.CString("::1")
	defer C.free(unsafe.Pointer(loop6))
	if e := C.rump_pub_netconfig_ipv6_ifaddr(lo0, loop6, 128); e != 0 && netbsdErrno(e).name() != "EEXIST" {
		return fmt.Errorf("rump_pub_netconfig_ipv6_ifaddr(lo0, ::1/128): %w", netbsdErrno(e))
	}
	// A NetBSD kernel picks ephemeral ports sequentially ("bsd",
	// sys/netinet/portalgo.c:91); rump's build picks them at random
	// (-DPORTALGO_INET4_DEFAULT=PORTALGO_RANDOM_START in
	// sys/rump/net/lib/libnetinet/Makefile.inc, likewise for IPv6). Put back
	// NetBSD's default: at random, spread's 300 connections now and then get
	// the port of a connection the server still holds in TIME_WAIT, and
	// NetBSD drops that SYN unless its random sequence number is higher
	// (tcp_input.c:2453), so the connect waits out its deadline.
	for _, name := range []string{"net.inet.ip.anonportalgo.selected", "net.inet6.ip6.anonportalgo.selected"} {
		if err := setSysctlString(name, "bsd"); err != nil {
			return err
		}
	}
	// Loopback output goes to IP's input queue (looutput,
	// sys/net/if_loop.c:323), 256 packets long (IFQ_MAXLEN, net/if.h:563),
	// which a softint drains. A booted kernel runs softints ahead of user
	// threads; a rump kernel's softints are host threads,
	// which a loaded host may not run while the agent sends spread's 300
	// datagrams, so the queue overflowed (ENOBUFS, and the SYNs and ACKs
	// dropped behind it left connects waiting out their deadline). A longer
	// queue lets the softint catch up, as it would on a NetBSD machine.
	for _, name := range []string{"net.inet.ip.ifq.maxlen", "net.inet6.ip6.ifq.maxlen"} {
		if err := setSysctlInt(name, inputQueueLen); err != nil {
			return err
		}
	}
	// The agent's own process: a child of the kernel's init, root as init
	// is, with a descriptor table of its own.
	if e := C.rump_pub_lwproc_rfork(C.RUMP_RFCFDG); e != 0 {
		return fmt.Errorf("rump_pub_lwproc_rfork: %w", netbsdErrno(e))
	}
	k.lwps = append(k.lwps, C.rump_pub_lwproc_curlwp())
	k.cur = mainProc
	return nil
}

// netconfig4 adds ip/bits to lo0 (SIOCAIFADDR: an alias beside the
// addresses it has, as ifconfig lo0 alias does).
func netconfig4(ip string, bits int) error {
	lo0, cip := C.CString("lo0"), C.CString(ip)
	defer C.free(unsafe.Pointer(lo0))
	defer C.free(unsafe.Pointer(cip))
	if e := C.rump_pub_netconfig_ipv4_ifaddr_cidr(lo0, cip, C.int(bits)); e != 0 {
		return fmt.Errorf("rump_pub_netconfig_ipv4_ifaddr_cidr(lo0, %s/%d): %w", ip, bits, netbsdErrno(e))
	}
	return nil
}

// do runs f on the kernel's thread, in process proc, and waits for it.
func do(proc int, f func()) {
	k := theKernel()
	if k.onThread() {
		k.switchTo(proc)
		f()
		return
	}
	done := make(chan struct{})
	k.calls <- func() {
		k.switchTo(proc)
		f()
		close(done)
	}
	<-done
}

// onKernelThread runs the agent's run f on the kernel's thread, where its
// calls need no handoff.
func onKernelThread(f func()) { do(mainProc, f) }

// slowBeside: every call is made on the kernel's one thread, which runs
// the whole run (onKernelThread), so a slow scenario cannot run beside the
// others; it runs in its place in the catalog, in order.
const slowBeside = false

// goSteps runs a scenario's steps at once when the caller is on the
// kernel's thread. Another goroutine would gain nothing there: every call
// is made on the one thread, so a call that ignored its deadline would hold
// up the calls of any goroutine.
func goSteps(f func()) {
	if theKernel().onThread() {
		f()
		return
	}
	go f()
}

// switchTo moves the kernel's thread into process proc (on the thread). A
// process that has ended has no lwp to switch to: a call meant for it is a
// bug, which would otherwise leave the thread with no lwp at all.
func (k *kernel) switchTo(proc int) {
	if proc != k.cur {
		if k.lwps[proc] == nil {
			panic(fmt.Sprintf("a call in rump process %d, which has ended", proc))
		}
		C.rump_pub_lwproc_switch(k.lwps[proc])
		k.cur = proc
	}
}

// processes lists the processes the agent has made in the kernel that have
// not ended, the agent's own first.
func processes() []int {
	var live []int
	do(mainProc, func() {
		for p, l := range theKernel().lwps {
			if l != nil {
				live = append(live, p)
			}
		}
	})
	return live
}

// newProcess forks a process from the agent's with a clean descriptor table
// and gives it uid and gid (setgid first: after setuid it may no longer);
// it returns the process's number and its pid in the rump kernel.
func newProcess(uid, gid int) (proc, pid int, err error) {
	do(mainProc, func() {
		k := theKernel()
		if e := C.rump_pub_lwproc_rfork(C.RUMP_RFCFDG); e != 0 {
			err = fmt.Errorf("rump_pub_lwproc_rfork: %w", netbsdErrno(e))
			return
		}
		k.lwps = append(k.lwps, C.rump_pub_lwproc_curlwp())
		proc = len(k.lwps) - 1
		k.cur = proc
		pid = int(C.rump_sys_getpid())
		if r, e := C.rump_sys_setgid(C.gid_t(gid)); r != 0 {
			err = os.NewSyscallError("setgid", errnoOf(e))
			return
		}
		if r, e := C.rump_sys_setuid(C.uid_t(uid)); r != 0 {
			err = os.NewSyscallError("setuid", errnoOf(e))
		}
	})
	if err != nil && proc != mainProc {
		releaseProcess(proc)
	}
	return proc, pid, err
}

// releaseProcess ends process proc: its only lwp is released
// (rump_pub_lwproc_releaselwp), and the switch back to the agent's process
// frees it, calling fd_free() in its context first (rump_lwproc_switch,
// sys/rump/librump/rumpkern/lwproc.c), which closes every descriptor it
// had, as a NetBSD process's exit does (exit1, sys/kern/kern_exit.c:286).
func releaseProcess(proc int) {
	if proc == mainProc {
		panic("releasing the agent's own rump process")
	}
	do(proc, func() {
		k := theKernel()
		C.rump_pub_lwproc_releaselwp()
		C.rump_pub_lwproc_switch(k.lwps[mainProc])
		k.lwps[proc] = nil
		k.cur = mainProc
	})
}

// sysctl reads (old != nil) or writes (new != nil) the node the kernel names
// by mib, on the kernel's thread; it returns how much it read.
func sysctl(mib []C.int, old []byte, new []byte) (int, error) {
	var oldp, newp unsafe.Pointer
	n := C.size_t(len(old))
	if len(old) > 0 {
		oldp = unsafe.Pointer(&old[0])
	}
	if len(new) > 0 {
		newp = unsafe.Pointer(&new[0])
	}
	r, e := C.rump_sys___sysctl(&mib[0], C.u_int(len(mib)), oldp, &n, newp, C.size_t(len(new)))
	if r != 0 {
		return 0, os.NewSyscallError("sysctl", errnoOf(e))
	}
	return int(n), nil
}

// sysctlMIB resolves a dotted sysctl name to its mib, one level at a time
// with CTL_QUERY, which lists a node's children as struct sysctlnode
// (sys/sys/sysctl.h): the numbers of nodes created at boot (CTL_CREATE) are
// not known in advance. On the kernel's thread.
func sysctlMIB(name string) ([]C.int, error) {
	var mib []C.int
	query := make([]byte, nbSizeofSysctlnode)
	binary.LittleEndian.PutUint32(query[0:4], nbSYSCTL_VERSION) // sysctl_flags
	buf := make([]byte, 128*nbSizeofSysctlnode)
	for _, part := range strings.Split(name, ".") {
		n, err := sysctl(append(mib[:len(mib):len(mib)], nbCTL_QUERY), buf, query)
		if err != nil {
			return nil, fmt.Errorf("listing the children of %q: %w", name, err)
		}
		found := false
		for off := 0; off+nbSizeofSysctlnode <= n; off += nbSizeofSysctlnode {
			node := buf[off : off+nbSizeofSysctlnode]
			// sysctl_num at 4, sysctl_name[SYSCTL_NAMELEN] at 8.
			if nodeName, _, _ := strings.Cut(string(node[8:8+nbSYSCTL_NAMELEN]), "\x00"); nodeName == part {
				mib = append(mib, C.int(int32(binary.LittleEndian.Uint32(node[4:8]))))
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("sysctl %s: no node %q", name, part)
		}
	}
	return mib, nil
}

// sysctlInt reads the int sysctl name in the agent's process.
func sysctlInt(name string) (int, error) {
	var v int
	var err error
	do(mainProc, func() {
		var mib []C.int
		if mib, err = sysctlMIB(name); err != nil {
			return
		}
		buf := make([]byte, 4)
		if _, err = sysctl(mib, buf, nil); err == nil {
			v = int(int32(binary.LittleEndian.Uint32(buf)))
		}
	})
	return v, err
}

// sysctlString reads the string sysctl name in the agent's process.
func sysctlString(name string) (string, error) {
	var s string
	var err error
	do(mainProc, func() {
		var mib []C.int
		if mib, err = sysctlMIB(name); err != nil {
			return
		}
		buf := make([]byte, 256)
		var n int
		if n, err = sysctl(mib, buf, nil); err == nil {
			s = strings.TrimRight(string(buf[:n]), "\x00")
		}
	})
	return s, err
}

// inputQueueLen is the length lab gives IP's input queues (boot).
const inputQueueLen = 4096

// setSysctlInt writes the int sysctl name (on the kernel's thread).
func setSysctlInt(name string, value int) error {
	mib, err := sysctlMIB(name)
	if err == nil {
		b := make([]byte, 4)
		binary.LittleEndian.PutUint32(b, uint32(int32(value)))
		_, err = sysctl(mib, nil, b)
	}
	if err != nil {
		return fmt.Errorf("setting %s=%d: %w", name, value, err)
	}
	return nil
}

// setSysctlString writes the string sysctl name (on the kernel's thread).
func setSysctlString(name, value string) error {
	mib, err := sysctlMIB(name)
	if err == nil {
		_, err = sysctl(mib, nil, append([]byte(value), 0))
	}
	if err != nil {
		return fmt.Errorf("setting %s=%s: %w", name, value, err)
	}
	return nil
}

// rumpSource names the sources the kernel was built from, as package rump
// recorded them in the libraries' include dir.
func rumpSource() string { return C.GoString(C.lab_rump_source()) }

// rumpGetuid is the current process's uid (on the kernel's thread).
func rumpGetuid() int { return int(C.rump_sys_getuid()) }
