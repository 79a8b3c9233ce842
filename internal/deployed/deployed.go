// Package deployed runs silo as AWS runs it, on this machine: the
// control-plane stack (cdk/controlplane), synthesized with the real Lambda
// zips and created in the emulator through CloudFormation as `cdk deploy`
// creates it in a bootstrapped account; each function's real bootstrap
// under the Lambda runtime interface emulator, with exactly the
// configuration the Lambda API reports for it and the credentials of its
// own execution role; and the events AWS would deliver: the SQS event
// source mapping's batches, each scheduled rule's events on a clock a test
// can speed up, and a loopback front door per REST API that turns HTTP
// requests into API Gateway proxy events.
//
// The emulator's IAM enforcement is on for the whole run (locked, so no
// audit window switches it off, and moto's control API is not reachable
// through the proxy the functions talk to): each role's policy, and
// nothing else, decides what a function may do, so a missing grant fails
// the call that needs it. What the emulator does not do as AWS does is
// corrected in internal/emulator (patches 11-17 for this stack).
//
// Functions are built for this machine (linux, its GOARCH), with the flags
// `make build` uses for AWS; builds, zips and the synthesized stack are
// cached between runs (DefaultCacheDir), so a warm start costs the
// emulator's CloudFormation and the functions' first invocations.
package deployed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/silo-saas/silo/cdk/controlplane"
	"github.com/silo-saas/silo/internal/emulator"
)

// Options configure a harness.
type Options struct {
	// Emulator runs the stack; Org is the organization seeded on it (the
	// management account the stack is deployed into). Both required; the
	// harness leaves the emulator running when it closes.
	Emulator *emulator.Emulator
	Org      *emulator.Org
	// Parameters are the stack's parameters (OperatorIssuer,
	// OperatorPublicKey, AllowedRegions); OrganizationId is the seeded
	// organization's unless set.
	Parameters map[string]string
	// SourceDir is the silo checkout the functions are built from; the
	// one holding the working directory when empty.
	SourceDir string
	// CacheDir keeps builds, zips and synthesized stacks between runs;
	// DefaultCacheDir when empty.
	CacheDir string
	// Code builds a function (by its name in controlplane.Functions,
	// "reconciler") from another package of the module than
	// ./lambdas/<name>: a test's stand-in that sleeps past its timeout.
	Code map[string]string
	// Edit changes the synthesized template before the stack is created
	// (a test takes a grant away).
	Edit func(*Template) error
	// Clock is the harness's time (schedules, visibility timeouts); real
	// time from now when nil.
	Clock *Clock
	// LogDir receives a log file per function; a directory the harness
	// makes and removes when empty.
	LogDir string
	// MaxEnvironments bounds each function's concurrent execution
	// environments (10 when zero): its concurrency.
	MaxEnvironments int
	// Pollers is how many pollers read each SQS event source at once
	// (Lambda starts with five; 5 when zero).
	Pollers int
	// FrontDoorAddrs are where REST APIs' front doors listen, by API name
	// ("silo"); a free loopback port otherwise.
	FrontDoorAddrs map[string]string
	// Log receives the harness's own messages (nil discards them).
	Log *slog.Logger
}

// Unmodelled are the resource types of the control-plane stack that the
// emulator's CloudFormation does not make (it skips them silently), and why
// running without them changes nothing a test can see: moto evaluates no
// queue or bucket policy (resource policies) under IAM enforcement, and no
// alarm acts on anything a function does. Every other resource of the
// template must be in the created stack, or the harness refuses to start.
var Unmodelled = map[string]string{
	"AWS::SQS::QueuePolicy":  "resource policy: the emulator does not evaluate it",
	"AWS::S3::BucketPolicy":  "resource policy: the emulator does not evaluate it",
	"AWS::CloudWatch::Alarm": "alarms notify operators; nothing in the stack reads them",
}

// Timings are how long each step of Start took.
type Timings struct {
	Build, Synth, Deploy, Functions, Total time.Duration
}

