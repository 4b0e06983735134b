package scenario_test

import (
	"errors"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"lab/scenario"
	"lab/wire"
)

// problems parses src as t.yaml and returns the Problems it must fail with.
func problems(t *testing.T, src string) scenario.Problems {
	t.Helper()
	scs, err := scenario.Parse("t.yaml", []byte(src))
	if err == nil {
		t.Fatalf("Parse succeeded with %d scenarios; want an error", len(scs))
	}
	var ps scenario.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse error is %T (%v); want scenario.Problems", err, err)
	}
	if len(ps) == 0 {
		t.Fatal("Parse returned an empty Problems")
	}
	return ps
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		pos  string // file:line:col the problem is reported at
		msg  string // a phrase of its message
	}{
		{
			name: "unknown verb",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - frob A
`,
			pos: "t.yaml:6:9",
			msg: `unknown verb "frob"`,
		},
		{
			name: "matrix too large",
			src: `scenarios:
  - id: a/${a}${b}${c}${d}${e}
    proto: tcp
    matrix: {a: [0,1,2,3,4,5,6,7,8,9], b: [0,1,2,3,4,5,6,7,8,9], c: [0,1,2,3,4,5,6,7,8,9], d: [0,1,2,3,4,5,6,7,8,9], e: [0,1,2,3,4,5,6,7,8,9]}
    steps:
      - socket A
`,
			pos: "t.yaml:4:13",
			msg: "100000 combinations, more than the 10000 one matrix may make",
		},
		{
			name: "unknown option",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A SO_REUSEADR
`,
			pos: "t.yaml:5:18",
			msg: `unknown option "SO_REUSEADR"`,
		},
		{
			name: "option with a bad value",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - setopt A IPV6_V6ONLY=yes
`,
			pos: "t.yaml:6:18",
			msg: `option IPV6_V6ONLY: "yes" is not a valid value; expected 0 or 1`,
		},
		{
			name: "IPV6_V6ONLY is 0 or 1 in setopt",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A ip6
      - setopt A IPV6_V6ONLY=2
`,
			pos: "t.yaml:6:18",
			msg: `option IPV6_V6ONLY: "2" is not a valid value; expected 0 or 1`,
		},
		{
			name: "IPV6_V6ONLY is 0 or 1 in socket",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A ip6 IPV6_V6ONLY=10
`,
			pos: "t.yaml:5:22",
			msg: `option IPV6_V6ONLY: "10" is not a valid value; expected 0 or 1`,
		},
		{
			name: "IPV6_V6ONLY is 0 or 1 in timewait",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - timewait any6:P SO_REUSEADDR IPV6_V6ONLY=-1
`,
			pos: "t.yaml:5:38",
			msg: `option IPV6_V6ONLY: "-1" is not a valid value; expected 0 or 1`,
		},
		{
			name: "IPV6_V6ONLY from a matrix is 0 or 1",
			src: `scenarios:
  - id: a/${v}
    matrix: {v: ["0", "1", "2"]}
    proto: tcp
    steps:
      - socket A ip6
      - setopt A IPV6_V6ONLY=${v}
`,
			pos: "t.yaml:7:9",
			msg: `option IPV6_V6ONLY: "2" is not a valid value; expected 0 or 1`,
		},
		{
			name: "option value beyond setsockopt's int",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A SO_REUSEADDR=4294967297
`,
			pos: "t.yaml:5:18",
			msg: `option SO_REUSEADDR: "4294967297" is not a non-negative integer value (0 to 2147483647)`,
		},
		{
			name: "unknown address",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - bind A addr3:P
`,
			pos: "t.yaml:6:16",
			msg: `unknown address "addr3"`,
		},
		{
			name: "unbracketed IPv6 literal",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A ip6
      - bind A ::1:P
`,
			pos: "t.yaml:6:16",
			msg: `unknown address "::1"`,
		},
		{
			name: "socket used before socket",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - bind B any:P
`,
			pos: "t.yaml:6:14",
			msg: `socket "B" is used before a "socket B" step creates it`,
		},
		{
			name: "socket used after close",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - close A
      - bind A any:P
`,
			pos: "t.yaml:7:14",
			msg: `socket "A" is used before`,
		},
		{
			name: "socket created twice",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - socket A
`,
			pos: "t.yaml:6:16",
			msg: "socket A already exists",
		},
		{
			name: "duplicate id names the first definition",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A]
  - id: a
    proto: tcp
    steps: [socket A]
`,
			pos: "t.yaml:5:9",
			msg: `duplicate id "a" (first defined at t.yaml:2:9)`,
		},
		{
			name: "bad proto",
			src: `scenarios:
  - id: a
    proto: sctp
    steps: [socket A]
`,
			pos: "t.yaml:3:12",
			msg: `field "proto": "sctp" is not a protocol`,
		},
		{
			name: "missing proto",
			src: `scenarios:
  - id: a
    steps: [socket A]
`,
			pos: "t.yaml:2:5",
			msg: `scenario "a" has no "proto"`,
		},
		{
			name: "listen in a udp scenario",
			src: `scenarios:
  - id: a
    proto: udp
    steps:
      - socket A
      - bind A any:P
      - listen A
`,
			pos: "t.yaml:7:9",
			msg: "listen is for tcp sockets; socket A is udp",
		},
		{
			name: "accept in a udp scenario",
			src: `scenarios:
  - id: a
    proto: udp
    steps:
      - socket A
      - accept A B
`,
			pos: "t.yaml:6:9",
			msg: "accept is for tcp sockets; socket A is udp",
		},
		{
			name: "port out of range",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - bind A any:70000
`,
			pos: "t.yaml:6:20",
			msg: `port "70000": expected P, Q, 0 or a number`,
		},
		{
			name: "port not a number",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - connect A loop:R
`,
			pos: "t.yaml:6:24",
			msg: `port "R"`,
		},
		{
			name: "endpoint without port",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - bind A addr1
`,
			pos: "t.yaml:6:16",
			msg: `"addr1" is not ADDR:PORT`,
		},
		{
			name: "wrong number of arguments",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - bind A
`,
			pos: "t.yaml:6:9",
			msg: `wrong number of arguments; expected "bind S ADDR:PORT"`,
		},
		{
			name: "spread count",
			src: `scenarios:
  - id: a
    proto: udp
    steps:
      - socket A
      - spread 0 A
`,
			pos: "t.yaml:6:16",
			msg: `spread: "0" is not a count`,
		},
		{
			name: "bad user",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A user=root
`,
			pos: "t.yaml:5:18",
			msg: `"user=root": the only user is "other"`,
		},
		{
			name: "empty steps",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: []
`,
			pos: "t.yaml:4:12",
			msg: "a scenario needs at least one step",
		},
		{
			name: "missing id",
			src: `scenarios:
  - proto: tcp
    steps: [socket A]
`,
			pos: "t.yaml:2:5",
			msg: `scenario has no "id"`,
		},
		{
			name: "invalid id",
			src: `scenarios:
  - id: "a b"
    proto: tcp
    steps: [socket A]
`,
			pos: "t.yaml:2:9",
			msg: `field "id": "a b" is not a valid id`,
		},
		{
			name: "unknown field",
			src: `scenarios:
  - id: a
    proto: tcp
    stesp: [socket A]
`,
			pos: "t.yaml:4:5",
			msg: `unknown field "stesp"; expected one of id, title`,
		},
		{
			name: "unknown top-level field",
			src: `scenario:
  - id: a
`,
			pos: "t.yaml:1:1",
			msg: `unknown top-level field "scenario"`,
		},
		{
			name: "bad timeout",
			src: `scenarios:
  - id: a
    proto: tcp
    timeout: -2s
    steps: [socket A]
`,
			pos: "t.yaml:4:14",
			msg: `field "timeout": "-2s" is not a duration of at least 1ms`,
		},
		{
			name: "sub-millisecond timeout",
			src: `scenarios:
  - id: a
    proto: tcp
    timeout: 500us
    steps: [socket A]
`,
			pos: "t.yaml:4:14",
			msg: `"500us" is not a duration of at least 1ms`,
		},
		{
			name: "field given twice",
			src: `scenarios:
  - id: a
    proto: tcp
    proto: udp
    steps: [socket A]
`,
			pos: "t.yaml:4:5",
			msg: `field "proto" given twice (first at t.yaml:3:5)`,
		},
		{
			name: "empty matrix",
			src: `scenarios:
  - id: a/${x}
    matrix: []
    proto: tcp
    steps: [socket A]
`,
			pos: "t.yaml:3:13",
			msg: `matrix: empty`,
		},
		{
			name: "spread names an unknown socket at its own column",
			src: `scenarios:
  - id: a
    proto: udp
    steps:
      - socket A
      - spread 3 A,Bee
`,
			pos: "t.yaml:6:20",
			msg: `socket "Bee" is used before`,
		},
		{
			name: "substituted step points at the step",
			src: `scenarios:
  - id: a/${s}
    matrix: [{s: LongName}]
    proto: tcp
    steps:
      - socket A
      - "bind A nowhere${s}:P"
`,
			pos: "t.yaml:7:9",
			msg: `unknown address "nowhereLongName"`,
		},
		{
			name: "matrix variable not defined in a step",
			src: `scenarios:
  - id: a${x}
    matrix: [{x: "1"}]
    proto: tcp
    steps:
      - socket A
      - "bind A ${y}:P"
`,
			pos: "t.yaml:7:9",
			msg: `${y} is not a variable of this scenario's matrix`,
		},
		{
			name: "matrix variable not defined in title",
			src: `scenarios:
  - id: a${x}
    matrix: [{x: "1"}]
    title: "row ${z}"
    proto: tcp
    steps: [socket A]
`,
			pos: "t.yaml:2:5",
			msg: `scenario "a1" uses matrix variable ${z}, which its matrix does not define`,
		},
		{
			name: "matrix variable without a matrix in id",
			src: `scenarios:
  - id: a${x}
    proto: tcp
    steps: [socket A]
`,
			pos: "t.yaml:2:9",
			msg: `${x} is not a variable of this scenario's matrix`,
		},
		{
			name: "matrix neither list nor mapping",
			src: `scenarios:
  - id: a
    matrix: x
    proto: tcp
    steps: [socket A]
`,
			pos: "t.yaml:3:13",
			msg: "matrix: expected a list of rows or a mapping of variables to lists",
		},
		{
			name: "invalid YAML",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - bind A any:P
    note: a: b
`,
			pos: "t.yaml:7:1",
			msg: "invalid YAML: yaml: line 7: mapping values are not allowed",
		},
		{
			name: "invalid YAML unterminated string",
			src:  "scenarios:\n  - id: a\n    proto: \"tcp\n",
			pos:  "t.yaml:3:1",
			msg:  "invalid YAML",
		},
		{
			name: "invalid YAML unknown anchor",
			src:  "scenarios:\n  - id: a\n    proto: *tcp\n",
			pos:  "t.yaml:1:1",
			msg:  "invalid YAML: yaml: unknown anchor 'tcp' referenced",
		},
		{
			name: "empty file",
			src:  "",
			pos:  "t.yaml:1:1",
			msg:  "empty file",
		},
		{
			name: "expect with a bad key",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A]
    expect:
      answer:
        linux<=3.9: ok
`,
			pos: "t.yaml:7:9",
			msg: `expect.answer: "linux<=3.9" is not a valid key`,
		},
		{
			name: "expect with an unknown OS",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A]
    expect: {answer: {plan9: ok}}
