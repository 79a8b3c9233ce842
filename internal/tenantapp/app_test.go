package tenantapp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/awsx"
)

// checkSummary is a health body without the latencies, which vary.
func checkSummary(t *testing.T, r response) (string, map[string]Check) {
	t.Helper()
	var h Health
	r.json(t, &h)
	for name, c := range h.Checks {
		c.LatencyMS = 0
		h.Checks[name] = c
	}
	if h.Tenant != testTenant || h.Version != "v1.2.3" {
		t.Errorf("tenant, version = %q, %q", h.Tenant, h.Version)
	}
	return h.Status, h.Checks
}

func TestHealth(t *testing.T) {
	ctx := context.Background()
	env := newTenantEnv(t)

	r := env.do(t, "GET", "/health", "", nil)
	status, checks := checkSummary(t, r)
	want := map[string]Check{"table": {OK: true}, "bucket": {OK: true}, "key": {OK: true}, "secret": {OK: true}}
	if r.status != http.StatusOK || status != "ok" {
		t.Errorf("healthy: status %d %q, want 200 ok; body %s", r.status, status, r.body)
	}
	if d := cmp.Diff(want, checks); d != "" {
		t.Errorf("healthy checks (-want +got):\n%s", d)
	}

	if _, err := env.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(env.cfg.Bucket)}); err != nil {
		t.Fatal(err)
	}
	r = env.do(t, "GET", "/health", "", nil)
	status, checks = checkSummary(t, r)
	want["bucket"] = Check{OK: false, Error: "not found"}
	if r.status != http.StatusServiceUnavailable || status != "degraded" {
		t.Errorf("bucket gone: status %d %q, want 503 degraded", r.status, status)
	}
	if d := cmp.Diff(want, checks); d != "" {
		t.Errorf("bucket gone checks (-want +got):\n%s", d)
	}
	if bytes.Contains(r.body, []byte(env.cfg.Bucket)) || bytes.Contains(r.body, []byte(env.accountID)) {
		t.Errorf("unauthenticated health leaks resource names: %s", r.body)
	}
}

func TestItemsCRUD(t *testing.T) {
	ctx := context.Background()
	env := newTenantEnv(t)
	tok := env.token(t)
	attachment := bytes.Repeat([]byte("silo\x00\xff"), 1000)

	r := env.do(t, "POST", "/items", tok, map[string]any{
		"name": "  invoice  ", "data": map[string]any{"total": 42, "lines": []string{"a", "b"}},
		"attachment": base64.StdEncoding.EncodeToString(attachment),
	})
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var created Item
	r.json(t, &created)
	if !validID(created.ID) || created.CreatedAt.IsZero() || r.header.Get("Location") != "/items/"+created.ID {
		t.Errorf("created = %+v, Location %q", created, r.header.Get("Location"))
	}
	wantItem := Item{ID: created.ID, Name: "invoice", Data: json.RawMessage(`{"lines":["a","b"],"total":42}`),
		CreatedAt: created.CreatedAt, AttachmentSize: aws.Int64(int64(len(attachment)))}
	if d := cmp.Diff(wantItem, created); d != "" {
		t.Errorf("created (-want +got):\n%s", d)
	}

	// The attachment is in the tenant's bucket, encrypted under its key.
	head, err := env.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(env.cfg.Bucket), Key: aws.String(AttachmentPrefix + created.ID)})
	if err != nil {
		t.Fatalf("head attachment: %v", err)
	}
	if head.ServerSideEncryption != s3types.ServerSideEncryptionAwsKms || aws.ToString(head.SSEKMSKeyId) != env.cfg.KMSKeyID {
		t.Errorf("attachment encryption = %s under %s, want aws:kms under %s", head.ServerSideEncryption, aws.ToString(head.SSEKMSKeyId), env.cfg.KMSKeyID)
	}

	r = env.do(t, "GET", "/items/"+created.ID, tok, nil)
	if r.status != http.StatusOK {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	var got Item
	r.json(t, &got)
	wantItem.Attachment = attachment
	if d := cmp.Diff(wantItem, got); d != "" {
		t.Errorf("get (-want +got):\n%s", d)
	}

	r = env.do(t, "POST", "/items", tok, map[string]any{"name": "plain"})
	if r.status != http.StatusCreated {
		t.Fatalf("create plain: %d %s", r.status, r.body)
	}
	var plain Item
	r.json(t, &plain)

	r = env.do(t, "GET", "/items", tok, nil)
	var list listResponse
	r.json(t, &list)
	names := []string{}
	for _, it := range list.Items {
		names = append(names, it.Name)
		if it.Attachment != nil {
			t.Errorf("list includes attachment content of %s", it.ID)
		}
	}
	sort.Strings(names)
	if d := cmp.Diff([]string{"invoice", "plain"}, names); d != "" || list.NextCursor != "" {
		t.Errorf("list names (-want +got):\n%s next_cursor %q", d, list.NextCursor)
	}

	for _, id := range []string{created.ID, plain.ID} {
		if r := env.do(t, "DELETE", "/items/"+id, tok, nil); r.status != http.StatusNoContent {
			t.Errorf("delete %s: %d %s", id, r.status, r.body)
		}
		if r := env.do(t, "GET", "/items/"+id, tok, nil); r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
			t.Errorf("get deleted %s: %d %s", id, r.status, r.body)
		}
		if r := env.do(t, "DELETE", "/items/"+id, tok, nil); r.status != http.StatusNotFound {
			t.Errorf("delete again %s: %d %s", id, r.status, r.body)
		}
	}
	_, err = env.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(env.cfg.Bucket), Key: aws.String(AttachmentPrefix + created.ID)})
	if !awsx.IsNotFound(err) {
		t.Errorf("attachment after delete: err = %v, want not found", err)
	}
}

