package deployed

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	apitypes "github.com/aws/aws-sdk-go-v2/service/apigateway/types"

	"github.com/silo-saas/silo/internal/server"
)

// API Gateway's limits on a REST API request, which the front door holds
// requests to as API Gateway does.
const (
	MaxRequestBody     = 10 << 20 // 10 MB payload
	IntegrationTimeout = 29 * time.Second
)

// FrontDoor serves one REST API on a loopback port as API Gateway serves
// it: the stage is the first segment of the URL's path, the resource
// tree picks the function, and the request reaches the function as a
// REST proxy event (events.APIGatewayProxyRequest) whose path has no
// stage; the function's proxy response is the HTTP answer.
type FrontDoor struct {
	// API is the REST API's name; ID its id.
	API, ID string
	// URL is the front door's root; a stage's URL (what API Gateway
	// calls the invoke URL) is StageURL.
	URL string

	h      *Harness
	stages map[string]map[string]string // stage → its variables
	routes []route
	binary []string
	srv    *http.Server

	mu    sync.Mutex
	stats FrontDoorStats
}

// FrontDoorStats count a front door's requests and how they ended.
type FrontDoorStats struct {
	Requests int64
	// ByStatus counts answers by HTTP status.
	ByStatus map[int]int64
}

// route is one method of one resource with a Lambda proxy integration.
type route struct {
	resourceID, path, method string
	fn                       invoker
	timeout                  time.Duration
}

// invoker runs a function's invocation; *Function is one.
type invoker interface {
	Invoke(ctx context.Context, source Source, payload []byte) (*Result, error)
}

// StageURL is the invoke URL of a stage: the front door's root and the
// stage, as https://{id}.execute-api.{region}.amazonaws.com/{stage}.
func (d *FrontDoor) StageURL(stage string) string { return d.URL + "/" + stage }

// Stages lists the REST API's stages.
func (d *FrontDoor) Stages() []string { return sortedKeys(d.stages) }

// Stats returns what the front door served so far.
func (d *FrontDoor) Stats() FrontDoorStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.stats
	out.ByStatus = map[int]int64{}
	for k, v := range d.stats.ByStatus {
		out.ByStatus[k] = v
	}
	return out
}

// readFrontDoors reads every REST API of the stack: stages, binary media
// types, resources and their Lambda proxy integrations.
func (h *Harness) readFrontDoors(ctx context.Context, ag *apigateway.Client) ([]*FrontDoor, error) {
	var out []*FrontDoor
	apis := apigateway.NewGetRestApisPaginator(ag, &apigateway.GetRestApisInput{})
	for apis.HasMorePages() {
		page, err := apis.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list REST APIs: %w", err)
		}
		for _, api := range page.Items {
			d := &FrontDoor{API: aws.ToString(api.Name), ID: aws.ToString(api.Id), h: h, binary: api.BinaryMediaTypes,
				stages: map[string]map[string]string{}, stats: FrontDoorStats{ByStatus: map[int]int64{}}}
			stages, err := ag.GetStages(ctx, &apigateway.GetStagesInput{RestApiId: api.Id})
			if err != nil {
				return nil, fmt.Errorf("stages of REST API %s: %w", d.API, err)
			}
			for _, s := range stages.Item {
				d.stages[aws.ToString(s.StageName)] = s.Variables
			}
			if len(d.stages) == 0 {
				return nil, fmt.Errorf("REST API %s has no stage: it is not deployed", d.API)
			}
			resources := apigateway.NewGetResourcesPaginator(ag, &apigateway.GetResourcesInput{RestApiId: api.Id, Embed: []string{"methods"}})
			for resources.HasMorePages() {
				rp, err := resources.NextPage(ctx)
				if err != nil {
					return nil, fmt.Errorf("resources of REST API %s: %w", d.API, err)
				}
				for _, r := range rp.Items {
					for method, m := range r.ResourceMethods {
						in := m.MethodIntegration
						if in == nil {
							got, err := ag.GetIntegration(ctx, &apigateway.GetIntegrationInput{RestApiId: api.Id, ResourceId: r.Id, HttpMethod: aws.String(method)})
							if err != nil {
								return nil, fmt.Errorf("integration of %s %s in %s: %w", method, aws.ToString(r.Path), d.API, err)
							}
							in = &apitypes.Integration{Type: got.Type, Uri: got.Uri, TimeoutInMillis: got.TimeoutInMillis}
						}
						if in.Type != "AWS_PROXY" {
							return nil, fmt.Errorf("%s %s in %s: integration %s; the harness serves Lambda proxy integrations", method, aws.ToString(r.Path), d.API, in.Type)
						}
						fn := h.functionByARN(integrationFunction(aws.ToString(in.Uri)))
						if fn == nil {
							return nil, fmt.Errorf("%s %s in %s integrates %s, which is not a function of the stack", method, aws.ToString(r.Path), d.API, aws.ToString(in.Uri))
						}
						timeout := IntegrationTimeout
						if in.TimeoutInMillis > 0 && time.Duration(in.TimeoutInMillis)*time.Millisecond < timeout {
							timeout = time.Duration(in.TimeoutInMillis) * time.Millisecond
						}
						d.routes = append(d.routes, route{resourceID: aws.ToString(r.Id), path: aws.ToString(r.Path), method: method, fn: fn, timeout: timeout})
					}
				}
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// integrationFunction takes the function's ARN out of a Lambda proxy
// integration's URI (arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/ARN/invocations).
func integrationFunction(uri string) string {
	_, after, ok := strings.Cut(uri, "/functions/")
	if !ok {
		return ""
	}
	return strings.TrimSuffix(after, "/invocations")
}

// serve starts the front door on addr (a free loopback port when empty).
func (d *FrontDoor) serve(addr string) error {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("front door of %s on %s: %w", d.API, addr, err)
	}
	d.URL = "http://" + ln.Addr().String()
	// Reads take a 10 MB body; answers wait up to the integration timeout.
	d.srv = server.New(d, server.Timeouts{Header: 10 * time.Second, Read: time.Minute, Write: IntegrationTimeout + 30*time.Second, Idle: 2 * time.Minute})
	if !d.h.spawn(func() {
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.h.log.Error("front door stopped", "api", d.API, "err", err)
		}
	}) {
		ln.Close()
		return errors.New("the harness is closing")
	}
	return nil
}

func (d *FrontDoor) close() {
	if d.srv != nil {
		_ = d.srv.Close()
	}
}

// gatewayError is API Gateway's own answer: {"message": ...}.
func (d *FrontDoor) gatewayError(w http.ResponseWriter, status int, message, id string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-RequestId", id)
	w.Header().Set("X-Amzn-ErrorType", strings.ReplaceAll(http.StatusText(status), " ", "")+"Exception")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"message": message})
	_, _ = w.Write(b)
	d.count(status)
}