`,
			pos: "t.yaml:5:23",
			msg: `expect.answer: "plan9" is not an OS family or OS lab knows; expected an OS family (bsd, linux, solaris, windows) or OS (android, darwin, dragonfly, freebsd, illumos, ios, linux, netbsd, openbsd, solaris, windows), optionally with a version bound`,
		},
		{
			name: "expect with a typo'd family",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A]
    expect:
      answer:
        linux: ok
        lnux: EADDRINUSE
`,
			pos: "t.yaml:8:9",
			msg: `expect.answer: "lnux" is not an OS family or OS lab knows; expected an OS family (bsd, linux`,
		},
		{
			name: "expect with a typo'd OS and a version bound",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A]
    expect:
      man:
        freebds>=14: ok
`,
			pos: "t.yaml:7:9",
			msg: `expect.man: "freebds" is not an OS family or OS lab knows`,
		},
		{
			name: "expect key from a matrix is checked",
			src: `scenarios:
  - id: a/${os}
    matrix: {os: [linux, linx]}
    proto: tcp
    steps: [socket A]
    expect:
      answer: {"${os}": ok}
`,
			pos: "t.yaml:7:16",
			msg: `expect.answer: "linx" is not an OS family or OS lab knows`,
		},
		{
			name: "expect with a bad outcome",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A]
    expect:
      answer:
        linux: maybe
`,
			pos: "t.yaml:7:16",
			msg: `expect.answer.linux: "maybe" is not an outcome`,
		},
		{
			name: "expect claims not a mapping",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A]
    expect:
      answer: ok
