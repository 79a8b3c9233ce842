package deployed

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/silo-saas/silo/internal/awsx"
)

// Source is what delivered an invocation.
type Source string

// The event sources the harness delivers, as AWS does, and a direct
// invocation (a test, or `aws lambda invoke`).
const (
	SourceDirect     Source = "direct"
	SourceSQS        Source = "sqs"
	SourceSchedule   Source = "schedule"
	SourceAPIGateway Source = "apigateway"
)

// Error types the harness reports for invocations that did not end in
// the function's own answer, named as Lambda names them.
const (
	ErrorTimeout = "Sandbox.Timedout"
	ErrorExit    = "Runtime.ExitError"
	// ErrorTooLarge: the answer is larger than Lambda returns from a
	// synchronous invocation (6 MB).
	ErrorTooLarge = "Function.ResponseSizeTooLarge"
)

// maxResponse is Lambda's limit on a synchronous invocation's answer.
const maxResponse = 6 << 20

// FunctionConfig is a function as the Lambda API describes it: what the
// harness runs it with.
type FunctionConfig struct {
	Name, ARN, Role, Handler, Runtime string
	Timeout                           time.Duration
	MemoryMB                          int32
	Architectures                     []string
	// Environment is the function's environment variables, as the stack
	// set them.
	Environment map[string]string
	// CodeSha256 names the code package (base64 SHA-256 of the zip).
	CodeSha256 string
}

// readConfig reads a function's configuration from the Lambda API.
func readConfig(ctx context.Context, l *lambda.Client, name string) (FunctionConfig, error) {
	out, err := l.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
	if err != nil {
		return FunctionConfig{}, fmt.Errorf("read the configuration of function %s: %w", name, err)
	}
	c := FunctionConfig{
		Name: aws.ToString(out.FunctionName), ARN: aws.ToString(out.FunctionArn), Role: aws.ToString(out.Role),
		Handler: aws.ToString(out.Handler), Runtime: string(out.Runtime),
		Timeout:  time.Duration(aws.ToInt32(out.Timeout)) * time.Second,
		MemoryMB: aws.ToInt32(out.MemorySize), CodeSha256: aws.ToString(out.CodeSha256),
		Environment: map[string]string{},
	}
	for _, a := range out.Architectures {
		c.Architectures = append(c.Architectures, string(a))
	}
	if out.Environment != nil {
		for k, v := range out.Environment.Variables {
			c.Environment[k] = v
		}
	}
	if c.Timeout <= 0 {
		c.Timeout = 3 * time.Second // Lambda's default
	}
	return c, nil
}

// Result is how one invocation ended.
type Result struct {
	RequestID string
	// Payload is the function's answer, or the error document Lambda
	// would return.
	Payload []byte
	// Error is the error type when the invocation failed ("" when it
	// succeeded): the function's own (errorType), ErrorTimeout,
	// ErrorExit for a runtime that died, ErrorTooLarge.
	Error   string
	Message string
	// Duration is how long the invocation took, as the harness saw it.
	Duration time.Duration
}

// Failed reports whether the invocation failed (a function error, a
// crash or a timeout).
func (r *Result) Failed() bool { return r.Error != "" }

// TimedOut reports whether the invocation outlived the function's timeout.
func (r *Result) TimedOut() bool { return r.Error == ErrorTimeout }

// Invocation is one invocation the harness made, for tests to look at.
type Invocation struct {
	Function string
	Source   Source
	// Payload is the event, its first MaxKeptPayload bytes when
	// PayloadTruncated (a 10 MB upload through a front door is not kept
	// whole).
	Payload          []byte
	PayloadTruncated bool
	Start            time.Time
	Result           Result
}

// MaxKeptPayload bounds the bytes of an event an Invocation keeps.
const MaxKeptPayload = 256 << 10

// Function is one control-plane function run as Lambda runs it: each
// execution environment is the runtime interface emulator with the real
// bootstrap, one invocation at a time, started on demand up to a limit
// and reused while it stays healthy. A timeout or a crash ends the
// environment (its processes killed); the next invocation gets a new one.
type Function struct {
	Config FunctionConfig
	// Package is the Go package its bootstrap was built from:
	// "./lambdas/<name>", or a stand-in of Options.Code.
	Package string

	h     *Harness
	creds aws.Credentials
	// taskDir holds the bootstrap extracted from the function's code.
	taskDir string
	env     []string
	logs    *logFile
	slots   chan struct{}
	// asyncRetries is how often Lambda retries a failed asynchronous
	// invocation of the function.
	asyncRetries int

	mu      sync.Mutex
	idle    []*environment
	busy    map[*environment]bool
	nextEnv int
	closed  bool
	stats   FunctionStats
}

