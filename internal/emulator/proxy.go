package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"html"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/grants"
)

// Proxy sits in front of moto and makes it behave like AWS where moto does
// not. Every AWS client in tests and local mode talks to the proxy, never to
// moto directly.
//
// Always: DynamoDB in moto is not serializable. moto checks a condition and
// then writes without a lock, so two concurrent conditional writes (or
// transactions) on one item can both succeed, and a GetItem can see half of
// a transaction. Real DynamoDB serializes them. The proxy restores that by
// running DynamoDB writes one at a time and reads alongside each other but
// never alongside a write.
//
// When configured (Configure, Faults): asynchronous and failing account
// creation with AWS's in-progress limit, throttling and latency per
// operation, slow and failing StackSet operations, new accounts that refuse
// AssumeRole for a while, and a Hook that fails chosen calls. Everything is
// done at the HTTP level, so the code under test sees it through the real
// SDK: its retryer, its error types, its waiters.
type Proxy struct {
	rp     *httputil.ReverseProxy
	target *url.URL
	// client sends the requests the proxy inspects or replays itself.
	client *http.Client

	// dynamo serializes DynamoDB writes against everything else in DynamoDB.
	dynamo sync.RWMutex

	mu     sync.Mutex
	faults Faults
	hook   Hook
	rng    *rand.Rand
	seq    int64
	stats  Stats
	orgs   orgState
	stacks stackState
	// ep owns the background work (pending account creations) started
	// since the last Reset.
	ep *epoch
}

// epoch is the lifetime of background work between two Resets.
type epoch struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newEpoch() *epoch {
	ctx, cancel := context.WithCancel(context.Background())
	return &epoch{ctx: ctx, cancel: cancel}
}

// NewProxy returns a proxy that forwards to target (moto's URL).
func NewProxy(target *url.URL) *Proxy {
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = transport
	// Errors talking to moto become a 502 with a short text; the SDK
	// retries those like any 5xx.
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, "emulator unavailable: "+err.Error(), http.StatusBadGateway)
	}
	p := &Proxy{rp: rp, target: target, client: &http.Client{Transport: transport}, ep: newEpoch()}
	p.resetLocked()
	return p
}

// Configure replaces the fault configuration. Requests already being
// handled keep the configuration they started with; account creations and
// StackSet operations already under way keep their timing.
func (p *Proxy) Configure(f Faults) {
	f.Throttle = maps.Clone(f.Throttle)
	f.Latency = maps.Clone(f.Latency)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = f
	p.rng = rand.New(rand.NewPCG(uint64(f.Seed), uint64(f.Seed)^0x9e3779b97f4a7c15))
}

// SetHook installs h (nil removes it).
func (p *Proxy) SetHook(h Hook) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = h
}

// Stats returns a copy of what the proxy counted since the last Reset.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats.clone()
}

// Reset drops the fault configuration, the hook, the counters and every
// pending account creation or StackSet operation, and waits for the
// proxy's background work to stop. Emulator.Reset calls it before it resets
// moto.
func (p *Proxy) Reset() {
	p.mu.Lock()
	old := p.ep
	p.ep = newEpoch()
	p.resetLocked()
	p.mu.Unlock()
	old.cancel()
	old.wg.Wait()
}

// Close stops the proxy's background work.
func (p *Proxy) Close() {
	p.mu.Lock()
	ep := p.ep
	p.mu.Unlock()
	ep.cancel()
	ep.wg.Wait()
}

func (p *Proxy) resetLocked() {
	p.faults = Faults{}
	p.hook = nil
	p.rng = rand.New(rand.NewPCG(0, 0x9e3779b97f4a7c15))
	p.seq = 0
	p.stats = newStats()
	p.orgs = newOrgState()
	p.stacks = newStackState()
}

// protocol is how a service encodes requests and errors.
type protocol int

const (
	protoREST    protocol = iota // S3 and other REST services
	protoJSON                    // X-Amz-Target: Organizations, DynamoDB, KMS, ...
	protoQuery                   // form-encoded Action=: STS, CloudFormation, IAM
	protoRESTXML                 // REST with XML errors in an ErrorResponse: Route 53
)

// call is one request as the proxy understands it.
type call struct {
	op    awsx.Op
	proto protocol
	// body is the buffered request body (nil for REST requests, whose
	// bodies may be large uploads and are streamed).
	body []byte
	// form is the query-protocol request's parameters.
	form url.Values
}