`,
			pos: "t.yaml:6:15",
			msg: "expect.answer: expected a mapping of OS to outcome",
		},
		{
			name: "double-quoted step column skips the quote",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - "socket A SO_BOGUS"
`,
			pos: "t.yaml:5:19",
			msg: `unknown option "SO_BOGUS"`,
		},
		{
			name: "single-quoted step column skips the quote",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - 'bind A nowhere:P'
`,
			pos: "t.yaml:6:17",
			msg: `unknown address "nowhere"`,
		},
		{
			name: "SO_LINGER without a value",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A SO_LINGER
`,
			pos: "t.yaml:5:18",
			msg: "option SO_LINGER needs a value",
		},
		{
			name: "SO_LINGER with a bad value",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A SO_LINGER=on
`,
			pos: "t.yaml:5:18",
			msg: `option SO_LINGER: "on" is not a number of seconds`,
		},
		{
			name: "observation before the last step without try",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - local A
      - close A
`,
			pos: "t.yaml:6:9",
			msg: "local before the last step must be marked try",
		},
		{
			name: "try on a verb that cannot be tried",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - try socket A
`,
			pos: "t.yaml:5:13",
			msg: "a socket step cannot be marked try",
		},
		{
			name: "try alone",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - try
`,
			pos: "t.yaml:6:9",
			msg: "try needs a step after it",
		},
		{
			name: "socket of an exited process",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A proc=two
      - exit two
      - bind A any:P
`,
			pos: "t.yaml:7:14",
			msg: `socket "A" is used before a "socket A" step creates it (or after it was closed, or its process exited)`,
		},
		{
			name: "exit of a process no socket step named",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - exit two
`,
			pos: "t.yaml:6:14",
			msg: `no process "two"`,
		},
		{
			name: "new socket in an exited process",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A proc=two
      - kill two SIGKILL
      - socket B proc=two
`,
			pos: "t.yaml:7:18",
			msg: "process two has exited",
		},
		{
			name: "kill with an unknown signal",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A proc=two
      - kill two SIGHUP
`,
			pos: "t.yaml:6:18",
			msg: `kill: unknown signal "SIGHUP"`,
		},
		{
			name: "process name of the other user",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A proc=other
`,
			pos: "t.yaml:5:18",
			msg: "a process name is a letter",
		},
		{
			name: "one process name for two users",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A proc=two
      - socket B proc=two user=other
`,
			pos: "t.yaml:6:18",
			msg: "process two was started for another user",
		},
		{
			name: "listen on a udp socket in a tcp scenario",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A udp
      - listen A
`,
			pos: "t.yaml:6:9",
			msg: "listen is for tcp sockets; socket A is udp",
		},
		{
			name: "sleep too long",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - sleep 1h
`,
			pos: "t.yaml:5:15",
			msg: `sleep: "1h" is not a duration between 1ms and 10m0s`,
		},
		{
			name: "send with a bad count",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - send A lots
`,
			pos: "t.yaml:6:16",
			msg: `send: "lots" is not a byte count`,
		},
		{
			name: "slow not a boolean",
			src: `scenarios:
  - id: a
    proto: tcp
    slow: yes please
    steps: [socket A]
`,
			pos: "t.yaml:4:11",
			msg: `field "slow": "yes please" is not true or false`,
		},
		{
			name: "claim alternative not an outcome",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A]
    expect:
      answer: {linux: "ok|maybe"}
`,
			pos: "t.yaml:6:23",
			msg: `expect.answer.linux: "maybe" is not an outcome`,
		},
		{
			name: "claim with an empty alternative",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A]
    expect:
      answer: {linux: "ok| then ok"}
`,
			pos: "t.yaml:6:23",
			msg: `"ok|" has an empty alternative`,
		},
		{
			name: "negated fails",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A]
    expect:
      answer: {linux: "!fails"}
`,
			pos: "t.yaml:6:23",
			msg: `"!fails" is not an alternative`,
		},
		{
			name: "flow sequence step columns",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A, "bind A any:P", connect A  nowhere:Q]
`,
			pos: "t.yaml:4:50",
			msg: `unknown address "nowhere"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps := problems(t, tc.src)
			for _, p := range ps {
				if p.Pos.String() == tc.pos && strings.Contains(p.Msg, tc.msg) {
					if !strings.HasPrefix(p.Error(), tc.pos+": ") {
						t.Errorf("Problem.Error() = %q; want prefix %q", p.Error(), tc.pos+": ")
					}
					return
				}
			}
			t.Errorf("no problem at %s containing %q; got:\n%v", tc.pos, tc.msg, ps)
		})
	}
}

// TestParseAllProblemsAtOnce checks a file with several mistakes reports
// every one of them, in file order, in one error.
func TestParseAllProblemsAtOnce(t *testing.T) {
	src := `scenarios:
  - id: first
    proto: sctp
    steps:
      - socket A SO_NOPE
      - frob A
      - bind A any:99999
  - proto: tcp
    steps: [socket A]
  - id: third
    proto: tcp
    colour: blue
    steps: [socket A]
    expect: {answer: {Linux: ok, bsd: maybe}}
`
	ps := problems(t, src)
	want := []string{
		`t.yaml:3:12: field "proto": "sctp" is not a protocol`,
		`t.yaml:5:18: unknown option "SO_NOPE"`,
		`t.yaml:6:9: unknown verb "frob"`,
		`t.yaml:7:20: port "99999"`,
		`t.yaml:8:5: scenario has no "id"`,
		`t.yaml:12:5: unknown field "colour"`,
		`t.yaml:14:23: expect.answer: "Linux" is not a valid key`,
		`t.yaml:14:39: expect.answer.bsd: "maybe" is not an outcome`,
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), ps)
	}
	lines := strings.Split(ps.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("Problems.Error() has %d lines, want %d", len(lines), len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q; want prefix %q", i, lines[i], w)
		}
	}
}

