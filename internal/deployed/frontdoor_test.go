package deployed

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"
)

// fakeFunction answers each invocation with answer, after waiting for
// delay (or until the caller gives up), and keeps the events it got.
type fakeFunction struct {
	mu     sync.Mutex
	events []events.APIGatewayProxyRequest
	answer Result
	delay  time.Duration
}

func (f *fakeFunction) Invoke(ctx context.Context, _ Source, payload []byte) (*Result, error) {
	var ev events.APIGatewayProxyRequest
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.events = append(f.events, ev)
	f.mu.Unlock()
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res := f.answer
	return &res, nil
}

func (f *fakeFunction) last(t *testing.T) events.APIGatewayProxyRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.events) == 0 {
		t.Fatal("the function was not invoked")
	}
	return f.events[len(f.events)-1]
}

func (f *fakeFunction) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.events)
}

func proxyAnswer(t *testing.T, r events.APIGatewayProxyResponse) Result {
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return Result{Payload: b}
}

// frontDoor serves a REST API like the control plane's (ANY on / and on
// /{proxy+}, stage v1) in front of fn.
func frontDoor(t *testing.T, fn invoker, timeout time.Duration) (*FrontDoor, string) {
	d := &FrontDoor{
		API: "silo", ID: "abc123", h: &Harness{account: "123456789012", region: "us-east-1"},
		stages: map[string]map[string]string{"v1": {"tier": "gold"}},
		binary: []string{"application/zip"},
		routes: []route{
			{resourceID: "root", path: "/", method: "ANY", fn: fn, timeout: timeout},
			{resourceID: "prx", path: "/{proxy+}", method: "ANY", fn: fn, timeout: timeout},
		},
		stats: FrontDoorStats{ByStatus: map[int]int64{}},
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return d, srv.URL
}

func do(t *testing.T, method, url, ctype string, body []byte, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestFrontDoorEvent: a request becomes the REST proxy event API Gateway
// sends (the stage out of the path and into the context, the resource
// matched, every header and query value, the client's address), and the
// function's proxy response becomes the HTTP answer.
func TestFrontDoorEvent(t *testing.T) {
	fn := &fakeFunction{}
	fn.answer = proxyAnswer(t, events.APIGatewayProxyResponse{
		StatusCode: 201, Headers: map[string]string{"Content-Type": "text/plain"},
		MultiValueHeaders: map[string][]string{"Set-Cookie": {"a=1", "b=2"}}, Body: "made",
	})
	d, url := frontDoor(t, fn, time.Minute)
	resp, body := do(t, "GET", url+"/v1/v1/tenants/t-1?state=a&state=b", "", nil, http.Header{"X-Trace": {"one", "two"}})
	if resp.StatusCode != 201 || string(body) != "made" || resp.Header.Get("Content-Type") != "text/plain" ||
		!cmp.Equal(resp.Header.Values("Set-Cookie"), []string{"a=1", "b=2"}) || resp.Header.Get("X-Amzn-RequestId") == "" {
		t.Errorf("answer: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	ev := fn.last(t)
	type seen struct {
		Resource, Path, Method, Stage, ContextPath, ResourcePath, SourceIP, API, Account string
		PathParameters, StageVariables, Query                                            map[string]string
		MultiQuery, MultiTrace                                                           []string
		Trace, ForwardedFor                                                              string
		Base64                                                                           bool
	}
	got := seen{
		Resource: ev.Resource, Path: ev.Path, Method: ev.HTTPMethod, Stage: ev.RequestContext.Stage,
		ContextPath: ev.RequestContext.Path, ResourcePath: ev.RequestContext.ResourcePath,
		SourceIP: ev.RequestContext.Identity.SourceIP, API: ev.RequestContext.APIID, Account: ev.RequestContext.AccountID,
		PathParameters: ev.PathParameters, StageVariables: ev.StageVariables, Query: ev.QueryStringParameters,
		MultiQuery: ev.MultiValueQueryStringParameters["state"], MultiTrace: ev.MultiValueHeaders["X-Trace"],
		Trace: ev.Headers["X-Trace"], ForwardedFor: ev.Headers["X-Forwarded-For"], Base64: ev.IsBase64Encoded,
	}
	want := seen{
		Resource: "/{proxy+}", Path: "/v1/tenants/t-1", Method: "GET", Stage: "v1", ContextPath: "/v1/v1/tenants/t-1",
		ResourcePath: "/{proxy+}", SourceIP: "127.0.0.1", API: "abc123", Account: "123456789012",
		PathParameters: map[string]string{"proxy": "v1/tenants/t-1"}, StageVariables: map[string]string{"tier": "gold"},
		Query: map[string]string{"state": "b"}, MultiQuery: []string{"a", "b"}, MultiTrace: []string{"one", "two"},
		Trace: "two", ForwardedFor: "127.0.0.1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
	if ev.RequestContext.RequestID == "" || ev.RequestContext.RequestID != resp.Header.Get("X-Amzn-RequestId") {
		t.Errorf("request id %q in the event, %q in the answer", ev.RequestContext.RequestID, resp.Header.Get("X-Amzn-RequestId"))
	}

	// The stage's root is the root resource.
	do(t, "GET", url+"/v1", "", nil, nil)
	if ev := fn.last(t); ev.Resource != "/" || ev.Path != "/" || ev.PathParameters != nil {
		t.Errorf("root: resource %q path %q params %v", ev.Resource, ev.Path, ev.PathParameters)
	}
	// A body of a binary media type arrives base64-encoded, text as it is.
	zip := []byte{0x50, 0x4b, 0x03, 0x04, 0xff, 0x00}
	do(t, "POST", url+"/v1/v1/releases", "application/zip", zip, nil)
	if ev := fn.last(t); !ev.IsBase64Encoded || ev.Body != base64.StdEncoding.EncodeToString(zip) {
		t.Errorf("binary body: base64 %v, body %q", ev.IsBase64Encoded, ev.Body)
	}
	do(t, "POST", url+"/v1/v1/signup", "application/json", []byte(`{"name":"Acme"}`), nil)
	if ev := fn.last(t); ev.IsBase64Encoded || ev.Body != `{"name":"Acme"}` {
		t.Errorf("text body: base64 %v, body %q", ev.IsBase64Encoded, ev.Body)
	}
	if st := d.Stats(); st.Requests != 4 || st.ByStatus[201] != 4 {
		t.Errorf("stats %+v, want 4 answers of 201", st)
	}
}

// TestFrontDoorRefusals: what API Gateway answers itself, and what it
// makes of a function that fails, answers nonsense or takes too long.
func TestFrontDoorRefusals(t *testing.T) {
	large := bytes.Repeat([]byte("x"), MaxRequestBody+1)
	encoded := proxyAnswer(t, events.APIGatewayProxyResponse{StatusCode: 200, Body: base64.StdEncoding.EncodeToString([]byte{0, 1, 2}), IsBase64Encoded: true})
	for _, c := range []struct {
		name        string
		path        string
		body        []byte
		answer      Result
		delay       time.Duration
		status      int
		wantBody    string
		wantInvoked bool
	}{
		{"unknown stage", "/v2/v1/signup", nil, Result{}, 0, 403, `{"message":"Forbidden"}`, false},
		{"no stage", "/", nil, Result{}, 0, 403, `{"message":"Forbidden"}`, false},
		{"body over 10 MB", "/v1/v1/releases", large, Result{}, 0, 413, `{"message":"Request Too Long"}`, false},
		{"function error", "/v1/x", nil, Result{Error: "errorString", Payload: []byte(`{"errorMessage":"boom","errorType":"errorString"}`)}, 0, 502, `{"message":"Internal server error"}`, true},
		{"function timed out", "/v1/x", nil, Result{Error: ErrorTimeout}, 0, 502, `{"message":"Internal server error"}`, true},
		{"not a proxy response", "/v1/x", nil, Result{Payload: []byte(`"hello"`)}, 0, 502, `{"message":"Internal server error"}`, true},
		{"integration timeout", "/v1/x", nil, Result{}, time.Hour, 504, `{"message":"Endpoint request timed out"}`, true},
		{"base64 answer", "/v1/x", nil, encoded, 0, 200, "\x00\x01\x02", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fn := &fakeFunction{answer: c.answer, delay: c.delay}
			_, url := frontDoor(t, fn, 200*time.Millisecond)
			resp, body := do(t, "POST", url+c.path, "application/json", c.body, nil)
			if resp.StatusCode != c.status || string(body) != c.wantBody {
				t.Errorf("answer %d %q, want %d %q", resp.StatusCode, body, c.status, c.wantBody)
			}
			if invoked := fn.count() > 0; invoked != c.wantInvoked {
				t.Errorf("function invoked %v, want %v", invoked, c.wantInvoked)
			}
			if c.status >= 400 && !strings.Contains(resp.Header.Get("Content-Type"), "json") {
				t.Errorf("an API Gateway error answered as %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}
