package awsx

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// Counter counts AWS API calls by service and operation. Attach it to a
// config and every client built from that config (and its copies) reports to
// it. Tests assert on it (no Scan on a hot path) and benchmarks print it
// (calls per tenant). One logical call counts once, however many times the
// retryer sends it; Attempts counts what went over the wire.
type Counter struct {
	mu       sync.Mutex
	calls    map[Op]int64
	attempts map[Op]int64
	elapsed  map[Op]time.Duration
}

// Op names one API operation, such as {"DynamoDB", "Query"}.
type Op struct{ Service, Operation string }

func (o Op) String() string { return o.Service + "." + o.Operation }

// NewCounter returns an empty counter.
func NewCounter() *Counter {
	return &Counter{calls: map[Op]int64{}, attempts: map[Op]int64{}, elapsed: map[Op]time.Duration{}}
}

// Attach adds the counting middleware to cfg's API options.
func (c *Counter) Attach(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, c.addMiddleware)
}

func (c *Counter) addMiddleware(stack *middleware.Stack) error {
	err := stack.Initialize.Add(middleware.InitializeMiddlewareFunc("silo.CountCalls",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			op := opOf(ctx)
			c.add(c.calls, op)
			began := time.Now()
			out, md, err := next.HandleInitialize(ctx, in)
			c.mu.Lock()
			c.elapsed[op] += time.Since(began)
			c.mu.Unlock()
			return out, md, err
		}), middleware.Before)
	if err != nil {
		return err
	}
	// Finalize runs once per attempt, after the retry middleware.
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("silo.CountAttempts",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			c.add(c.attempts, opOf(ctx))
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}

func opOf(ctx context.Context) Op {
	return Op{Service: awsmiddleware.GetServiceID(ctx), Operation: awsmiddleware.GetOperationName(ctx)}
}

func (c *Counter) add(m map[Op]int64, op Op) {
	c.mu.Lock()
	m[op]++
	c.mu.Unlock()
}

// Calls returns how many calls of service.operation were made.
func (c *Counter) Calls(service, operation string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[Op{service, operation}]
}

// Total returns the number of calls of every operation.
func (c *Counter) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.calls {
		n += v
	}
	return n
}

// OpCount is one row of a snapshot.
type OpCount struct {
	Op
	Calls, Attempts int64
	// Elapsed is the time spent in the calls, retries included.
	Elapsed time.Duration
}

// Snapshot returns every operation seen, sorted by service and operation.
func (c *Counter) Snapshot() []OpCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]OpCount, 0, len(c.calls))
	for op, n := range c.calls {
		out = append(out, OpCount{Op: op, Calls: n, Attempts: c.attempts[op], Elapsed: c.elapsed[op]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Reset zeroes every count.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.calls)
	clear(c.attempts)
	clear(c.elapsed)
}