// serviceIDs maps signing names (from the credential scope) to the SDK's
// service ids, so proxy keys read like awsx.Op.
var serviceIDs = map[string]string{
	"organizations": "Organizations", "sts": "STS", "cloudformation": "CloudFormation",
	"dynamodb": "DynamoDB", "s3": "S3", "iam": "IAM", "kms": "KMS", "ssm": "SSM",
	"secretsmanager": "Secrets Manager", "events": "EventBridge", "sqs": "SQS",
	"monitoring": "CloudWatch", "lambda": "Lambda", "logs": "CloudWatch Logs",
	"states": "SFN", "apigateway": "API Gateway", "tagging": "Resource Groups Tagging API",
	"route53": "Route 53",
}

// identify works out a request's service and operation. The signing
// scope names the service reliably for every protocol; the operation is in
// X-Amz-Target (JSON), the form's Action (query) or the method and path
// (REST).
func identify(r *http.Request) (*call, error) {
	signing := signingName(r)
	c := &call{op: awsx.Op{Service: signing}}
	if id, ok := serviceIDs[signing]; ok {
		c.op.Service = id
	}
	if signing == "s3" {
		c.op.Operation = s3Operation(r)
		return c, nil
	}
	if signing == "route53" {
		// REST-XML: the body (a change batch) is small; it is forwarded
		// as it came.
		c.proto, c.op.Operation = protoRESTXML, route53Operation(r)
		return c, nil
	}
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		c.body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		c.proto = protoJSON
		c.op.Operation = target[strings.LastIndexByte(target, '.')+1:]
		return c, nil
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		form, err := url.ParseQuery(string(c.body))
		if err == nil && form.Get("Action") != "" {
			c.proto = protoQuery
			c.form = form
			c.op.Operation = form.Get("Action")
			return c, nil
		}
	}
	if a := r.URL.Query().Get("Action"); a != "" {
		c.proto, c.form, c.op.Operation = protoQuery, r.URL.Query(), a
		return c, nil
	}
	c.op.Operation = r.Method + " " + r.URL.Path
	return c, nil
}

// accessKey returns the access key id that signed r (the first element of
// its credential scope), or "" for an unsigned request.
func accessKey(r *http.Request) string {
	scope := r.URL.Query().Get("X-Amz-Credential")
	if auth := r.Header.Get("Authorization"); auth != "" {
		if _, after, ok := strings.Cut(auth, "Credential="); ok {
			scope, _, _ = strings.Cut(after, ",")
		}
	}
	id, _, _ := strings.Cut(strings.TrimSpace(scope), "/")
	return id
}

func bump[K comparable](m map[string]map[K]int64, caller string, key K) {
	if m[caller] == nil {
		m[caller] = map[K]int64{}
	}
	m[caller][key]++
}

// denialRecorder notes whether an answer is an access denial: a 403 or a
// 400 (the JSON services answer AccessDeniedException with 400) whose
// error code names AccessDenied; other 403s (a bad signature, an unknown
// key) are not about permissions. It keeps the first bytes of such a body
// to look for the code, and passes everything through.
type denialRecorder struct {
	http.ResponseWriter
	status int
	head   []byte
}

func (d *denialRecorder) WriteHeader(status int) {
	if d.status == 0 {
		d.status = status
	}
	d.ResponseWriter.WriteHeader(status)
}