// Harness is a running deployed topology.
type Harness struct {
	// StackName and StackID name the created control-plane stack; Outputs
	// are its outputs.
	StackName, StackID string
	Outputs            map[string]string
	// Clock is the harness's time.
	Clock *Clock
	// LogDir holds a log file per function (Function.LogFile).
	LogDir string
	// Skipped lists the template's resources the emulator did not make
	// (logical id → type), all of types in Unmodelled.
	Skipped map[string]string
	// Timings are how long the start took, step by step.
	Timings Timings

	ctx    context.Context
	cancel context.CancelFunc
	// work owns every goroutine the harness starts (through spawn);
	// stopping, under mu, refuses new ones once Close waits for them.
	work     sync.WaitGroup
	stopping bool

	emu                       *emulator.Emulator
	cfg                       aws.Config
	account, region, endpoint string
	rie                       string
	pollers                   int
	log                       *slog.Logger
	functions                 map[string]*Function
	doors                     map[string]*FrontDoor
	sources                   []*eventSource
	rules                     []*rule
	workDir                   string
	locked                    bool
	// template is the stack's template as created (after Options.Edit),
	// synthesized as `cdk synth` made it; refs resolves their references
	// against the created stack.
	template, synthesized *Template
	refs                  Refs

	mu          sync.Mutex
	stats       Stats
	invocations []Invocation
	closeOnce   sync.Once
}

// Stats count what the harness delivered and what came of it.
type Stats struct {
	// Functions by name ("silo-api").
	Functions map[string]FunctionStats
	// Queues by the queue's ARN.
	Queues map[string]QueueStats
	// Schedules counts each scheduled rule's firings, by rule name.
	Schedules map[string]int64
	// AsyncDropped counts, by function, asynchronous events (scheduled
	// ones) that failed every attempt Lambda makes.
	AsyncDropped map[string]int64
	// FrontDoors by REST API name.
	FrontDoors map[string]FrontDoorStats
}

// maxInvocations bounds the invocations a harness keeps for Invocations.
const maxInvocations = 10000

