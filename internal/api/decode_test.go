package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecodeSignup: decoding a signup body never panics; it either yields a
// request that survives a round trip, or a 400 invalid_json whose message
// does not echo the body.
func FuzzDecodeSignup(f *testing.F) {
	for _, seed := range []string{
		goodBody,
		`{}`,
		``,
		`null`,
		`[]`,
		`"name"`,
		`{"name":"A"}{"name":"B"}`,
		`{"name":"A"} `,
		`{"name":"A",}`,
		`{"name":"\u0000\ud800"}`,
		`{"name":1e999}`,
		`{"name":"A","extra":1}`,
		`{"NAME":"case folded"}`,
		`{"name":{"nested":true}}`,
		"\xef\xbb\xbf{}",
		"{\"name\":\"\xff\xfe\"}",
		`{"name":"a","name":"b"}`,
		`{"name":"a","NAME":"b"}`,
		`{"name":"a","n\u0061me":"b"}`,
		`{"tier":"a","\u212aind":"b","tier":"c"}`,
		"{\"na\xffme\":\"a\"}",
		`{"name":"\ud83d\ude00"}`,
		`{"name":"\udc00"}`,
		`{"name":"\ud800\u0041"}`,
		`{"name":"\\ud800"}`,
		` null `,
		`{"name":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
		`{"name":{"a":1,"A":2}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := decodeBody[SignupRequest](body)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.code != CodeInvalidJSON {
				t.Fatalf("error %v is not a 400 invalid_json", err)
			}
			if len(body) > 8 && len(ae.message) > 0 && strings.Contains(ae.message, string(body)) {
				t.Fatalf("message %q echoes the body", ae.message)
			}
			return
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeBody[SignupRequest](again)
		if err != nil {
			t.Fatalf("re-encoded request %s does not decode: %v", again, err)
		}
		if diff := cmp.Diff(got, back); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