func (d *denialRecorder) Write(b []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	if (d.status == http.StatusBadRequest || d.status == http.StatusForbidden) && len(d.head) < 2048 {
		d.head = append(d.head, b[:min(len(b), 2048-len(d.head))]...)
	}
	return d.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (the reverse proxy's flushes) reach
// the connection's writer.
func (d *denialRecorder) Unwrap() http.ResponseWriter { return d.ResponseWriter }

func (d *denialRecorder) denied() bool {
	return (d.status == http.StatusBadRequest || d.status == http.StatusForbidden) && bytes.Contains(d.head, []byte("AccessDenied"))
}

// signingName returns the service of the SigV4 credential scope
// (AKID/date/region/service/aws4_request), from the Authorization header or
// a presigned URL.
func signingName(r *http.Request) string {
	scope := r.URL.Query().Get("X-Amz-Credential")
	if auth := r.Header.Get("Authorization"); auth != "" {
		if _, after, ok := strings.Cut(auth, "Credential="); ok {
			scope, _, _ = strings.Cut(after, ",")
		}
	}
	parts := strings.Split(strings.TrimSpace(scope), "/")
	if len(parts) < 5 {
		return ""
	}
	return parts[3]
}

// s3Operation names the common S3 operations from the method and path
// (path-style addressing, as the emulator's clients use).
func s3Operation(r *http.Request) string {
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ := strings.Cut(path, "/")
	q := r.URL.Query()
	switch {
	case bucket == "":
		return "ListBuckets"
	case key != "":
		switch r.Method {
		case http.MethodGet:
			return "GetObject"
		case http.MethodHead:
			return "HeadObject"
		case http.MethodPut:
			if r.Header.Get("X-Amz-Copy-Source") != "" {
				return "CopyObject"
			}
			return "PutObject"
		case http.MethodDelete:
			return "DeleteObject"
		}
	case q.Has("delete") && r.Method == http.MethodPost:
		return "DeleteObjects"
	case r.Method == http.MethodGet && q.Get("list-type") == "2":
		return "ListObjectsV2"
	case r.Method == http.MethodGet && len(q) == 0 || q.Has("prefix") || q.Has("marker"):
		return "ListObjects"
	case r.Method == http.MethodPut && len(q) == 0:
		return "CreateBucket"
	case r.Method == http.MethodDelete && len(q) == 0:
		return "DeleteBucket"
	case r.Method == http.MethodHead:
		return "HeadBucket"
	}
	for sub := range q {
		// Bucket subresources: PUT ?policy is PutBucketPolicy, and so on.
		verb := map[string]string{http.MethodGet: "Get", http.MethodPut: "Put", http.MethodDelete: "Delete"}[r.Method]
		if verb != "" && sub != "" {
			return verb + "Bucket" + strings.ToUpper(sub[:1]) + sub[1:]
		}
	}
	return r.Method + "Bucket"
}

// route53Operation names the Route 53 operations silo makes from the
// method and path (/2013-04-01/hostedzone/{Id}/rrset, ...).
func route53Operation(r *http.Request) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) >= 2 {
		parts = parts[1:] // the API version
	}
	switch {
	case len(parts) == 1 && parts[0] == "hostedzone":
		if r.Method == http.MethodPost {
			return "CreateHostedZone"
		}
		return "ListHostedZones"
	case len(parts) == 1 && parts[0] == "hostedzonesbyname":
		return "ListHostedZonesByName"
	case len(parts) == 2 && parts[0] == "hostedzone":
		if r.Method == http.MethodDelete {
			return "DeleteHostedZone"
		}
		return "GetHostedZone"
	case len(parts) == 3 && parts[0] == "hostedzone" && parts[2] == "rrset":
		if r.Method == http.MethodPost {
			return "ChangeResourceRecordSets"
		}
		return "ListResourceRecordSets"
	case len(parts) == 2 && parts[0] == "change":
		return "GetChange"
	}
	return r.Method + " " + r.URL.Path
}

// ControlPath is the prefix of moto's own control API (reset, IAM
// enforcement, seeding). The proxy refuses it: everything that talks AWS
// through the proxy (the control plane, the functions the deployed-mode
// harness runs, tenant apps) could otherwise switch enforcement off or
// wipe the emulator. Whoever holds the Emulator reaches moto directly.
const ControlPath = "/moto-api/"

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, ControlPath) {
		http.Error(w, "the emulator's control API is not served to AWS clients", http.StatusForbidden)
		return
	}
	c, err := identify(r)
	if err != nil {
		http.Error(w, "read request: "+err.Error(), http.StatusBadRequest)
		return
	}
	key := c.op.String()
	caller := accessKey(r)
	var needs []grants.Access
	if caller != "" {
		needs = accesses(c, r)
	}

	p.mu.Lock()
	p.seq++
	n := p.seq
	p.stats.Calls[key]++
	if caller != "" {
		bump(p.stats.Callers, caller, key)
		for _, a := range needs {
			bump(p.stats.Accesses, caller, a)
		}
	}
	f, hook := p.faults, p.hook
	p.mu.Unlock()

	if hook != nil {
		if err := hook(c.op, n); err != nil {
			p.count(func(s *Stats) { s.HookFailures++ })
			if errors.Is(err, ErrDropConnection) {
				dropConnection(w)
				return
			}
			writeInternalError(w, c, err)
			return
		}
	}
	if d, _ := lookup(f.Latency, c.op); d > 0 {
		p.count(func(s *Stats) { s.Latency[key] += d })
		t := time.NewTimer(d)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	if p.throttles(f, c.op) {
		p.count(func(s *Stats) { s.Throttled[key]++ })
		writeThrottle(w, c)
		return
	}
	if caller != "" {
		rec := &denialRecorder{ResponseWriter: w}
		defer func() {
			if rec.denied() {
				p.count(func(s *Stats) { bump(s.Denied, caller, key) })
			}
		}()
		w = rec
	}

	switch c.op.Service {
	case "Organizations":
		if p.serveOrganizations(w, r, c, &f) {
			return
		}
	case "STS":
		if p.serveSTS(w, r, c, &f) {
			return
		}
	case "CloudFormation":
		if p.serveStackSets(w, r, c, &f) {
			return
		}
	case "DynamoDB":
		if dynamoWrites[c.op.Operation] {
			p.dynamo.Lock()
			defer p.dynamo.Unlock()
		} else {
			p.dynamo.RLock()
			defer p.dynamo.RUnlock()
		}
	}
	p.rp.ServeHTTP(w, r)
}

