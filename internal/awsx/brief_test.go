package awsx

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBrief(t *testing.T) {
	cases := []struct {
		name string
		err  error
		max  int
		want string
	}{
		{"nil", nil, 100, ""},
		{"plain", errors.New("boom"), 100, "boom"},
		{"request id dropped",
			errors.New("operation error STS: AssumeRole, https response error StatusCode: 403, RequestID: 8e2b0c1d-aaaa, api error AccessDenied: no"),
			200, "operation error STS: AssumeRole, https response error StatusCode: 403, api error AccessDenied: no"},
		{"s3 host id dropped too",
			errors.New("operation error S3: GetObject, https response error StatusCode: 500, RequestID: X1, HostID: abc=, api error InternalError: x"),
			200, "operation error S3: GetObject, https response error StatusCode: 500, api error InternalError: x"},
		{"shortened", errors.New("abcdefghij"), 6, "abc…"},
		{"shortened on a rune boundary", errors.New("ééééé"), 6, "é…"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, Brief(c.err, c.max)); diff != "" {
				t.Errorf("Brief (-want +got):\n%s", diff)
			}
		})
	}
	// The same failure on two calls reads the same.
	a := errors.New("x, RequestID: 1, api error Throttling: slow down")
	b := errors.New("x, RequestID: 2, api error Throttling: slow down")
	if Brief(a, 100) != Brief(b, 100) {
		t.Errorf("two calls of one failure differ: %q vs %q", Brief(a, 100), Brief(b, 100))
	}
}