func TestRequestErrors(t *testing.T) {
	env := newTenantEnv(t)
	tok := env.token(t)
	big := []byte(`{"name":"x","attachment":"` + strings.Repeat("A", MaxBodyBytes) + `"}`)
	tests := []struct {
		name, method, path string
		body               any
		wantStatus         int
		wantCode           string
		wantAllow          string
	}{
		{name: "malformed json", method: "POST", path: "/items", body: []byte(`{"name":`), wantStatus: 400, wantCode: "bad_request"},
		{name: "not json", method: "POST", path: "/items", body: []byte(`hello`), wantStatus: 400, wantCode: "bad_request"},
		{name: "empty body", method: "POST", path: "/items", body: []byte(``), wantStatus: 400, wantCode: "bad_request"},
		{name: "two values", method: "POST", path: "/items", body: []byte(`{"name":"a"} {"name":"b"}`), wantStatus: 400, wantCode: "bad_request"},
		{name: "unknown field", method: "POST", path: "/items", body: []byte(`{"name":"a","nmae":"b"}`), wantStatus: 400, wantCode: "bad_request"},
		{name: "wrong type", method: "POST", path: "/items", body: []byte(`{"name":5}`), wantStatus: 400, wantCode: "bad_request"},
		{name: "no name", method: "POST", path: "/items", body: map[string]any{"data": map[string]any{}}, wantStatus: 400, wantCode: "bad_request"},
		{name: "data not object", method: "POST", path: "/items", body: map[string]any{"name": "a", "data": []int{1}}, wantStatus: 400, wantCode: "bad_request"},
		{name: "bad base64", method: "POST", path: "/items", body: map[string]any{"name": "a", "attachment": "%%%"}, wantStatus: 400, wantCode: "bad_request"},
		{name: "body over 1 MiB", method: "POST", path: "/items", body: big, wantStatus: 413, wantCode: "too_large"},
		{name: "chunked body over 1 MiB", method: "POST", path: "/items", body: chunked(big), wantStatus: 413, wantCode: "too_large"},
		{name: "bad limit", method: "GET", path: "/items?limit=0", wantStatus: 400, wantCode: "bad_request"},
		{name: "limit too big", method: "GET", path: "/items?limit=101", wantStatus: 400, wantCode: "bad_request"},
		{name: "malformed id", method: "GET", path: "/items/..%2f..", wantStatus: 404, wantCode: "not_found"},
		{name: "unknown id", method: "GET", path: "/items/" + strings.Repeat("0", 32), wantStatus: 404, wantCode: "not_found"},
		{name: "unknown path", method: "GET", path: "/nope", wantStatus: 404, wantCode: "not_found"},
		{name: "put items", method: "PUT", path: "/items", wantStatus: 405, wantCode: "method_not_allowed", wantAllow: "GET, HEAD, POST"},
		{name: "post item", method: "POST", path: "/items/" + strings.Repeat("0", 32), wantStatus: 405, wantCode: "method_not_allowed", wantAllow: "GET, HEAD, DELETE"},
		{name: "post health", method: "POST", path: "/health", wantStatus: 405, wantCode: "method_not_allowed", wantAllow: "GET, HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := env.do(t, tc.method, tc.path, tok, tc.body)
			if r.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %.200s", r.status, tc.wantStatus, r.body)
			}
			if code := r.errorCode(t); code != tc.wantCode {
				t.Errorf("code = %q, want %q", code, tc.wantCode)
			}
			if got := r.header.Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tc.wantAllow)
			}
		})
	}
}

func TestPagination(t *testing.T) {
	env := newTenantEnv(t)
	tok := env.token(t)
	want := map[string]bool{}
	for i := range 7 {
		r := env.do(t, "POST", "/items", tok, map[string]any{"name": fmt.Sprintf("item-%d", i)})
		if r.status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		var it Item
		r.json(t, &it)
		want[it.ID] = true
	}

	got := map[string]bool{}
	var sizes []int
	cursor := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("pagination does not end")
		}
		path := "/items?limit=3"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := env.do(t, "GET", path, tok, nil)
		if r.status != http.StatusOK {
			t.Fatalf("page %d: %d %s", page, r.status, r.body)
		}
		var list listResponse
		r.json(t, &list)
		sizes = append(sizes, len(list.Items))
		for _, it := range list.Items {
			if got[it.ID] {
				t.Errorf("item %s on two pages", it.ID)
			}
			got[it.ID] = true
		}
		if list.NextCursor == "" {
			break
		}
		cursor = list.NextCursor
	}
	if d := cmp.Diff([]int{3, 3, 1}, sizes); d != "" {
		t.Errorf("page sizes (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("items seen (-want +got):\n%s", d)
	}

	for _, bad := range []string{"x", "!!!", base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"after":"nope"}`)),
		base64.RawURLEncoding.EncodeToString([]byte(`{"v":2,"after":"` + strings.Repeat("a", 32) + `"}`))} {
		r := env.do(t, "GET", "/items?cursor="+bad, tok, nil)
		if r.status != http.StatusBadRequest || r.errorCode(t) != "bad_cursor" {
			t.Errorf("cursor %q: %d %s, want 400 bad_cursor", bad, r.status, r.body)
		}
	}
}