// TestParseProblemsInFileOrder checks problems come out sorted by line, then
// column, however the checks found them, and that a matrix reports a
// mistake in its template once, not once per row.
func TestParseProblemsInFileOrder(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // prefixes of Problems.Error()'s lines, in order
	}{
		{
			name: "field given twice after a bad step",
			src: `scenarios:
  - id: a
    proto: tcp
    steps:
      - socket A
      - frob A
  - id: b
    proto: tcp
    steps: [socket A]
    note: one
    note: two
`,
			want: []string{
				`t.yaml:6:9: unknown verb "frob"`,
				`t.yaml:11:5: field "note" given twice`,
			},
		},
		{
			name: "later matrix row with an earlier line",
			src: `scenarios:
  - id: m/${x}
    matrix:
      - {x: "1", a: any, o: maybe}
      - {x: "2", a: nowhere, o: ok}
    proto: tcp
    steps: [socket A, "bind A ${a}:P"]
    expect: {answer: {linux: "${o}"}}
`,
			want: []string{
				`t.yaml:7:23: unknown address "nowhere"`,
				`t.yaml:8:30: expect.answer.linux: "maybe" is not an outcome`,
			},
		},
		{
			name: "same line in column order",
			src: `scenarios:
  - id: a
    proto: tcp
    steps: [socket A]
    expect: {answer: {lnux: ok, bsd: maybe}, man: {bsd: ok, windos: ok}}
`,
			want: []string{
				`t.yaml:5:23: expect.answer: "lnux" is not an OS family or OS`,
				`t.yaml:5:38: expect.answer.bsd: "maybe" is not an outcome`,
				`t.yaml:5:61: expect.man: "windos" is not an OS family or OS`,
			},
		},
		{
			name: "template mistake reported once for all rows",
			src: `scenarios:
  - id: m/${x}
    matrix: {x: ["1", "2", "3"]}
    proto: tcp
    steps: [socket A, frob A]
`,
			want: []string{
				`t.yaml:5:23: unknown verb "frob"`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps := problems(t, tc.src)
			lines := strings.Split(ps.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(tc.want), ps)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d = %q; want prefix %q\nall:\n%v", i, lines[i], w, ps)
				}
			}
		})
	}
}

// TestParseExpectKeys checks every OS and family lab knows is accepted as an
// expectation key, with and without a version bound.
func TestParseExpectKeys(t *testing.T) {
	var names []string
	names = append(names, scenario.Families...)
	names = append(names, scenario.OSes...)
	for _, want := range []string{"bsd", "linux", "windows", "solaris", "freebsd", "openbsd", "netbsd", "darwin", "illumos"} {
		if !slices.Contains(names, want) {
			t.Errorf("%q is not a known expectation key; the scenario language documents it", want)
		}
	}
	for _, name := range names {
		for _, key := range []string{name, name + "<3.9", name + ">=14"} {
			t.Run(key, func(t *testing.T) {
				scs := parseOK(t, "scenarios:\n  - id: a\n    proto: tcp\n    steps: [socket A]\n    expect: {answer: {\""+key+"\": ok}}\n")
				if got := scs[0].Expect["answer"][key]; got != "ok" {
					t.Errorf("Expect = %v; want answer.%s = ok", scs[0].Expect, key)
				}
			})
		}
	}
}

// docBlocks returns the ```yaml blocks of the scenario language's doc, so
// the examples there are checked to parse as the doc says.
func docBlocks(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../docs/scenario-language.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	var out []string
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	if len(out) < 2 {
		t.Fatalf("docs/scenario-language.md has %d yaml blocks; want the example and the matrix example", len(out))
	}
	return out
}

func parseOK(t *testing.T, src string) []scenario.Scenario {
	t.Helper()
	scs, err := scenario.Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return scs
}

func TestParseDocExample(t *testing.T) {
	scs := parseOK(t, docBlocks(t)[0])
	if len(scs) != 1 {
		t.Fatalf("got %d scenarios, want 1", len(scs))
	}
	s := scs[0]
	want := wire.Scenario{
		ID:      "bsd-table/any-then-specific/reuseaddr",
		Proto:   "tcp",
		Timeout: 2000,
		Steps: []wire.Step{
			{Text: "socket A", Verb: "socket", Sock: "A"},
			{Text: "bind A any:P", Verb: "bind", Sock: "A", Addr: "any", Port: "P"},
			{Text: "socket B SO_REUSEADDR", Verb: "socket", Sock: "B", Options: []wire.Option{{Name: "SO_REUSEADDR", Value: 1}}},
			{Text: "bind B addr1:P", Verb: "bind", Sock: "B", Addr: "addr1", Port: "P"},
		},
	}
	if !reflect.DeepEqual(s.Scenario, want) {
		t.Errorf("wire scenario:\n got %+v\nwant %+v", s.Scenario, want)
	}
	if s.Title != "A on 0.0.0.0:P, then B with SO_REUSEADDR on addr1:P" || s.Source != "answer, BSD table, row 6" || s.Note != "free text shown in the report" {
		t.Errorf("title, source, note = %q, %q, %q", s.Title, s.Source, s.Note)
	}
	wantExpect := map[string]map[string]string{"answer": {"bsd": "ok", "linux": "ok", "windows": "ok"}}
	if !reflect.DeepEqual(s.Expect, wantExpect) {
		t.Errorf("Expect = %v, want %v", s.Expect, wantExpect)
	}
	if s.Pos.String() != "t.yaml:2:5" {
		t.Errorf("Pos = %s, want t.yaml:2:5", s.Pos)
	}
}

