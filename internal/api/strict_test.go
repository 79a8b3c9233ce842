package api

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDecodeStrict: what encoding/json alone lets through is a 400
// invalid_json naming the field: a name twice (in any case, escaped or
// not), a string that is not UTF-8 or has an unpaired surrogate, null or
// another value for the body, nesting past the bound. Good bodies decode.
func TestDecodeStrict(t *testing.T) {
	deep := `{"tenants":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`
	tests := []struct {
		name, body string
		// wantField is the field the error names ("" for none); wantIn a
		// part of the message. Both empty: the body decodes.
		wantField, wantIn string
	}{
		{"good", goodBody, "", ""},
		{"paired surrogates are a character", `{"name":"Smile \ud83d\ude00 Co"}`, "", ""},
		{"an escaped backslash before u is not an escape", `{"name":"C:\\ud800"}`, "", ""},
		{"one name in another case is that field", `{"NAME":"Acme"}`, "", ""},
		{"null body", `null`, "", "the body is null"},
		{"null body with spaces", " \n null \t", "", "the body is null"},
		{"an array", `[{"name":"a"}]`, "", "must be a JSON object"},
		{"a string", `"name"`, "", "must be a JSON object"},
		{"empty", ``, "", "empty"},
		{"data after the object", goodBody + ` {}`, "", "data after the JSON object"},
		{"garbage after the object", goodBody + ` x`, "", "data after the JSON object"},
		{"same name twice", `{"name":"a","name":"b"}`, "name", "appears twice"},
		{"same name in another case", `{"name":"a","email":"x@y.example","NAME":"b"}`, "NAME", `as "name" and "NAME"`},
		{"same name escaped", `{"name":"a","n\u0061me":"b"}`, "name", "appears twice"},
		{"kelvin sign folds to k", `{"kind":"a","\u212aIND":"b"}`, "\u212aIND", "appears twice"},
		{"long s folds to s", `{"stage":1,"\u017ftage":2}`, "\u017ftage", "appears twice"},
		{"twice in a nested object", `{"tenants":[{"a":1,"A":2}]}`, "tenants[0].A", "appears twice"},
		{"invalid UTF-8 in a value", "{\"name\":\"Ac\xffme\"}", "name", "not valid UTF-8"},
		{"invalid UTF-8 in a later value", "{\"name\":\"a\",\"email\":\"\xc3\"}", "email", "not valid UTF-8"},
		{"invalid UTF-8 in a name", "{\"na\xffme\":\"a\"}", "", "has a field name that is not valid UTF-8"},
		{"invalid UTF-8 in a list", "{\"tenants\":[\"ok\",\"b\xfe\"]}", "tenants[1]", "not valid UTF-8"},
		{"lone high surrogate", `{"name":"\ud800"}`, "name", "unpaired surrogate"},
		{"high surrogate then a letter", `{"name":"\ud800\u0041"}`, "name", "unpaired surrogate"},
		{"lone low surrogate", `{"region":"\udc00"}`, "region", "unpaired surrogate"},
		{"nested too deep", deep, "", "deeper than"},
		{"unknown field", `{"name":"a","kind":"preview"}`, "kind", "not a field of this request"},
		{"wrong type", `{"name":7}`, "name", "must be a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeBody[SignupRequest]([]byte(tc.body))
			if tc.wantField == "" && tc.wantIn == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v, want a 400 invalid_json", err)
			}
			if ae.status != http.StatusBadRequest || ae.code != CodeInvalidJSON {
				t.Errorf("%d %s, want 400 %s", ae.status, ae.code, CodeInvalidJSON)
			}
			if !strings.Contains(ae.message, tc.wantIn) {
				t.Errorf("message %q does not say %q", ae.message, tc.wantIn)
			}
			var want []FieldProblem
			if tc.wantField != "" {
				want = []FieldProblem{{Field: tc.wantField, Problem: strings.TrimPrefix(ae.message, "field "+tc.wantField+" ")}}
				if !strings.HasPrefix(ae.message, "field "+tc.wantField+" ") {
					t.Errorf("message %q does not name field %s", ae.message, tc.wantField)
				}
			}
			if diff := cmp.Diff(want, ae.fields); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNullBodyIsInvalidJSON: through the handler, a null signup body is
// the 400 docs/api.md documents, not a 422 for every field missing.
func TestNullBodyIsInvalidJSON(t *testing.T) {
	f := newFixture(t, Options{})
	before := f.snapshot(t)
	r := f.do(t, signupReq("null-body", `null`))
	if r.status != http.StatusBadRequest || r.errorCode(t) != CodeInvalidJSON {
		t.Errorf("null body: %d %s, want 400 %s", r.status, r.body, CodeInvalidJSON)
	}
	dup := f.do(t, signupReq("dup-body", `{"name":"Acme","email":"ops@acme.example","tier":"basic","region":"us-east-1","Name":"Evil"}`))
	if dup.status != http.StatusBadRequest || dup.errorCode(t) != CodeInvalidJSON {
		t.Errorf("duplicate name: %d %s, want 400 %s", dup.status, dup.body, CodeInvalidJSON)
	}
	if diff := cmp.Diff(before, f.snapshot(t)); diff != "" {
		t.Errorf("refused bodies changed the registry (-before +after):\n%s", diff)
	}
}