// Start deploys the control-plane stack into o.Org's management account
// and runs it; Close stops it.
func Start(ctx context.Context, o Options) (*Harness, error) {
	began := time.Now()
	if o.Emulator == nil || o.Org == nil {
		return nil, errors.New("deployed: Options.Emulator and Options.Org are required")
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := &Harness{
		Clock: o.Clock, emu: o.Emulator, account: o.Org.ManagementAccountID, region: o.Org.Region,
		endpoint: o.Org.Endpoint, pollers: or(o.Pollers, 5), log: log,
		functions: map[string]*Function{}, doors: map[string]*FrontDoor{}, Outputs: map[string]string{},
		stats: Stats{Queues: map[string]QueueStats{}, Schedules: map[string]int64{}, AsyncDropped: map[string]int64{}},
	}
	if h.Clock == nil {
		h.Clock = NewClock(time.Now(), 1)
	}
	h.ctx, h.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := h.start(ctx, o); err != nil {
		h.Close()
		return nil, err
	}
	h.Timings.Total = time.Since(began)
	log.InfoContext(ctx, "deployed topology ready", "stack", h.StackName, "build", h.Timings.Build.Round(time.Millisecond),
		"synth", h.Timings.Synth.Round(time.Millisecond), "deploy", h.Timings.Deploy.Round(time.Millisecond),
		"functions", h.Timings.Functions.Round(time.Millisecond), "total", h.Timings.Total.Round(time.Millisecond))
	return h, nil
}

func (h *Harness) start(ctx context.Context, o Options) error {
	source := o.SourceDir
	if source == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		if source, err = FindSource(wd); err != nil {
			return err
		}
	}
	cache := o.CacheDir
	if cache == "" {
		var err error
		if cache, err = DefaultCacheDir(); err != nil {
			return err
		}
	}
	var err error
	if h.workDir, err = os.MkdirTemp("", "silo-deployed-"); err != nil {
		return err
	}
	h.LogDir = o.LogDir
	if h.LogDir == "" {
		h.LogDir = filepath.Join(h.workDir, "logs")
	}
	if err := os.MkdirAll(h.LogDir, 0o755); err != nil {
		return err
	}

	step := time.Now()
	packages := map[string]string{}
	for _, fn := range controlplane.Functions {
		packages[fn] = "./lambdas/" + fn
	}
	for fn, pkg := range o.Code {
		if _, ok := packages[fn]; !ok {
			return fmt.Errorf("Options.Code names %q, which is not a control-plane function (%v)", fn, controlplane.Functions)
		}
		packages[fn] = pkg
	}
	h.log.InfoContext(ctx, "building the functions", "source", source, "cache", cache)
	art, err := build(ctx, buildSpec{source: source, cache: cache, packages: packages})
	if err != nil {
		return err
	}
	h.rie = art.rie
	h.Timings.Build, step = time.Since(step), time.Now()
	asm, err := synth(synthSpec{cache: cache, a: art, account: h.account, region: h.region})
	if err != nil {
		return err
	}
	h.Timings.Synth, step = time.Since(step), time.Now()

	if h.cfg, err = o.Org.Config(ctx, nil); err != nil {
		return err
	}
	params := map[string]string{"OrganizationId": o.Org.OrganizationID}
	for k, v := range o.Parameters {
		params[k] = v
	}
	if err := bootstrap(ctx, h.cfg, h.account, h.region); err != nil {
		return err
	}
	h.StackName = asm.stackName
	h.log.InfoContext(ctx, "creating the stack", "stack", h.StackName)
	if h.StackID, err = deploy(ctx, deployment{cfg: h.cfg, account: h.account, region: h.region, asm: asm, parameters: params, edit: o.Edit}); err != nil {
		return err
	}
	cfn := cloudformation.NewFromConfig(h.cfg)
	functions, err := h.readStack(ctx, cfn, asm, o.Edit, params)
	if err != nil {
		return err
	}
	h.Timings.Deploy, step = time.Since(step), time.Now()

	// Each function's role is assumed before enforcement goes on: under
	// it the emulator refuses an assume through a trust policy that names
	// a service (lambda.amazonaws.com), which is how Lambda gets them.
	l := lambda.NewFromConfig(h.cfg)
	st := sts.NewFromConfig(h.cfg)
	for _, name := range functions {
		if err := h.prepare(ctx, l, st, art, packages, name, or(o.MaxEnvironments, 10)); err != nil {
			return err
		}
	}
	if err := h.emu.LockIAM(ctx); err != nil {
		return fmt.Errorf("turn IAM enforcement on: %w", err)
	}
	h.locked = true

	if h.sources, err = h.readEventSources(ctx, l, sqs.NewFromConfig(h.cfg)); err != nil {
		return err
	}
	if h.rules, err = h.readRules(ctx, eventbridge.NewFromConfig(h.cfg), h.Clock.Now()); err != nil {
		return err
	}
	doors, err := h.readFrontDoors(ctx, apigateway.NewFromConfig(h.cfg))
	if err != nil {
		return err
	}
	for _, d := range doors {
		if err := d.serve(o.FrontDoorAddrs[d.API]); err != nil {
			return err
		}
		h.doors[d.API] = d
	}
	for _, es := range h.sources {
		es.run(h.ctx)
	}
	for _, r := range h.rules {
		h.spawn(func() { h.runRule(h.ctx, r) })
	}
	h.Timings.Functions = time.Since(step)
	return nil
}