func TestParseSteps(t *testing.T) {
	tests := []struct {
		name  string
		proto string
		steps []string // YAML list items, as written
		want  []wire.Step
	}{
		{
			name:  "socket with options, ip6 and user",
			proto: "tcp",
			steps: []string{"socket A SO_REUSEPORT IPV6_V6ONLY=0 ip6 user=other", "setopt A SO_REUSEADDR=2"},
			want: []wire.Step{
				{Text: "socket A SO_REUSEPORT IPV6_V6ONLY=0 ip6 user=other", Verb: "socket", Sock: "A", IP6: true, User: "other",
					Options: []wire.Option{{Name: "SO_REUSEPORT", Value: 1}, {Name: "IPV6_V6ONLY", Value: 0}}},
				{Text: "setopt A SO_REUSEADDR=2", Verb: "setopt", Sock: "A", Options: []wire.Option{{Name: "SO_REUSEADDR", Value: 2}}},
			},
		},
		{
			name:  "option values each option takes",
			proto: "tcp",
			steps: []string{"socket A ip6 IPV6_V6ONLY=1", "setopt A IPV6_V6ONLY=0", "setopt A SO_REUSEPORT=0", "setopt A SO_EXCLUSIVEADDRUSE=2147483647"},
			want: []wire.Step{
				{Text: "socket A ip6 IPV6_V6ONLY=1", Verb: "socket", Sock: "A", IP6: true, Options: []wire.Option{{Name: "IPV6_V6ONLY", Value: 1}}},
				{Text: "setopt A IPV6_V6ONLY=0", Verb: "setopt", Sock: "A", Options: []wire.Option{{Name: "IPV6_V6ONLY", Value: 0}}},
				{Text: "setopt A SO_REUSEPORT=0", Verb: "setopt", Sock: "A", Options: []wire.Option{{Name: "SO_REUSEPORT", Value: 0}}},
				{Text: "setopt A SO_EXCLUSIVEADDRUSE=2147483647", Verb: "setopt", Sock: "A", Options: []wire.Option{{Name: "SO_EXCLUSIVEADDRUSE", Value: 2147483647}}},
			},
		},
		{
			name:  "literal addresses and numeric ports",
			proto: "tcp",
			steps: []string{"socket A ip6", "bind A [::1]:Q", "socket B", "bind B 127.0.0.5:0", "connect B loop:8080"},
			want: []wire.Step{
				{Text: "socket A ip6", Verb: "socket", Sock: "A", IP6: true},
				{Text: "bind A [::1]:Q", Verb: "bind", Sock: "A", Addr: "::1", Port: "Q"},
				{Text: "socket B", Verb: "socket", Sock: "B"},
				{Text: "bind B 127.0.0.5:0", Verb: "bind", Sock: "B", Addr: "127.0.0.5", Port: "0"},
				{Text: "connect B loop:8080", Verb: "connect", Sock: "B", Addr: "loop", Port: "8080"},
			},
		},
		{
			name:  "listen accept close and reuse of a closed name",
			proto: "tcp",
			steps: []string{"socket A", "bind A any:P", "listen A", "accept A C", "close C", "socket C SO_EXCLUSIVEADDRUSE"},
			want: []wire.Step{
				{Text: "socket A", Verb: "socket", Sock: "A"},
				{Text: "bind A any:P", Verb: "bind", Sock: "A", Addr: "any", Port: "P"},
				{Text: "listen A", Verb: "listen", Sock: "A"},
				{Text: "accept A C", Verb: "accept", Sock: "A", NewName: "C"},
				{Text: "close C", Verb: "close", Sock: "C"},
				{Text: "socket C SO_EXCLUSIVEADDRUSE", Verb: "socket", Sock: "C", Options: []wire.Option{{Name: "SO_EXCLUSIVEADDRUSE", Value: 1}}},
			},
		},
		{
			name:  "timewait with options",
			proto: "tcp",
			steps: []string{"timewait addr2:P SO_REUSEADDR SO_REUSEPORT=1"},
			want: []wire.Step{
				{Text: "timewait addr2:P SO_REUSEADDR SO_REUSEPORT=1", Verb: "timewait", Addr: "addr2", Port: "P",
					Options: []wire.Option{{Name: "SO_REUSEADDR", Value: 1}, {Name: "SO_REUSEPORT", Value: 1}}},
			},
		},
		{
			name:  "linger, per-socket protocol and processes",
			proto: "tcp",
			steps: []string{"socket A SO_LINGER=0 udp proc=two", "socket B SO_LINGER=off user=other", "socket C user=other proc=three", "setopt C SO_LINGER=5",
				"kill other", "exit two", "kill three SIGSEGV"},
			want: []wire.Step{
				{Text: "socket A SO_LINGER=0 udp proc=two", Verb: "socket", Sock: "A", Proto: "udp", Proc: "two", Options: []wire.Option{{Name: "SO_LINGER", Value: 0}}},
				{Text: "socket B SO_LINGER=off user=other", Verb: "socket", Sock: "B", User: "other", Options: []wire.Option{{Name: "SO_LINGER", Off: true}}},
				{Text: "socket C user=other proc=three", Verb: "socket", Sock: "C", User: "other", Proc: "three"},
				{Text: "setopt C SO_LINGER=5", Verb: "setopt", Sock: "C", Options: []wire.Option{{Name: "SO_LINGER", Value: 5}}},
				{Text: "kill other", Verb: "kill", Proc: "other", Signal: "SIGKILL"},
				{Text: "exit two", Verb: "exit", Proc: "two"},
				{Text: "kill three SIGSEGV", Verb: "kill", Proc: "three", Signal: "SIGSEGV"},
			},
		},
		{
			name:  "send, recv, local, peer, sleep, waitfree and try",
			proto: "tcp",
			steps: []string{"socket A", "try bind A addr1:P", "send A", "send A 100000", "try sendto A loop:Q", "sleep 250ms",
				"try recv A", "try local A", "try peer A", "waitfree addr1:P SO_REUSEADDR"},
			want: []wire.Step{
				{Text: "socket A", Verb: "socket", Sock: "A"},
				{Text: "try bind A addr1:P", Verb: "bind", Sock: "A", Addr: "addr1", Port: "P", Try: true},
				{Text: "send A", Verb: "send", Sock: "A", N: 3},
				{Text: "send A 100000", Verb: "send", Sock: "A", N: 100000},
				{Text: "try sendto A loop:Q", Verb: "sendto", Sock: "A", Addr: "loop", Port: "Q", Try: true},
				{Text: "sleep 250ms", Verb: "sleep", Wait: 250},
				{Text: "try recv A", Verb: "recv", Sock: "A", Try: true},
				{Text: "try local A", Verb: "local", Sock: "A", Try: true},
				{Text: "try peer A", Verb: "peer", Sock: "A", Try: true},
				{Text: "waitfree addr1:P SO_REUSEADDR", Verb: "waitfree", Addr: "addr1", Port: "P", Options: []wire.Option{{Name: "SO_REUSEADDR", Value: 1}}},
			},
		},
		{
			name:  "udp spread and extra spaces",
			proto: "udp",
			steps: []string{"socket A  SO_REUSEPORT_LB", "socket B SO_REUSEPORT_LB", "spread 100 A,B"},
			want: []wire.Step{
				{Text: "socket A SO_REUSEPORT_LB", Verb: "socket", Sock: "A", Options: []wire.Option{{Name: "SO_REUSEPORT_LB", Value: 1}}},
				{Text: "socket B SO_REUSEPORT_LB", Verb: "socket", Sock: "B", Options: []wire.Option{{Name: "SO_REUSEPORT_LB", Value: 1}}},
				{Text: "spread 100 A,B", Verb: "spread", N: 100, Socks: []string{"A", "B"}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString("scenarios:\n  - id: s\n    proto: " + tc.proto + "\n    steps:\n")
			for _, st := range tc.steps {
				b.WriteString("      - " + st + "\n")
			}
			scs := parseOK(t, b.String())
			if len(scs) != 1 {
				t.Fatalf("got %d scenarios, want 1", len(scs))
			}
			if !reflect.DeepEqual(scs[0].Steps, tc.want) {
				t.Errorf("steps:\n got %+v\nwant %+v", scs[0].Steps, tc.want)
			}
		})
	}
}

func ids(scs []scenario.Scenario) []string {
	var out []string
	for _, s := range scs {
		out = append(out, s.ID)
	}
	return out
}

func TestParseMatrix(t *testing.T) {
	t.Run("doc example, list of rows", func(t *testing.T) {
		scs := parseOK(t, "scenarios:\n"+docBlocks(t)[1])
		if got, want := ids(scs), []string{"bsd-table/row1/off", "bsd-table/row1/on"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("ids = %v, want %v", got, want)
		}
		off, on := scs[0], scs[1]
		if len(off.Steps[2].Options) != 0 {
			t.Errorf("row1/off socket B options = %v, want none", off.Steps[2].Options)
		}
		if want := []wire.Option{{Name: "SO_REUSEADDR", Value: 1}}; !reflect.DeepEqual(on.Steps[2].Options, want) {
			t.Errorf("row1/on socket B options = %v, want %v", on.Steps[2].Options, want)
		}
		if on.Title != "A on addr1:P, then B SO_REUSEADDR on addr1:P" || on.Source != "answer, BSD table, row 1" {
			t.Errorf("title, source = %q, %q", on.Title, on.Source)
		}
		if on.Expect["answer"]["bsd"] != "EADDRINUSE" {
			t.Errorf("expect = %v", on.Expect)
		}
		if on.Vars["flag"] != "on" || on.Vars["opt"] != "SO_REUSEADDR" || on.Vars["row"] != "1" {
			t.Errorf("Vars = %v", on.Vars)
		}
		if on.Steps[3].Addr != "addr1" {
			t.Errorf("bind B addr = %q, want addr1", on.Steps[3].Addr)
		}
	})
	t.Run("mapping of lists is the cartesian product", func(t *testing.T) {
		scs := parseOK(t, `scenarios:
  - id: m/${a}/${n}
    matrix:
      a: [addr1, addr2, loop]
      n: ["1", "2"]
    proto: udp
    steps: [socket A, "bind A ${a}:P"]
    expect: {answer: {linux: ok}}
    note: "n=${n}"
`)
		want := []string{"m/addr1/1", "m/addr1/2", "m/addr2/1", "m/addr2/2", "m/loop/1", "m/loop/2"}
		if got := ids(scs); !reflect.DeepEqual(got, want) {
			t.Fatalf("ids = %v, want %v (every combination, the last variable fastest)", got, want)
		}
		for _, s := range scs {
			a, n := s.Vars["a"], s.Vars["n"]
			if s.ID != "m/"+a+"/"+n {
				t.Errorf("%s: Vars = %v", s.ID, s.Vars)
			}
			if s.Steps[1].Addr != a {
				t.Errorf("%s: bind addr = %q, want %q", s.ID, s.Steps[1].Addr, a)
			}
			if s.Note != "n="+n {
				t.Errorf("%s: note = %q", s.ID, s.Note)
			}
		}
	})
	t.Run("expect values are substituted and then checked", func(t *testing.T) {
		ps := problems(t, `scenarios:
  - id: m/${n}
    matrix: {n: [ok, maybe, EADDRINUSE]}
    proto: tcp
    steps: [socket A]
    expect: {answer: {bsd: "${n}"}}
`)
		if len(ps) != 1 || ps[0].Pos.String() != "t.yaml:6:28" || !strings.Contains(ps[0].Msg, `"maybe" is not an outcome`) {
			t.Errorf("got %v; want one problem at t.yaml:6:28 for \"maybe\"", ps)
		}
	})
}

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		name string
		line string
		want wire.Millis
	}{
		{"default is 3s", "", 3000},
		{"explicit 500ms", "    timeout: 500ms\n", 500},
		{"explicit 2s", "    timeout: 2s\n", 2000},
		{"minutes", "    timeout: 1m\n", 60000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scs := parseOK(t, "scenarios:\n  - id: a\n    proto: tcp\n"+tc.line+"    steps: [socket A]\n")
			if scs[0].Timeout != tc.want {
				t.Errorf("Timeout = %d ms, want %d", scs[0].Timeout, tc.want)
			}
			if tc.line == "" && scs[0].Timeout.Duration() != scenario.DefaultTimeout {
				t.Errorf("default Timeout = %v, want DefaultTimeout %v", scs[0].Timeout.Duration(), scenario.DefaultTimeout)
			}
		})
	}
}