// FunctionStats count what happened to a function.
type FunctionStats struct {
	// Invocations by event source.
	Invocations map[Source]int64
	// Errors counts failed invocations of every kind; Timeouts and
	// Crashes those that outlived the timeout or whose runtime died.
	Errors, Timeouts, Crashes int64
	// Environments counts the execution environments started (cold
	// starts): one per concurrent invocation, plus one after each timeout
	// or crash.
	Environments int64
}

func (s FunctionStats) clone() FunctionStats {
	out := s
	out.Invocations = map[Source]int64{}
	for k, v := range s.Invocations {
		out.Invocations[k] = v
	}
	return out
}

// newFunction prepares a function to run: its bootstrap extracted from
// zip into dir, its process environment.
func newFunction(h *Harness, c FunctionConfig, zipPath, dir string, creds aws.Credentials, max int) (*Function, error) {
	if err := extractBootstrap(zipPath, dir); err != nil {
		return nil, fmt.Errorf("function %s: %w", c.Name, err)
	}
	logs, err := openLog(filepath.Join(h.LogDir, c.Name+".log"))
	if err != nil {
		return nil, err
	}
	f := &Function{
		Config: c, h: h, creds: creds, taskDir: dir, logs: logs,
		slots: make(chan struct{}, max),
		busy:  map[*environment]bool{},
		stats: FunctionStats{Invocations: map[Source]int64{}},
	}
	f.env = f.processEnv()
	return f, nil
}

// processEnv is what Lambda gives a provided.al2023 runtime: the
// function's variables, its role's credentials, the reserved variables
// (which a function's own cannot override), and nothing of the harness's
// own environment. SILO_AWS_ENDPOINT points the SDK at the emulator.
func (f *Function) processEnv() []string {
	c := f.Config
	vars := map[string]string{}
	for k, v := range c.Environment {
		vars[k] = v
	}
	region := f.h.region
	reserved := map[string]string{
		"AWS_ACCESS_KEY_ID":               f.creds.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":           f.creds.SecretAccessKey,
		"AWS_SESSION_TOKEN":               f.creds.SessionToken,
		"AWS_REGION":                      region,
		"AWS_DEFAULT_REGION":              region,
		"AWS_LAMBDA_FUNCTION_NAME":        c.Name,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(int(c.MemoryMB)),
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		// The runtime interface emulator reads the timeout from here and
		// gives each invocation that deadline.
		"AWS_LAMBDA_FUNCTION_TIMEOUT": strconv.Itoa(int(c.Timeout / time.Second)),
		"AWS_LAMBDA_LOG_GROUP_NAME":   "/aws/lambda/" + c.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME":  "harness",
		"_HANDLER":                    c.Handler,
		"LAMBDA_TASK_ROOT":            f.taskDir,
		"TZ":                          ":UTC",
		"LANG":                        "en_US.UTF-8",
		"PATH":                        "/usr/local/bin:/usr/bin/:/bin:/opt/bin",
		awsx.EndpointEnv:              f.h.endpoint,
	}
	for k, v := range reserved {
		vars[k] = v
	}
	out := make([]string, 0, len(vars))
	for _, k := range sortedKeys(vars) {
		out = append(out, k+"="+vars[k])
	}
	return out
}

// Stats returns what happened to the function so far.
func (f *Function) Stats() FunctionStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats.clone()
}

// LogFile is the file the function's environments write to (its
// bootstrap's and the runtime interface emulator's output) and the
// harness notes each invocation in.
func (f *Function) LogFile() string { return f.logs.path }