func (d *FrontDoor) count(status int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Requests++
	d.stats.ByStatus[status]++
}

func (d *FrontDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := requestID()
	began := time.Now()
	stage, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	vars, ok := d.stages[stage]
	if !ok {
		d.gatewayError(w, http.StatusForbidden, "Forbidden", id)
		return
	}
	path := "/" + rest
	rt, params := d.match(r.Method, path)
	if rt == nil {
		// API Gateway's answer to a path no resource has.
		d.gatewayError(w, http.StatusForbidden, "Missing Authentication Token", id)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBody+1))
	if err != nil {
		d.gatewayError(w, http.StatusBadRequest, "could not read the request body", id)
		return
	}
	if len(body) > MaxRequestBody {
		d.gatewayError(w, http.StatusRequestEntityTooLarge, "Request Too Long", id)
		return
	}
	ev := d.event(r, stage, vars, path, rt, params, body, id, began)
	payload, err := json.Marshal(ev)
	if err != nil {
		d.gatewayError(w, http.StatusInternalServerError, "Internal server error", id)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), rt.timeout)
	defer cancel()
	res, err := rt.fn.Invoke(ctx, SourceAPIGateway, payload)
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		d.gatewayError(w, http.StatusGatewayTimeout, "Endpoint request timed out", id)
		return
	case err != nil:
		// The client went away, or the harness is stopping.
		d.gatewayError(w, http.StatusServiceUnavailable, "Service Unavailable", id)
		return
	case res.Failed():
		d.gatewayError(w, http.StatusBadGateway, "Internal server error", id)
		return
	}
	var out events.APIGatewayProxyResponse
	if err := json.Unmarshal(res.Payload, &out); err != nil || out.StatusCode < 100 || out.StatusCode > 599 {
		// API Gateway: "Malformed Lambda proxy response".
		d.gatewayError(w, http.StatusBadGateway, "Internal server error", id)
		return
	}
	respBody := []byte(out.Body)
	if out.IsBase64Encoded {
		if respBody, err = base64.StdEncoding.DecodeString(out.Body); err != nil {
			d.gatewayError(w, http.StatusBadGateway, "Internal server error", id)
			return
		}
	}
	for k, vs := range out.MultiValueHeaders {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	for k, v := range out.Headers {
		if _, multi := out.MultiValueHeaders[k]; !multi {
			w.Header().Set(k, v)
		}
	}
	w.Header().Set("X-Amzn-RequestId", id)
	w.WriteHeader(out.StatusCode)
	_, _ = w.Write(respBody)
	d.count(out.StatusCode)
}