func TestClaim(t *testing.T) {
	s := scenario.Scenario{Expect: map[string]map[string]string{
		"answer": {"linux": "ok", "linux<3.9": "unsupported", "freebsd": "EADDRINUSE", "bsd": "EINVAL"},
		"man":    {"bsd>=14": "ok", "bsd": "EADDRINUSE", "freebsd>=14": "EACCES", "openbsd": "EINVAL", "linux>=3.9": "ok"},
		"num":    {"linux<3.10": "EPERM", "linux": "ok"},
	}}
	tests := []struct {
		name    string
		source  string
		target  scenario.Target
		outcome string
		key     string
		ok      bool
	}{
		{"version-bound OS beats OS", "answer", scenario.Target{OS: "linux", KernelRelease: "3.8.0"}, "unsupported", "linux<3.9", true},
		{"OS when the bound fails", "answer", scenario.Target{OS: "linux", KernelRelease: "6.1.0-28-cloud-amd64"}, "ok", "linux", true},
		{"OS beats family", "answer", scenario.Target{OS: "freebsd", KernelRelease: "14.1-RELEASE"}, "EADDRINUSE", "freebsd", true},
		{"family when no OS key", "answer", scenario.Target{OS: "darwin", KernelRelease: "23.0.0"}, "EINVAL", "bsd", true},
		{"no claim for the family", "answer", scenario.Target{OS: "windows", KernelRelease: "10.0.22631"}, "", "", false},
		{"unparsable release matches no bound", "answer", scenario.Target{OS: "linux", KernelRelease: "unknown"}, "ok", "linux", true},
		{"unknown source", "rfc", scenario.Target{OS: "linux", KernelRelease: "6.1.0"}, "", "", false},
		{"version-bound OS beats version-bound family", "man", scenario.Target{OS: "freebsd", KernelRelease: "14.1-RELEASE"}, "EACCES", "freebsd>=14", true},
		{"version-bound family beats family", "man", scenario.Target{OS: "darwin", KernelRelease: "23.0.0"}, "ok", "bsd>=14", true},
		{"family when the family bound fails", "man", scenario.Target{OS: "netbsd", KernelRelease: "10.0"}, "EADDRINUSE", "bsd", true},
		{"OS beats version-bound family", "man", scenario.Target{OS: "openbsd", KernelRelease: "75.5"}, "EINVAL", "openbsd", true},
		{"versions compare numerically, 3.9 < 3.10", "num", scenario.Target{OS: "linux", KernelRelease: "3.9.0"}, "EPERM", "linux<3.10", true},
		{"upper bound is exclusive", "num", scenario.Target{OS: "linux", KernelRelease: "3.10.0"}, "ok", "linux", true},
		{"lower bound is inclusive", "man", scenario.Target{OS: "linux", KernelRelease: "3.9"}, "ok", "linux>=3.9", true},
		{"below the lower bound", "man", scenario.Target{OS: "linux", KernelRelease: "3.8.13"}, "", "", false},
		{"android is in the linux family", "answer", scenario.Target{OS: "android", KernelRelease: "3.4.0"}, "unsupported", "linux<3.9", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			outcome, key, ok := s.Claim(tc.source, tc.target)
			if outcome != tc.outcome || key != tc.key || ok != tc.ok {
				t.Errorf("Claim(%q, %+v) = %q, %q, %v; want %q, %q, %v", tc.source, tc.target, outcome, key, ok, tc.outcome, tc.key, tc.ok)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, id string
		want        bool
	}{
		{"bsd-table/row1/off", "bsd-table/row1/off", true},
		{"bsd-table", "bsd-table/row1/off", true},
		{"bsd-table/", "bsd-table/row1/off", true},
		{"bsd-tab", "bsd-table/row1/off", false},
		{"bsd-table/row1", "bsd-table/row10/off", false},
		{"bsd-table/*", "bsd-table/row1/off", true},
		{"*/off", "bsd-table/row1/off", true},
		{"*/on", "bsd-table/row1/off", false},
		{"bsd-table/row?/on", "bsd-table/row1/on", true},
		{"bsd-table/row?/on", "bsd-table/row10/on", false},
		{"*", "anything/at/all", true},
		{"a.b*", "aXbc", false},
		{"a.b*", "a.bc", true},
		{"udp*", "tcp/udp", false},
		{"[x]*", "[x]y", true},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+" "+tc.id, func(t *testing.T) {
			if got := scenario.Match(tc.pattern, tc.id); got != tc.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.id, got, tc.want)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	var all []scenario.Scenario
	for _, id := range []string{"bsd-table/row1/off", "bsd-table/row1/on", "linux/listen", "timewait/plain", "udp/multicast"} {
		all = append(all, scenario.Scenario{Scenario: wire.Scenario{ID: id}})
	}
	tests := []struct {
		name     string
		patterns string
		want     []string
	}{
		{"empty keeps all", "  ", ids(all)},
		{"one section", "bsd-table", []string{"bsd-table/row1/off", "bsd-table/row1/on"}},
		{"several globs keep catalog order", " timewait/* , */off", []string{"bsd-table/row1/off", "timewait/plain"}},
		{"matched twice kept once", "bsd-table/*,*/on", []string{"bsd-table/row1/off", "bsd-table/row1/on"}},
		{"empty items ignored", ",,linux,", []string{"linux/listen"}},
		{"nothing matches", "windows/*", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(scenario.Filter(all, tc.patterns)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Filter(%q) = %v, want %v", tc.patterns, got, tc.want)
			}
		})
	}
}

// TestSelectSlow checks slow scenarios stay out of a run that names no
// pattern, come in when a pattern matches them, and all come in with slow.
func TestSelectSlow(t *testing.T) {
	all := []scenario.Scenario{
		{Scenario: wire.Scenario{ID: "timewait/no-flag"}},
		{Scenario: wire.Scenario{ID: "timewait-length/server", Slow: true}},
		{Scenario: wire.Scenario{ID: "bsd-table/row1/off"}},
		{Scenario: wire.Scenario{ID: "linger/timeout", Slow: true}},
	}
	tests := []struct {
		patterns string
		slow     bool
		want     []string
	}{
		{"", false, []string{"timewait/no-flag", "bsd-table/row1/off"}},
		{"", true, []string{"timewait/no-flag", "timewait-length/server", "bsd-table/row1/off", "linger/timeout"}},
		{"timewait-length", false, []string{"timewait-length/server"}},
		{"*", false, []string{"timewait/no-flag", "timewait-length/server", "bsd-table/row1/off", "linger/timeout"}},
		{"bsd-table", true, []string{"timewait-length/server", "bsd-table/row1/off", "linger/timeout"}},
	}
	for _, tc := range tests {
		if got := ids(scenario.Select(all, tc.patterns, tc.slow)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Select(%q, %v) = %v, want %v", tc.patterns, tc.slow, got, tc.want)
		}
	}
}

// TestMatches checks how an observed outcome is held against a claim.
func TestMatches(t *testing.T) {
	tests := []struct {
		claim, outcome string
		want           bool
	}{
		{"ok", "ok", true},
		{"ok", "EADDRINUSE", false},
		{"fails", "EADDRINUSE", true},
		{"fails", "EACCES", true},
		{"fails", "ok", false},
		{"fails", "setup-failed", false},
		{"fails", "unsupported", false},
		{"single|uneven", "uneven", true},
		{"single|uneven", "even", false},
		{"!even", "single", true},
		{"!even", "even", false},
		{"EADDRINUSE then ok", "EADDRINUSE then ok", true},
		{"fails then ok", "EADDRNOTAVAIL then ok", true},
		{"fails then ok", "ok then ok", false},
		{"fails then ok", "EADDRINUSE", false},
		{"ok", "ok then ok", false},
		{"loop:ephemeral|addr1:ephemeral", "addr1:ephemeral", true},
	}
	for _, tc := range tests {
		if got := scenario.Matches(tc.claim, tc.outcome); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tc.claim, tc.outcome, got, tc.want)
		}
	}
	for _, o := range []string{"ok", "EADDRINUSE", "60s", "loop:ephemeral", "any:P", "specific:other", "unbound", "none", "data", "eof", "EAGAIN then data", "even"} {
		if !scenario.ValidOutcome(o) {
			t.Errorf("ValidOutcome(%q) = false", o)
		}
	}
	for _, o := range []string{"", "maybe", "loop", "loop:R", "60", "ok then", "1.5s"} {
		if scenario.ValidOutcome(o) {
			t.Errorf("ValidOutcome(%q) = true", o)
		}
	}
}

