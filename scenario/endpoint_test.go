package scenario_test

import (
	"errors"
	"strings"
	"testing"

	"lab/scenario"
)

// TestParseEndpoints covers the ADDR:PORT grammar of bind, connect and
// timewait: symbolic names, IPv4 literals bare, IPv6 literals (the
// IPv4-mapped form among them, as docs/scenario-language.md documents)
// in brackets.
func TestParseEndpoints(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		addr     string // wire.Step.Addr when it parses
		port     string
		err      string // in the problem when it must not parse
	}{
		{name: "symbolic", endpoint: "addr1:P", addr: "addr1", port: "P"},
		{name: "IPv4 literal", endpoint: "127.0.0.5:Q", addr: "127.0.0.5", port: "Q"},
		{name: "IPv6 literal", endpoint: "[::1]:0", addr: "::1", port: "0"},
		{name: "IPv4-mapped in brackets", endpoint: "[::ffff:127.0.0.1]:P", addr: "::ffff:127.0.0.1", port: "P"},
		{name: "IPv4-mapped in brackets, numeric port", endpoint: "[::ffff:127.0.0.2]:8080", addr: "::ffff:127.0.0.2", port: "8080"},
		{name: "IPv4-mapped in hex", endpoint: "[::ffff:7f00:1]:P", addr: "::ffff:7f00:1", port: "P"},
		{name: "IPv4-mapped wildcard", endpoint: "[::ffff:0.0.0.0]:P", addr: "::ffff:0.0.0.0", port: "P"},
		{name: "IPv4-mapped without brackets (accepted before, still)", endpoint: "::ffff:127.0.0.1:P", addr: "::ffff:127.0.0.1", port: "P"},
		{name: "IPv4 literal in brackets", endpoint: "[127.0.0.1]:P", err: `unknown address "[127.0.0.1]"`},
		{name: "IPv6 literal without brackets", endpoint: "::1:P", err: `unknown address "::1"`},
		{name: "mapped, port missing", endpoint: "[::ffff:127.0.0.1]", err: `unknown address "[::ffff"`},
		{name: "mapped, bad port", endpoint: "[::ffff:127.0.0.1]:70000", err: `port "70000"`},
		{name: "empty brackets", endpoint: "[]:P", err: `unknown address "[]"`},
		{name: "a bracket short", endpoint: "[::ffff:127.0.0.1:P", err: `unknown address "[::ffff:127.0.0.1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "scenarios:\n  - id: s\n    proto: tcp\n    steps:\n      - socket A ip6 IPV6_V6ONLY=0\n      - bind A " + tc.endpoint + "\n"
			scs, err := scenario.Parse("t.yaml", []byte(src))
			if tc.err != "" {
				var ps scenario.Problems
				if !errors.As(err, &ps) {
					t.Fatalf("Parse(%s) = %v; want a problem %q", tc.endpoint, err, tc.err)
				}
				if !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "t.yaml:6:") {
					t.Errorf("Parse(%s): %v; want %q at t.yaml:6", tc.endpoint, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%s): %v", tc.endpoint, err)
			}
			st := scs[0].Steps[1]
			if st.Addr != tc.addr || st.Port != tc.port {
				t.Errorf("Parse(%s): addr, port = %q, %q; want %q, %q", tc.endpoint, st.Addr, st.Port, tc.addr, tc.port)
			}
		})
	}
}