func (p *Proxy) count(f func(*Stats)) {
	p.mu.Lock()
	f(&p.stats)
	p.mu.Unlock()
}

// throttles decides, with the configured fraction for op, whether to
// throttle this call.
func (p *Proxy) throttles(f Faults, op awsx.Op) bool {
	frac, ok := lookup(f.Throttle, op)
	if !ok || frac <= 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Float64() < frac
}

// dynamoWrites are the DynamoDB operations that change items or tables.
var dynamoWrites = map[string]bool{
	"PutItem": true, "UpdateItem": true, "DeleteItem": true, "BatchWriteItem": true,
	"TransactWriteItems": true, "ExecuteStatement": true, "BatchExecuteStatement": true,
	"ExecuteTransaction": true, "CreateTable": true, "DeleteTable": true, "UpdateTable": true,
}

// forward sends a request built from r (same method, path, headers) with
// body to moto and returns moto's answer, read in full. The proxy uses it
// for the calls whose answers it inspects or rewrites, and to replay a
// CreateAccount when its delay is over. The request keeps the Host it was
// sent to (the proxy's), which its signature covers: under IAM
// enforcement moto checks the signature, and a request sent on with
// moto's own host answered SignatureDoesNotMatch.
func (p *Proxy) forward(ctx context.Context, method, host, uri string, header http.Header, body []byte) (*response, error) {
	u := *p.target
	u.Path, u.RawQuery = "", ""
	req, err := http.NewRequestWithContext(ctx, method, u.String()+uri, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "Connection", "Accept-Encoding", "Transfer-Encoding":
			continue
		}
		req.Header[k] = v
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// response is a buffered answer from moto.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) write(w http.ResponseWriter) {
	for k, v := range r.header {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "Connection", "Transfer-Encoding":
			continue
		}
		w.Header()[k] = v
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}

// forwardCall forwards the request as it came (with a possibly changed
// body).
func (p *Proxy) forwardCall(r *http.Request, body []byte) (*response, error) {
	return p.forward(r.Context(), r.Method, r.Host, r.URL.RequestURI(), r.Header, body)
}

func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	// Cannot hijack (HTTP/2): abort the response instead.
	panic(http.ErrAbortHandler)
}

// awsError is an error answer in one service's wire shape.
type awsError struct {
	status  int
	code    string
	message string
	// extra JSON members (Organizations' Reason, Type).
	extra map[string]string
}

// queryNamespaces are the XML namespaces of query-protocol error answers.
var queryNamespaces = map[string]string{
	"STS":            "https://sts.amazonaws.com/doc/2011-06-15/",
	"CloudFormation": "http://cloudformation.amazonaws.com/doc/2010-05-15/",
	"IAM":            "https://iam.amazonaws.com/doc/2010-05-08/",
	"Route 53":       "https://route53.amazonaws.com/doc/2013-04-01/",
}

