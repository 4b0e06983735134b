package scenario

// Claims: what expect: may say a scenario ends with, and how an observed
// outcome is held against it. A claim names an outcome, alternatives
// ("single|uneven"), any failure ("fails") or anything but one outcome
// ("!even"), so lab never has to pick an errno or a verdict the source does
// not name. A scenario with try steps has a composite outcome ("EADDRINUSE
// then ok"), and its claim has as many parts.

import (
	"fmt"
	"regexp"
	"strings"

	"lab/wire"
)

// ClaimFails is the claim that the step fails, with whatever errno.
const ClaimFails = "fails"

var (
	errnoRE    = regexp.MustCompile(`^E[A-Z0-9]+$`)
	durationRE = regexp.MustCompile(`^[0-9]+s$`)
	// An address class, as a local or peer step reports it: which of the
	// scenario's addresses (or another specific one) and which port (P, Q,
	// one inside the OS's ephemeral range, a number the steps name, or any
	// other).
	addrClassRE = regexp.MustCompile(`^(any|any6|addr1|addr2|loop|loop6|mcast|specific):(P|Q|ephemeral|other|[0-9]+)$`)
)

// ValidOutcome reports whether o is something a scenario can end with: one
// step's result, or the results of its try steps and its last step joined
// by wire.Then.
func ValidOutcome(o string) bool {
	for _, part := range strings.Split(o, wire.Then) {
		if !validResult(part) {
			return false
		}
	}
	return true
}

// validResult reports whether r is something one step can yield.
func validResult(r string) bool {
	switch r {
	case wire.OK, wire.Unsupported, wire.SetupFailed, wire.Timeout, wire.Skipped,
		wire.SpreadEven, wire.SpreadSingle, wire.SpreadUneven, wire.SpreadNone,
		wire.RecvData, wire.RecvEOF, wire.LocalUnbound:
		return true
	}
	return errnoRE.MatchString(r) || durationRE.MatchString(r) || addrClassRE.MatchString(r)
}

// claimProblem says what is wrong with a claim, "" when nothing is.
func claimProblem(c string) string {
	for _, part := range strings.Split(c, wire.Then) {
		for _, alt := range strings.Split(part, "|") {
			o := strings.TrimPrefix(alt, "!")
			switch {
			case alt == ClaimFails:
			case alt == "" || o == "":
				return fmt.Sprintf("%q has an empty alternative", part)
			case o != alt && (o == ClaimFails || strings.HasPrefix(o, "!")):
				return fmt.Sprintf("%q is not an alternative: ! goes before an outcome, not before fails or another !", alt)
			case !validResult(o):
				return fmt.Sprintf("%q is not an outcome; expected ok, an errno name like EADDRINUSE, fails (any errno), "+
					"unsupported, for spread even, single, uneven, none, for recv data, eof, for local and peer unbound, none "+
					"or an address class like loop:ephemeral, for waitfree a duration like 60s; alternatives joined by |, "+
					"!X for anything but X, and one part per try step joined by %q", o, wire.Then)
			}
		}
	}
	return ""
}

// Matches reports whether an observed outcome is what claim says. Both have
// one part per try step plus the last step; each observed part must be one
// of the claim part's alternatives.
func Matches(claim, outcome string) bool {
	cs, os := strings.Split(claim, wire.Then), strings.Split(outcome, wire.Then)
	if len(cs) != len(os) {
		return false
	}
	for i := range cs {
		if !partMatches(cs[i], os[i]) {
			return false
		}
	}
	return true
}

func partMatches(claim, observed string) bool {
	for _, alt := range strings.Split(claim, "|") {
		switch {
		case alt == ClaimFails:
			if errnoRE.MatchString(observed) {
				return true
			}
		case strings.HasPrefix(alt, "!"):
			if observed != alt[1:] {
				return true
			}
		case alt == observed:
			return true
		}
	}
	return false
}

// Allows reports whether claim names o outright as one of its
// alternatives (for a one-part claim).
func Allows(claim, o string) bool {
	for _, alt := range strings.Split(claim, "|") {
		if alt == o {
			return true
		}
	}
	return false
}