// readStack reads the stack's outputs, checks that every resource of the
// template was made (but those of Unmodelled types), and returns the
// names of its functions.
func (h *Harness) readStack(ctx context.Context, cfn *cloudformation.Client, asm *assembly, edit func(*Template) error, params map[string]string) ([]string, error) {
	out, err := cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(h.StackID)})
	if err != nil {
		return nil, fmt.Errorf("describe stack %s: %w", h.StackName, err)
	}
	for _, o := range out.Stacks[0].Outputs {
		h.Outputs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	made, err := stackResources(ctx, cfn, h.StackID)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(asm.templateFile)
	if err != nil {
		return nil, err
	}
	tpl, err := parseTemplate(raw)
	if err != nil {
		return nil, err
	}
	if h.synthesized, err = parseTemplate(raw); err != nil {
		return nil, err
	}
	if edit != nil {
		if err := edit(tpl); err != nil {
			return nil, err
		}
	}
	h.template = tpl
	h.refs = &stackRefs{partition: partitionOf(h.region), region: h.region, account: h.account, parameters: params, resources: made}
	h.Skipped = map[string]string{}
	var missing []string
	for id, r := range tpl.Resources() {
		if _, ok := made[id]; ok {
			continue
		}
		typ, _ := r["Type"].(string)
		if _, ok := Unmodelled[typ]; ok {
			h.Skipped[id] = typ
			continue
		}
		missing = append(missing, id+" ("+typ+")")
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("the emulator did not make %d resources of stack %s: %s", len(missing), h.StackName, strings.Join(missing, ", "))
	}
	var functions []string
	for _, r := range made {
		if aws.ToString(r.ResourceType) == "AWS::Lambda::Function" {
			functions = append(functions, aws.ToString(r.PhysicalResourceId))
		}
	}
	slices.Sort(functions)
	return functions, nil
}

// prepare reads a function's configuration from the Lambda API, finds
// the zip it was deployed with (by CodeSha256), and assumes its role.
func (h *Harness) prepare(ctx context.Context, l *lambda.Client, st *sts.Client, art *artifacts, packages map[string]string, name string, max int) error {
	c, err := readConfig(ctx, l, name)
	if err != nil {
		return err
	}
	var zip, pkg string
	for fn, sum := range art.sums {
		if sum == c.CodeSha256 {
			zip, pkg = art.zips[fn], packages[fn]
		}
	}
	if zip == "" {
		return fmt.Errorf("function %s runs code the harness did not build (CodeSha256 %s)", name, c.CodeSha256)
	}
	if !slices.Contains(c.Architectures, art.arch) {
		return fmt.Errorf("function %s is deployed for %v; this machine runs %s", name, c.Architectures, art.arch)
	}
	as, err := st.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(c.Role), RoleSessionName: aws.String(name), DurationSeconds: aws.Int32(3600)})
	if err != nil {
		return fmt.Errorf("assume the execution role of %s (%s): %w", name, c.Role, err)
	}
	creds := aws.Credentials{
		AccessKeyID: aws.ToString(as.Credentials.AccessKeyId), SecretAccessKey: aws.ToString(as.Credentials.SecretAccessKey),
		SessionToken: aws.ToString(as.Credentials.SessionToken), Source: "harness:" + name,
	}
	f, err := newFunction(h, c, zip, filepath.Join(h.workDir, "task", name), creds, max)
	if err != nil {
		return err
	}
	f.Package = pkg
	f.asyncRetries = 2 // Lambda's default
	if cfg, err := l.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String(name)}); err == nil && cfg.MaximumRetryAttempts != nil {
		f.asyncRetries = int(*cfg.MaximumRetryAttempts)
	}
	h.functions[name] = f
	return nil
}

func (h *Harness) functionByARN(arn string) *Function {
	parts := strings.Split(arn, ":")
	// arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
	if len(parts) < 7 || parts[5] != "function" {
		return nil
	}
	return h.functions[parts[6]]
}

// Function returns the function named name ("silo-api"), or nil.
func (h *Harness) Function(name string) *Function { return h.functions[name] }

// Functions lists the stack's functions by name.
func (h *Harness) Functions() []string { return sortedKeys(h.functions) }

// FrontDoor returns the front door of the REST API named api ("silo"),
// or nil.
func (h *Harness) FrontDoor(api string) *FrontDoor { return h.doors[api] }

// FrontDoors lists the REST APIs by name.
func (h *Harness) FrontDoors() []string { return sortedKeys(h.doors) }

// EventSource describes an SQS event source mapping the harness polls.
type EventSource struct {
	UUID, Function string
	// QueueARN and QueueURL name the queue; DeadLetterURL its dead-letter
	// queue ("" without a redrive policy), MaxReceiveCount its
	// maxReceiveCount.
	QueueARN, QueueURL, DeadLetterURL string
	MaxReceiveCount                   int
	BatchSize                         int
	ReportBatchItemFailures           bool
	VisibilityTimeout                 time.Duration
}

