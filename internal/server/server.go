// Package server builds the http.Server of every listener silo opens in
// local mode (the API, the console, the token issuer, the app host, the
// emulator's proxy, the simulated fleet), so that none lets a client hold
// it for as long as the client likes: headers that never end, a body
// trickled a byte every few seconds, a response read as slowly, a
// kept-alive connection left idle. A zero http.Server timeout means no
// limit at all, so every server is built here, with all four set.
//
// In AWS no http.Server of silo's runs: API Gateway fronts the Lambdas
// and bounds the same things itself (a 29-second integration timeout, a
// 10 MB payload).
package server

import (
	"net/http"
	"time"
)

// Timeouts bound how long one client may occupy a server.
type Timeouts struct {
	// Header bounds reading the request line and headers.
	Header time.Duration
	// Read bounds reading the whole request, body included. It is what
	// cuts off a trickled body, so it must allow the largest body the
	// server takes at the slowest link it serves, and no more.
	Read time.Duration
	// Write bounds the time from the end of the request's headers to the
	// end of the response: the handler's work and the client's reading.
	// A handler that legitimately runs longer lifts its own deadline
	// (http.ResponseController.SetWriteDeadline) rather than every
	// request getting its allowance.
	Write time.Duration
	// Idle bounds how long a kept-alive connection waits for its next
	// request.
	Idle time.Duration
}

// Default suits a server of small requests and quick answers (the
// console, the token issuer, a control endpoint). Idle is longer than
// the 90 seconds Go's http.Transport and the AWS SDK keep an idle
// connection, so the client gives a connection up before the server
// closes it under a request being sent.
var Default = Timeouts{Header: 10 * time.Second, Read: 30 * time.Second, Write: time.Minute, Idle: 2 * time.Minute}

// Or returns t with each zero field taken from d.
func (t Timeouts) Or(d Timeouts) Timeouts {
	pick := func(a, b time.Duration) time.Duration {
		if a > 0 {
			return a
		}
		return b
	}
	return Timeouts{Header: pick(t.Header, d.Header), Read: pick(t.Read, d.Read), Write: pick(t.Write, d.Write), Idle: pick(t.Idle, d.Idle)}
}

// New returns a server of h with the timeouts t; a zero field of t is
// Default's.
func New(h http.Handler, t Timeouts) *http.Server {
	t = t.Or(Default)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.Header,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
	}
}
