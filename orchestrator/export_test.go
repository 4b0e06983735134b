package orchestrator

import "time"

// SetAgentSilence makes the engine take an agent that prints nothing for d
// as hung, for the rest of a test, so that its watchdog is tested in
// milliseconds; the returned function restores the rule.
func SetAgentSilence(d time.Duration) (restore func()) {
	old := silenceForTest
	silenceForTest = d
	return func() { silenceForTest = old }
}

// SetReconnectWait makes the engine wait d, not seconds, before each
// reconnect, for the rest of a test.
func SetReconnectWait(d time.Duration) (restore func()) {
	old := reconnectWait
	reconnectWait = d
	return func() { reconnectWait = old }
}