// writeError answers with e in c's protocol: JSON with __type for JSON
// services, <ErrorResponse><Error><Type>Sender</Type><Code> for query
// services, <Error><Code> for S3, and the X-Amzn-ErrorType header for
// other REST services. These are the shapes the SDK's deserializers parse
// the error code from.
func writeError(w http.ResponseWriter, c *call, e awsError) {
	id := fmt.Sprintf("%x", time.Now().UnixNano())
	switch {
	case c.proto == protoJSON || (c.proto == protoREST && c.op.Service != "S3"):
		body := map[string]string{"__type": e.code, "message": e.message}
		if c.op.Service == "Organizations" {
			// Organizations spells it Message.
			delete(body, "message")
			body["Message"] = e.message
		}
		maps.Copy(body, e.extra)
		b, _ := json.Marshal(body)
		ctype := "application/x-amz-json-1.1"
		if c.op.Service == "DynamoDB" {
			ctype = "application/x-amz-json-1.0"
		}
		if c.proto == protoREST {
			ctype = "application/json"
			w.Header().Set("X-Amzn-ErrorType", e.code)
		}
		if c.op.Service == "DynamoDB" {
			// The DynamoDB client checks every answer's CRC32.
			w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(b)), 10))
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("X-Amzn-RequestId", id)
		w.WriteHeader(e.status)
		_, _ = w.Write(b)
	case c.proto == protoQuery || c.proto == protoRESTXML:
		// Route 53 (REST-XML) answers errors in the query services' shape;
		// its SDK deserializer reads nothing else (a JSON body is not
		// even an error it can classify, so it is never retried).
		typ := "Sender"
		if e.status >= 500 {
			typ = "Receiver"
		}
		ns := queryNamespaces[c.op.Service]
		if ns == "" {
			ns = "https://" + strings.ToLower(c.op.Service) + ".amazonaws.com/doc/"
		}
		w.Header().Set("Content-Type", "text/xml")
		w.Header().Set("X-Amzn-RequestId", id)
		w.WriteHeader(e.status)
		fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
			ns, typ, e.code, html.EscapeString(e.message), id)
	default: // S3
		w.Header().Set("Content-Type", "application/xml")
		w.Header().Set("X-Amz-Request-Id", id)
		w.WriteHeader(e.status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Error><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId></Error>`,
			e.code, html.EscapeString(e.message), id)
	}
}

// writeThrottle answers with the throttling error c's service really
// returns.
func writeThrottle(w http.ResponseWriter, c *call) {
	switch {
	case c.op.Service == "Organizations":
		writeError(w, c, awsError{status: http.StatusBadRequest, code: "TooManyRequestsException",
			message: "AWS Organizations can't complete your request because another request is already in progress. Try again later.",
			extra:   map[string]string{"Type": "RequestThrottled"}})
	case c.op.Service == "DynamoDB" && dynamoItemOps[c.op.Operation]:
		writeError(w, c, awsError{status: http.StatusBadRequest, code: "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
			message: "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."})
	case c.op.Service == "DynamoDB":
		writeError(w, c, awsError{status: http.StatusBadRequest, code: "com.amazonaws.dynamodb.v20120810#ThrottlingException", message: "Rate of requests exceeds the allowed throughput."})
	case c.proto == protoQuery || c.proto == protoRESTXML:
		// Route 53 as the query services: HTTP 400, Throttling.
		writeError(w, c, awsError{status: http.StatusBadRequest, code: "Throttling", message: "Rate exceeded"})
	case c.op.Service == "S3":
		writeError(w, c, awsError{status: http.StatusServiceUnavailable, code: "SlowDown", message: "Please reduce your request rate."})
	case c.proto == protoJSON:
		writeError(w, c, awsError{status: http.StatusBadRequest, code: "ThrottlingException", message: "Rate exceeded"})
	default:
		writeError(w, c, awsError{status: http.StatusTooManyRequests, code: "TooManyRequestsException", message: "Too Many Requests"})
	}
}

// dynamoItemOps are the DynamoDB data-plane calls, which are throttled with
// ProvisionedThroughputExceededException; control-plane calls get
// ThrottlingException.
var dynamoItemOps = map[string]bool{
	"GetItem": true, "PutItem": true, "UpdateItem": true, "DeleteItem": true, "Query": true, "Scan": true,
	"BatchGetItem": true, "BatchWriteItem": true, "TransactGetItems": true, "TransactWriteItems": true,
}

func writeInternalError(w http.ResponseWriter, c *call, err error) {
	code := "InternalFailure"
	if c.op.Service == "S3" {
		code = "InternalError"
	}
	writeError(w, c, awsError{status: http.StatusInternalServerError, code: code, message: "injected failure: " + err.Error()})
}