// TestCatalog checks the repository's scenarios.yaml: it parses, is big
// enough to cover the answer, and every scenario says where its claim is from.
func TestCatalog(t *testing.T) {
	scs, err := scenario.ParseFile("../scenarios.yaml")
	if err != nil {
		t.Fatalf("ParseFile: %v", err)
	}
	if len(scs) < 60 {
		t.Errorf("catalog has %d scenarios, want at least 60", len(scs))
	}
	seen := map[string]scenario.Pos{}
	for _, s := range scs {
		if prev, dup := seen[s.ID]; dup {
			t.Errorf("%s: duplicate id %q (first at %s)", s.Pos, s.ID, prev)
		}
		seen[s.ID] = s.Pos
		if strings.TrimSpace(s.Source) == "" {
			t.Errorf("%s: scenario %q has no source", s.Pos, s.ID)
		}
		if len(s.Steps) == 0 {
			t.Errorf("%s: scenario %q has no steps", s.Pos, s.ID)
		}
	}
	if _, err := scenario.ParseFile("testdata/does-not-exist.yaml"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParseFile of a missing file: err = %v, want one wrapping os.ErrNotExist", err)
	}
}

// FuzzParse checks Parse never panics and always explains a failure as
// Problems that point into the file.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../scenarios.yaml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"scenarios: []\n",
		"scenarios:\n  - id: a\n    proto: tcp\n    steps: [socket A, bind A any:P]\n",
		"scenarios:\n  - id: a/${x}\n    matrix: {x: [1, 2]}\n    proto: udp\n    steps: [socket A, \"bind A ${x}:P\"]\n    expect: {answer: {linux<3.9: ok}}\n",
		"scenarios:\n  - &a {id: a, proto: tcp, steps: [socket A]}\n  - *a\n",
		"scenarios:\n  - id: a\n    proto: tcp\n    timeout: 1us\n    steps: [\"spread 3 A,B\", 'connect A [::1]:Q']\n",
		"scenarios:\n  - id: a\n    proto: tcp\n    slow: true\n    steps: [socket A SO_LINGER=off udp proc=p, try send A 9, try recv A, exit p, sleep 5ms, waitfree loop:P]\n    expect: {answer: {linux: \"fails|!ok then eof\"}}\n",
		"- 1\n- 2\n",
		"scenarios: {a: b}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		scs, err := scenario.Parse("f.yaml", data)
		if err != nil {
			var ps scenario.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error is %T, not scenario.Problems: %v", err, err)
			}
			if len(ps) == 0 {
				t.Fatal("empty Problems")
			}
			for i, p := range ps {
				if p.Pos.File != "f.yaml" || p.Pos.Line < 1 {
					t.Errorf("problem without a place in the file: %+v", p)
				}
				if i > 0 && (p.Pos.Line < ps[i-1].Pos.Line || p.Pos.Line == ps[i-1].Pos.Line && p.Pos.Col < ps[i-1].Pos.Col) {
					t.Errorf("problem %d (%s) comes after %s; want file order", i, p.Pos, ps[i-1].Pos)
				}
			}
			if scs != nil {
				t.Errorf("Parse returned %d scenarios with an error", len(scs))
			}
			return
		}
		seen := map[string]bool{}
		for _, s := range scs {
			if seen[s.ID] {
				t.Errorf("duplicate id %q accepted", s.ID)
			}
			seen[s.ID] = true
			if s.Proto != "tcp" && s.Proto != "udp" {
				t.Errorf("%s: proto %q accepted", s.ID, s.Proto)
			}
			if len(s.Steps) == 0 {
				t.Errorf("%s: no steps accepted", s.ID)
			}
		}
	})
}