// EventSources lists the SQS event source mappings the harness polls.
func (h *Harness) EventSources() []EventSource {
	var out []EventSource
	for _, es := range h.sources {
		out = append(out, EventSource{
			UUID: es.uuid, Function: es.fn.Config.Name, QueueARN: es.queueARN, QueueURL: es.queueURL,
			DeadLetterURL: es.dlq, MaxReceiveCount: es.maxReceive, BatchSize: es.batch,
			ReportBatchItemFailures: es.reportFailures, VisibilityTimeout: es.visibility,
		})
	}
	return out
}

// Invoke invokes the function named name directly (as `aws lambda
// invoke` does) and waits for its answer.
func (h *Harness) Invoke(ctx context.Context, name string, payload []byte) (*Result, error) {
	f := h.functions[name]
	if f == nil {
		return nil, fmt.Errorf("no function %s (the stack has %v)", name, h.Functions())
	}
	return f.Invoke(ctx, SourceDirect, payload)
}

// Calls returns, by operation ("EventBridge.PutEvents"), the AWS calls
// made with the function's execution role: its own and those of its
// event source mappings, which Lambda makes with the same role.
func (h *Harness) Calls(name string) map[string]int64 {
	f := h.functions[name]
	if f == nil {
		return nil
	}
	return h.emu.Proxy.Stats().Callers[f.creds.AccessKeyID]
}

// Denied returns the calls of the function's role that IAM refused, by
// operation.
func (h *Harness) Denied(name string) map[string]int64 {
	f := h.functions[name]
	if f == nil {
		return nil
	}
	return h.emu.Proxy.Stats().Denied[f.creds.AccessKeyID]
}

// Invocations returns the invocations made so far (the latest
// maxInvocations), oldest first.
func (h *Harness) Invocations() []Invocation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.invocations)
}

func (h *Harness) record(inv Invocation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.invocations) >= maxInvocations {
		h.invocations = slices.Delete(h.invocations, 0, len(h.invocations)-maxInvocations+1)
	}
	h.invocations = append(h.invocations, inv)
}

// spawn runs f in a goroutine Close waits for, unless the harness is
// closing (then it reports false and does not run f).
func (h *Harness) spawn(f func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopping {
		return false
	}
	h.work.Go(f)
	return true
}

func (h *Harness) count(f func(*Stats)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(&h.stats)
}

// Stats returns what the harness counted so far.
func (h *Harness) Stats() Stats {
	h.mu.Lock()
	out := Stats{Queues: map[string]QueueStats{}, Schedules: map[string]int64{}, AsyncDropped: map[string]int64{},
		Functions: map[string]FunctionStats{}, FrontDoors: map[string]FrontDoorStats{}}
	for k, v := range h.stats.Queues {
		out.Queues[k] = v
	}
	for k, v := range h.stats.Schedules {
		out.Schedules[k] = v
	}
	for k, v := range h.stats.AsyncDropped {
		out.AsyncDropped[k] = v
	}
	h.mu.Unlock()
	for name, f := range h.functions {
		out.Functions[name] = f.Stats()
	}
	for name, d := range h.doors {
		out.FrontDoors[name] = d.Stats()
	}
	return out
}

// Close stops everything the harness started: the front doors, the
// pollers and schedules, every execution environment (an invocation under
// way ends as a crash would end it), and takes IAM enforcement back off.
// The emulator keeps running, and so does the stack in it. A LogDir of
// the caller's stays; the harness's own working directory goes.
func (h *Harness) Close() {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.stopping = true
		h.mu.Unlock()
		h.cancel()
		for _, d := range h.doors {
			d.close()
		}
		for _, f := range h.functions {
			f.close()
		}
		h.work.Wait()
		for _, f := range h.functions {
			f.logs.close()
		}
		if h.locked {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := h.emu.UnlockIAM(ctx); err != nil {
				h.log.Warn("turn IAM enforcement off", "err", err)
			}
			cancel()
		}
		if h.workDir != "" {
			_ = os.RemoveAll(h.workDir)
		}
	})
}

// partitionOf is the partition of a region's ARNs.
func partitionOf(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

func or(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}
