package awsx

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// requestIDs matches the per-request parts of an SDK error's text
// ("RequestID: 4f1c…, ", "HostID: …, "): they differ on every call of the
// same failure.
var requestIDs = regexp.MustCompile(`(RequestID|HostID): [^,]*, `)

// Brief returns err's text without its per-request ids and shortened to at
// most max bytes (on a rune boundary, with "…"): the same failure gives
// the same text, so a caller that records an error only when it changes
// (the reconciler's last error on a tenant) writes once per failure, not
// once per poll.
func Brief(err error, max int) string {
	if err == nil {
		return ""
	}
	s := requestIDs.ReplaceAllString(err.Error(), "")
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
