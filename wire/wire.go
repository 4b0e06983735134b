// Package wire defines what lab's orchestrator and its agent say to each other:
// the scenarios the agent runs, sent as one JSON document on its standard
// input, and the results it streams back, one JSON line per finished scenario,
// so that a crash loses nothing already measured.
//
// The package has no dependencies beyond the standard library because the
// agent is a small static binary built for every target OS.
package wire

import "time"

// Outcomes a step or a scenario can have besides an errno name.
const (
	OK          = "ok"
	Unsupported = "unsupported"  // the OS does not define the option
	SetupFailed = "setup-failed" // a step before the last one failed
	Timeout     = "timeout"      // the scenario outlived its deadline
	Skipped     = "skipped"      // the scenario could not run here (Reason says why)
	Error       = "error"        // the agent itself failed (Reason says why)

	// Outcomes of a spread step.
	SpreadEven   = "even"   // every socket got at least half its fair share
	SpreadSingle = "single" // one socket got everything
	SpreadUneven = "uneven" // anything else
	SpreadNone   = "none"   // nothing arrived

	// Outcomes of a recv step.
	RecvData = "data" // bytes arrived and the stream did not end within the wait
	RecvEOF  = "eof"  // the peer closed gracefully (FIN), after any data

	// Outcomes of local and peer steps besides an address class.
	LocalUnbound = "unbound" // the socket has no local address yet
	PeerNone     = "none"    // the socket is not connected
)

// Then joins the results a scenario's outcome is made of when some of its
// steps are marked try: each try step's result in order, then the last
// step's ("EADDRINUSE then ok").
const Then = " then "

// Verbs of a step.
const (
	VerbSocket   = "socket"
	VerbSetopt   = "setopt"
	VerbBind     = "bind"
	VerbListen   = "listen"
	VerbConnect  = "connect"
	VerbAccept   = "accept"
	VerbClose    = "close"
	VerbTimewait = "timewait"
	VerbSpread   = "spread"
	VerbSend     = "send"     // send on a connected socket
	VerbSendto   = "sendto"   // one datagram to an address
	VerbRecv     = "recv"     // read until EOF, an error or a pause
	VerbLocal    = "local"    // classify the socket's local address
	VerbPeer     = "peer"     // classify the socket's peer address
	VerbExit     = "exit"     // a helper process exits without closing its sockets
	VerbKill     = "kill"     // a helper process is killed by a signal
	VerbSleep    = "sleep"    // wait
	VerbWaitfree = "waitfree" // measure how long until an endpoint can be bound again
)

// Request is what the orchestrator sends to the agent.
type Request struct {
	Scenarios []Scenario `json:"scenarios"`
	// Addrs overrides the agent's choice of symbolic addresses (addr1, addr2).
	Addrs map[string]string `json:"addrs,omitempty"`
	// OtherUser names the unprivileged user for user=other sockets; empty lets
	// the agent choose ("labother" where it exists, else "nobody").
	OtherUser string `json:"other_user,omitempty"`
	// Output says how the agent writes its lines; the zero value writes
	// each, plain, as it ends.
	Output Output `json:"output,omitzero"`
}

// Output shapes the agent's output for a connection where each write and
// each byte cost (an SSH channel: every write a packet the remote sshd
// reads, encrypts and sends). A request may itself be gzipped; the agent
// knows it by gzip's magic bytes.
type Output struct {
	// HoldMillis is how long the agent may hold a line before writing it,
	// so that the lines of fast scenarios leave together: a crash of the
	// agent loses at most what it measured in that time.
	HoldMillis Millis `json:"hold_ms,omitempty"`
	// Gzip makes the output one gzip stream, flushed wherever lines leave,
	// so that every line written can be read at once; a stream cut short
	// yields every line flushed before the cut.
	Gzip bool `json:"gzip,omitempty"`
}

// Scenario is one parsed scenario, ready to run.
type Scenario struct {
	ID      string `json:"id"`
	Proto   string `json:"proto"` // "tcp" or "udp": every socket's, unless a socket step names its own
	Steps   []Step `json:"steps"`
	Timeout Millis `json:"timeout_ms"`
	// Slow marks a scenario that takes seconds or minutes (a TIME_WAIT
	// length). The agent runs slow scenarios beside the others rather than
	// one after another.
	Slow bool `json:"slow,omitempty"`
}

// Step is one socket call of a scenario.
type Step struct {
	Text    string   `json:"text"` // as written, for traces
	Verb    string   `json:"verb"`
	Sock    string   `json:"sock,omitempty"`
	Options []Option `json:"options,omitempty"`
	IP6     bool     `json:"ip6,omitempty"`
	User    string   `json:"user,omitempty"` // "" or "other"
	Addr    string   `json:"addr,omitempty"` // symbolic (any, addr1, ...) or a literal IP
	Port    string   `json:"port,omitempty"` // P, Q or a number
	N       int      `json:"n,omitempty"`
	Socks   []string `json:"socks,omitempty"`
	NewName string   `json:"new_name,omitempty"`
	// Proto is a socket step's own protocol, "" for the scenario's.
	Proto string `json:"proto,omitempty"`
	// Proc names the helper process of the agent's user that holds the
	// socket ("" for the agent itself); with User "other" it names one of
	// that user's processes. Exit and kill steps name the process here.
	Proc string `json:"proc,omitempty"`
	// Try marks a step whose failure does not end the scenario: its result
	// becomes part of the scenario's outcome.
	Try bool `json:"try,omitempty"`
	// Signal is a kill step's signal (SIGKILL, SIGTERM, SIGSEGV).
	Signal string `json:"signal,omitempty"`
	// Wait is a sleep step's duration.
	Wait Millis `json:"wait_ms,omitempty"`
}