// match picks the resource and method for a request, as API Gateway
// does: literal path parts before {param} before a greedy {param+}, and a
// method of its own before ANY.
func (d *FrontDoor) match(method, path string) (*route, map[string]string) {
	parts := splitPath(path)
	var best *route
	var bestParams map[string]string
	bestScore := -1
	for i := range d.routes {
		rt := &d.routes[i]
		if rt.method != method && rt.method != "ANY" {
			continue
		}
		params, score, ok := matchResource(splitPath(rt.path), parts)
		if !ok {
			continue
		}
		score = score*2 + map[bool]int{true: 1}[rt.method == method]
		if score > bestScore {
			best, bestParams, bestScore = rt, params, score
		}
	}
	return best, bestParams
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// matchResource matches path parts against a resource path's parts and
// scores how specific the match is.
func matchResource(tpl, parts []string) (map[string]string, int, bool) {
	params := map[string]string{}
	score := 0
	for i, t := range tpl {
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "+}") {
			if i >= len(parts) {
				return nil, 0, false // a greedy parameter takes at least one part
			}
			params[strings.TrimSuffix(strings.TrimPrefix(t, "{"), "+}")] = strings.Join(parts[i:], "/")
			return params, score, true
		}
		if i >= len(parts) {
			return nil, 0, false
		}
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
			params[strings.Trim(t, "{}")] = parts[i]
			score += 2
			continue
		}
		if t != parts[i] {
			return nil, 0, false
		}
		score += 3
	}
	if len(tpl) != len(parts) {
		return nil, 0, false
	}
	return params, score, true
}

// event builds the REST proxy event API Gateway sends the function.
func (d *FrontDoor) event(r *http.Request, stage string, vars map[string]string, path string, rt *route, params map[string]string, body []byte, id string, at time.Time) events.APIGatewayProxyRequest {
	source, port, _ := net.SplitHostPort(r.RemoteAddr)
	_, localPort, _ := net.SplitHostPort(r.Host)
	headers, multi := map[string]string{}, map[string][]string{}
	for k, vs := range r.Header {
		multi[k] = slices.Clone(vs)
		headers[k] = vs[len(vs)-1]
	}
	// API Gateway appends the client's address to X-Forwarded-For and
	// says how the client reached it.
	fwd := source
	if prev := r.Header.Values("X-Forwarded-For"); len(prev) > 0 {
		fwd = strings.Join(prev, ", ") + ", " + source
	}
	multi["X-Forwarded-For"], headers["X-Forwarded-For"] = []string{fwd}, fwd
	multi["X-Forwarded-Proto"], headers["X-Forwarded-Proto"] = []string{"http"}, "http"
	if localPort == "" {
		localPort = port
	}
	multi["X-Forwarded-Port"], headers["X-Forwarded-Port"] = []string{localPort}, localPort
	ev := events.APIGatewayProxyRequest{
		Resource: rt.path, Path: path, HTTPMethod: r.Method,
		Headers: headers, MultiValueHeaders: multi,
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID: d.h.account, ResourceID: rt.resourceID, Stage: stage, RequestID: id, ExtendedRequestID: id,
			Protocol: r.Proto, ResourcePath: rt.path, Path: "/" + stage + path, HTTPMethod: r.Method,
			RequestTime: at.UTC().Format("02/Jan/2006:15:04:05 -0700"), RequestTimeEpoch: at.UnixMilli(),
			APIID: d.ID, DomainName: r.Host, DomainPrefix: d.ID,
			Identity: events.APIGatewayRequestIdentity{SourceIP: source, UserAgent: r.UserAgent()},
		},
	}
	if len(params) > 0 {
		ev.PathParameters = params
	}
	if len(vars) > 0 {
		ev.StageVariables = vars
	}
	if q := r.URL.Query(); len(q) > 0 {
		ev.QueryStringParameters, ev.MultiValueQueryStringParameters = map[string]string{}, map[string][]string{}
		for k, vs := range q {
			ev.QueryStringParameters[k] = vs[len(vs)-1]
			ev.MultiValueQueryStringParameters[k] = vs
		}
	}
	if len(body) > 0 {
		if d.isBinary(r.Header.Get("Content-Type")) {
			ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
		} else {
			// Text as it came; bytes that are not UTF-8 are replaced, as
			// API Gateway does with a binary body it was not told of.
			ev.Body = strings.ToValidUTF8(string(body), string(utf8.RuneError))
		}
	}
	return ev
}

// isBinary reports whether a request of this content type reaches the
// function base64-encoded: when the API's binary media types name it
// (type/subtype, type/*, or */*).
func (d *FrontDoor) isBinary(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	for _, b := range d.binary {
		b = strings.ToLower(b)
		if b == "*/*" || b == mt || strings.HasSuffix(b, "/*") && strings.HasPrefix(mt, strings.TrimSuffix(b, "*")) {
			return true
		}
	}
	return false
}