// Invoke runs one invocation with payload, as Lambda would for source,
// and returns how it ended. It returns an error only when the harness
// could not run it (no environment would start) or ctx ended first; in
// the latter case the invocation goes on, as it does in Lambda when a
// caller stops waiting, and its outcome is still counted.
func (f *Function) Invoke(ctx context.Context, source Source, payload []byte) (*Result, error) {
	select {
	case f.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	env, err := f.environment(ctx)
	if err != nil {
		<-f.slots
		return nil, err
	}
	id := requestID()
	began := time.Now()
	f.logs.note("harness: invoke %s request %s (%d bytes)", source, id, len(payload))
	done := make(chan *Result, 1)
	if !f.h.spawn(func() {
		res := env.invoke(f.h.ctx, id, payload, f.Config.Timeout)
		res.Duration = time.Since(began)
		f.finish(env, source, payload, began, res)
		<-f.slots
		done <- res
	}) {
		env.kill()
		<-f.slots
		return nil, errors.New("the harness is closing")
	}
	select {
	case res := <-done:
		return res, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// finish counts an invocation, keeps its environment when it is healthy
// and ends it otherwise.
func (f *Function) finish(env *environment, source Source, payload []byte, began time.Time, res *Result) {
	healthy := res.Error != ErrorTimeout && res.Error != ErrorExit && env.alive()
	f.mu.Lock()
	delete(f.busy, env)
	f.stats.Invocations[source]++
	if res.Failed() {
		f.stats.Errors++
	}
	switch res.Error {
	case ErrorTimeout:
		f.stats.Timeouts++
	case ErrorExit:
		f.stats.Crashes++
	}
	if healthy && !f.closed {
		f.idle = append(f.idle, env)
	}
	f.mu.Unlock()
	if !healthy || f.isClosed() {
		env.kill()
	}
	if res.Failed() {
		f.logs.note("harness: request %s failed after %s: %s: %s", res.RequestID, res.Duration.Round(time.Millisecond), res.Error, res.Message)
	} else {
		f.logs.note("harness: request %s succeeded after %s", res.RequestID, res.Duration.Round(time.Millisecond))
	}
	inv := Invocation{Function: f.Config.Name, Source: source, Payload: payload, Start: began, Result: *res}
	if len(payload) > MaxKeptPayload {
		// A copy: a slice of the whole would keep all of it.
		inv.Payload, inv.PayloadTruncated = bytes.Clone(payload[:MaxKeptPayload]), true
	}
	f.h.record(inv)
}

func (f *Function) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// environment returns an idle execution environment, or starts one.
func (f *Function) environment(ctx context.Context) (*environment, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, errors.New("the harness is closed")
	}
	for len(f.idle) > 0 {
		env := f.idle[len(f.idle)-1]
		f.idle = f.idle[:len(f.idle)-1]
		if env.alive() {
			f.busy[env] = true
			f.mu.Unlock()
			return env, nil
		}
	}
	f.nextEnv++
	n := f.nextEnv
	f.stats.Environments++
	f.mu.Unlock()
	env, err := f.start(ctx, n)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		env.kill()
		return nil, errors.New("the harness is closed")
	}
	f.busy[env] = true
	return env, nil
}

// KillRuntimes kills (SIGKILL) the runtime process of every environment
// running an invocation, as a crash of the execution environment would,
// and returns how many it killed. Their invocations end as ErrorExit; the
// next invocations get new environments.
func (f *Function) KillRuntimes() int {
	f.mu.Lock()
	envs := make([]*environment, 0, len(f.busy))
	for env := range f.busy {
		envs = append(envs, env)
	}
	f.mu.Unlock()
	n := 0
	for _, env := range envs {
		for _, pid := range childPIDs(env.cmd.Process.Pid) {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
	}
	return n
}

// close ends every environment; invocations under way end as crashes.
func (f *Function) close() {
	f.mu.Lock()
	f.closed = true
	envs := slices.Clone(f.idle)
	f.idle = nil
	for env := range f.busy {
		envs = append(envs, env)
	}
	f.mu.Unlock()
	for _, env := range envs {
		env.kill()
	}
}

// environment is one execution environment: the runtime interface
// emulator (with the bootstrap as its child) in a process group of its
// own.
type environment struct {
	n    int
	cmd  *exec.Cmd
	url  string
	done chan struct{}
	once sync.Once
}

// start launches an execution environment and waits until it accepts
// invocations. Ports picked here can be taken before the emulator binds
// them; a few attempts ride that out.
func (f *Function) start(ctx context.Context, n int) (*environment, error) {
	var last error
	for range 3 {
		env, err := f.startOnce(ctx, n)
		if err == nil {
			return env, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("start an execution environment of %s: %w", f.Config.Name, last)
}

func (f *Function) startOnce(ctx context.Context, n int) (*environment, error) {
	invokePort, err := freePort()
	if err != nil {
		return nil, err
	}
	runtimePort, err := freePort()
	if err != nil {
		return nil, err
	}
	invokeAddr := "127.0.0.1:" + strconv.Itoa(invokePort)
	// Every emulator would otherwise serve the runtime API on 9001.
	cmd := exec.Command(f.h.rie,
		"--runtime-interface-emulator-address", invokeAddr,
		"--runtime-api-address", "127.0.0.1:"+strconv.Itoa(runtimePort),
		filepath.Join(f.taskDir, "bootstrap"))
	cmd.Dir = f.taskDir
	cmd.Env = f.env
	out := f.logs.writer(fmt.Sprintf("[env %d] ", n))
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own, so a kill reaches the bootstrap too;
	// killed by the kernel if the harness dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", f.h.rie, err)
	}
	env := &environment{n: n, cmd: cmd, url: "http://" + invokeAddr + "/2015-03-31/functions/function/invocations", done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(env.done)
	}()
	f.logs.note("harness: environment %d started (pid %d)", n, cmd.Process.Pid)
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		conn, err := net.DialTimeout("tcp", invokeAddr, time.Second)
		if err == nil {
			conn.Close()
			return env, nil
		}
		select {
		case <-env.done:
			return nil, fmt.Errorf("the runtime interface emulator exited before it listened on %s (see %s)", invokeAddr, f.logs.path)
		case <-ctx.Done():
			env.kill()
			return nil, ctx.Err()
		case <-deadline.C:
			env.kill()
			return nil, fmt.Errorf("the runtime interface emulator did not listen on %s within 15s", invokeAddr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// invocationGrace is how long past the function's timeout the harness
// waits for the runtime interface emulator's own timeout answer before it
// kills the environment itself.
const invocationGrace = 3 * time.Second

// invoke runs one invocation in the environment.
func (e *environment) invoke(parent context.Context, id string, payload []byte, timeout time.Duration) *Result {
	res := &Result{RequestID: id}
	ctx, cancel := context.WithTimeout(parent, timeout+invocationGrace)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(payload))
	if err != nil {
		res.Error, res.Message = ErrorExit, err.Error()
		return res
	}
	req.Header.Set("X-Amzn-RequestId", id)
	resp, err := invokeClient.Do(req)
	if err != nil {
		if parent.Err() != nil {
			e.kill()
			res.Error, res.Message = ErrorExit, "the harness stopped"
			return res
		}
		if ctx.Err() != nil {
			// The emulator did not end it: the harness does.
			e.kill()
			res.Error, res.Message = ErrorTimeout, fmt.Sprintf("Task timed out after %.2f seconds", timeout.Seconds())
			return res
		}
		res.Error, res.Message = ErrorExit, "the execution environment stopped: "+err.Error()
		return res
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		res.Error, res.Message = ErrorExit, "read the answer: "+err.Error()
		return res
	}
	res.Payload = body
	switch {
	case resp.StatusCode == http.StatusOK && bytes.HasPrefix(body, []byte("Task timed out after")):
		// The emulator killed the runtime at the deadline (it answers 200).
		res.Error, res.Message = ErrorTimeout, string(body)
		res.Payload = errorDocument(res.Error, res.Message)
	case resp.StatusCode == http.StatusOK:
		if len(body) > maxResponse {
			res.Error, res.Message = ErrorTooLarge, fmt.Sprintf("the answer is larger than %d bytes", maxResponse)
			res.Payload = errorDocument(res.Error, res.Message)
		} else if typ, msg, ok := functionError(body); ok {
			res.Error, res.Message = typ, msg
		}
	default:
		// 502: the runtime exited (or failed its init); other statuses
		// are the emulator's own failures.
		typ, msg, ok := functionError(body)
		if !ok {
			typ, msg = ErrorExit, fmt.Sprintf("the runtime interface emulator answered %d: %s", resp.StatusCode, bytes.TrimSpace(body))
		}
		res.Error, res.Message = typ, msg
	}
	return res
}

// invokeClient reaches the environments on loopback; the invocation's
// context bounds each request.
var invokeClient = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute}}

// functionError reads the error document a failed invocation answers:
// {"errorMessage": ..., "errorType": ...}, maybe with a stack trace. The
// emulator answers a function's error with 200 like a success, so the
// shape is what tells them apart; no silo function answers that shape.
func functionError(body []byte) (string, string, bool) {
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		return "", "", false
	}
	var typ, msg string
	if json.Unmarshal(doc["errorType"], &typ) != nil || typ == "" {
		return "", "", false
	}
	_ = json.Unmarshal(doc["errorMessage"], &msg)
	for k := range doc {
		switch k {
		case "errorType", "errorMessage", "stackTrace", "cause":
		default:
			return "", "", false
		}
	}
	return typ, msg, true
}

func errorDocument(typ, msg string) []byte {
	b, _ := json.Marshal(map[string]string{"errorType": typ, "errorMessage": msg})
	return b
}

func (e *environment) alive() bool {
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

// kill ends the environment's process group and waits for it.
func (e *environment) kill() {
	e.once.Do(func() {
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
	})
	<-e.done
}

// extractBootstrap writes the zip's bootstrap into dir, executable.
func extractBootstrap(zipPath, dir string) error {
	r, err := zip.OpenReader(zipPath)
	if err != nil {
		return fmt.Errorf("open code package %s: %w", zipPath, err)
	}
	defer r.Close()
	for _, f := range r.File {
		if f.Name != "bootstrap" {
			continue
		}
		in, err := f.Open()
		if err != nil {
			return err
		}
		defer in.Close()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(filepath.Join(dir, "bootstrap"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	return fmt.Errorf("code package %s has no bootstrap", zipPath)
}

// childPIDs lists the direct children of pid (Linux /proc).
func childPIDs(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, field := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(field); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// requestID is a Lambda-style request id (a random UUID).
func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