// Option is a socket option and the value to set it to.
//
// SO_LINGER is a struct linger: Value is l_linger in seconds with l_onoff 1,
// or Off is true for l_onoff 0 (SO_LINGER=off).
type Option struct {
	Name  string `json:"name"`
	Value int    `json:"value"`
	Off   bool   `json:"off,omitempty"`
}

// SetOption is one setsockopt call as the OS saw it.
type SetOption struct {
	Level string `json:"level"` // SOL_SOCKET or IPPROTO_IPV6
	Name  string `json:"name"`
	Value int    `json:"value"`
	Off   bool   `json:"off,omitempty"` // SO_LINGER with l_onoff 0
}

// Millis is a duration carried as whole milliseconds.
type Millis int64

// Duration converts m to a time.Duration.
func (m Millis) Duration() time.Duration { return time.Duration(m) * time.Millisecond }

// Line is one line of the agent's output. Exactly one of its pointers is set.
type Line struct {
	Env      *Env      `json:"env,omitempty"`
	Result   *Result   `json:"result,omitempty"`
	Progress *Progress `json:"progress,omitempty"`
	Done     *Done     `json:"done,omitempty"`
}

// Env describes the machine the agent runs on; it is the agent's first line.
type Env struct {
	OS            string            `json:"os"`     // GOOS
	Family        string            `json:"family"` // bsd, linux, windows, solaris
	KernelRelease string            `json:"kernel_release"`
	KernelVersion string            `json:"kernel_version,omitempty"`
	Arch          string            `json:"arch"`
	Hostname      string            `json:"hostname,omitempty"`
	UID           int               `json:"uid"`
	Addrs         map[string]string `json:"addrs"` // symbolic name -> concrete address
	AddrsNote     string            `json:"addrs_note,omitempty"`
	OtherUser     string            `json:"other_user,omitempty"` // empty when user=other cannot run
	OtherUserNote string            `json:"other_user_note,omitempty"`
	// EphemeralPorts is the range the OS picks ports from for port 0 and
	// an unbound connect ("32768-60999"), read from the OS; empty when it
	// could not be read, and EphemeralNote says why.
	EphemeralPorts string `json:"ephemeral_ports,omitempty"`
	EphemeralNote  string `json:"ephemeral_note,omitempty"`
	AgentVersion   string `json:"agent_version"`
}

// Result is the measured outcome of one scenario.
type Result struct {
	ID      string            `json:"id"`
	Outcome string            `json:"outcome"`
	Reason  string            `json:"reason,omitempty"` // for setup-failed, skipped, timeout, error
	Steps   []StepResult      `json:"steps"`
	Ports   map[string]int    `json:"ports,omitempty"` // P, Q -> concrete ports
	Addrs   map[string]string `json:"addrs,omitempty"` // symbolic addresses this scenario used
	Micros  int64             `json:"micros"`
}

// StepResult is what one step did.
type StepResult struct {
	Text   string `json:"text"`
	Call   string `json:"call,omitempty"` // the call as the OS saw it, e.g. bind(127.0.0.2:40123)
	Result string `json:"result"`
	Errno  int    `json:"errno,omitempty"` // the raw number behind Result
	Local  string `json:"local,omitempty"` // the socket's local address after the step
	// The call's arguments as the OS saw them, for traces and reproducers
	// (absent from older agents): the socket's family ("inet", "inet6"),
	// the concrete address and port of a bind or connect, the options set
	// with their level, and what the call returned (socket and accept: the new
	// descriptor, or SOCKET handle on Windows; other calls 0; -1 on failure).
	Family  string      `json:"family,omitempty"`
	Addr    string      `json:"addr,omitempty"`
	Port    int         `json:"port,omitempty"`
	Options []SetOption `json:"options,omitempty"`
	Ret     *int        `json:"ret,omitempty"`
	Counts  []int       `json:"counts,omitempty"`
	Sent    int         `json:"sent,omitempty"`
	// Bytes is how many bytes a send step queued or a recv step read.
	Bytes int `json:"bytes,omitempty"`
	// Waited is how long a waitfree step waited until the endpoint could be
	// bound again (or until it gave up).
	Waited Millis `json:"waited_ms,omitempty"`
	Micros int64  `json:"micros"`
}

// Progress reports that the agent started a scenario (for live views).
type Progress struct {
	Index int    `json:"index"`
	Total int    `json:"total"`
	ID    string `json:"id"`
}

// Done is the agent's last line.
type Done struct {
	Scenarios int   `json:"scenarios"`
	Micros    int64 `json:"micros"`
}

// Family returns the OS family the answer groups an OS (a GOOS) into: bsd,
// linux, windows or solaris; other systems are their own family.
func Family(goos string) string {
	switch goos {
	case "freebsd", "openbsd", "netbsd", "dragonfly", "darwin", "ios":
		return "bsd"
	case "linux", "android":
		return "linux"
	case "illumos", "solaris":
		return "solaris"
	}
	return goos
}
