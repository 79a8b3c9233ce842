package deployed

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// QueueStats count what an SQS event source mapping did with its queue.
type QueueStats struct {
	// Received counts messages handed to the function; Redelivered those
	// among them SQS had delivered before (ApproximateReceiveCount > 1).
	Received, Redelivered int64
	// Deleted counts messages the function handled (deleted from the
	// queue); Failed those left for redelivery (the whole batch when the
	// invocation failed or timed out, the reported items otherwise).
	Deleted, Failed int64
	// Undeleted counts messages the function handled whose deletion SQS
	// refused (the role lacks sqs:DeleteMessage): they come back when
	// their visibility timeout passes, as they would in AWS.
	Undeleted int64
	// Exhausted counts messages left in the queue (failed or undeleted)
	// on their last allowed receive (maxReceiveCount of the queue's
	// redrive policy): SQS moves them to the dead-letter queue instead of
	// delivering them again. DeadLettered
	// counts those the harness then saw arrive there.
	Exhausted, DeadLettered int64
}

// eventSource is an SQS event source mapping, polled as Lambda polls it:
// with the function's execution role, by several pollers at once (each
// invocation a batch), deleting what succeeded and leaving what failed to
// SQS's visibility timeout and redrive policy.
type eventSource struct {
	h        *Harness
	fn       *Function
	uuid     string
	queueARN string
	queueURL string
	batch    int
	window   time.Duration
	// reportFailures: the mapping has ReportBatchItemFailures.
	reportFailures bool
	visibility     time.Duration
	// maxReceive is the redrive policy's maxReceiveCount (0: none), dlq
	// the dead-letter queue's URL.
	maxReceive int
	dlq        string
	pollers    int
	// sqs acts as the function's role (Lambda polls with it); admin as
	// the management account, for the harness's own looks.
	sqs, admin *sqs.Client

	mu sync.Mutex
	// hidden are failed messages waiting out their visibility timeout on
	// the harness clock.
	hidden []hiddenMessage
	// unconfirmed counts exhausted messages not yet seen in the DLQ;
	// dlqDepth is the DLQ's depth when last looked at.
	unconfirmed, dlqDepth int
}

type hiddenMessage struct {
	receipt string
	// due is when the message is visible again on the harness clock,
	// realDue in real time (when SQS itself shows it).
	due, realDue time.Time
}

// readEventSources reads the stack's SQS event source mappings and their
// queues.
func (h *Harness) readEventSources(ctx context.Context, l *lambda.Client, admin *sqs.Client) ([]*eventSource, error) {
	var out []*eventSource
	p := lambda.NewListEventSourceMappingsPaginator(l, &lambda.ListEventSourceMappingsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list event source mappings: %w", err)
		}
		for _, m := range page.EventSourceMappings {
			arn := aws.ToString(m.EventSourceArn)
			if !strings.HasPrefix(arn, "arn:aws:sqs:") || aws.ToString(m.State) != "Enabled" {
				continue
			}
			fn := h.functionByARN(aws.ToString(m.FunctionArn))
			if fn == nil {
				return nil, fmt.Errorf("event source %s feeds %s, which is not a function of the stack", aws.ToString(m.UUID), aws.ToString(m.FunctionArn))
			}
			es := &eventSource{
				h: h, fn: fn, uuid: aws.ToString(m.UUID), queueARN: arn,
				batch:          int(aws.ToInt32(m.BatchSize)),
				window:         time.Duration(aws.ToInt32(m.MaximumBatchingWindowInSeconds)) * time.Second,
				reportFailures: slices.Contains(m.FunctionResponseTypes, "ReportBatchItemFailures"),
				pollers:        h.pollers,
				admin:          admin,
			}
			if es.batch <= 0 {
				es.batch = 10 // Lambda's default for SQS
			}
			if m.ScalingConfig != nil && m.ScalingConfig.MaximumConcurrency != nil {
				es.pollers = min(es.pollers, int(*m.ScalingConfig.MaximumConcurrency))
			}
			role := h.cfg.Copy()
			role.Credentials = credentials.NewStaticCredentialsProvider(fn.creds.AccessKeyID, fn.creds.SecretAccessKey, fn.creds.SessionToken)
			es.sqs = sqs.NewFromConfig(role)
			if err := es.readQueue(ctx); err != nil {
				return nil, err
			}
			out = append(out, es)
		}
	}
	return out, nil
}

// readQueue reads the queue's URL, visibility timeout and redrive policy.
// The attributes are read with the function's role, as Lambda reads them
// (a role without sqs:GetQueueAttributes cannot have the mapping); the
// URLs, which Lambda does not need, with the harness's own credentials.
func (es *eventSource) readQueue(ctx context.Context) error {
	parts := strings.Split(es.queueARN, ":")
	name, owner := parts[len(parts)-1], parts[len(parts)-2]
	u, err := es.admin.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name), QueueOwnerAWSAccountId: aws.String(owner)})
	if err != nil {
		return fmt.Errorf("queue %s: %w", es.queueARN, err)
	}
	es.queueURL = aws.ToString(u.QueueUrl)
	attrs, err := es.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameVisibilityTimeout, sqstypes.QueueAttributeNameRedrivePolicy}})
	if err != nil {
		return fmt.Errorf("attributes of queue %s, read with the role of %s: %w", name, es.fn.Config.Name, err)
	}
	vt, _ := strconv.Atoi(attrs.Attributes[string(sqstypes.QueueAttributeNameVisibilityTimeout)])
	es.visibility = time.Duration(vt) * time.Second
	if rp := attrs.Attributes[string(sqstypes.QueueAttributeNameRedrivePolicy)]; rp != "" {
		var policy struct {
			DeadLetterTargetArn string `json:"deadLetterTargetArn"`
			MaxReceiveCount     any    `json:"maxReceiveCount"` // a number or a string
		}
		if err := json.Unmarshal([]byte(rp), &policy); err != nil {
			return fmt.Errorf("redrive policy of queue %s: %w", name, err)
		}
		es.maxReceive, _ = strconv.Atoi(fmt.Sprint(policy.MaxReceiveCount))
		dparts := strings.Split(policy.DeadLetterTargetArn, ":")
		d, err := es.admin.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(dparts[len(dparts)-1])})
		if err != nil {
			return fmt.Errorf("dead-letter queue %s: %w", policy.DeadLetterTargetArn, err)
		}
		es.dlq = aws.ToString(d.QueueUrl)
		// What is there already did not arrive while the harness ran.
		es.dlqDepth, err = es.depth(ctx, es.dlq)
		if err != nil {
			return fmt.Errorf("dead-letter queue %s: %w", policy.DeadLetterTargetArn, err)
		}
	}
	return nil
}

// depth is how many messages a queue holds, visible or not.
func (es *eventSource) depth(ctx context.Context, url string) (int, error) {
	out, err := es.admin.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		return 0, err
	}
	visible, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	hidden, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible + hidden, nil
}

// run polls until ctx ends.
func (es *eventSource) run(ctx context.Context) {
	for range es.pollers {
		es.h.spawn(func() { es.poll(ctx) })
	}
	es.h.spawn(func() { es.keepTime(ctx) })
}

// poll is one poller: receive a batch, invoke, settle it.
func (es *eventSource) poll(ctx context.Context) {
	for ctx.Err() == nil {
		msgs, err := es.receive(ctx)
		if err != nil {
			if ctx.Err() == nil {
				es.fn.logs.note("harness: poll %s: %v", es.queueURL, err)
				// As Lambda backs off when it cannot read its queue (a
				// missing grant): the error is in the function's log.
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		es.deliver(ctx, msgs)
	}
}

// receive gathers up to a batch: one long poll, then more within the
// mapping's batching window.
func (es *eventSource) receive(ctx context.Context) ([]sqstypes.Message, error) {
	var got []sqstypes.Message
	var deadline time.Time
	for len(got) < es.batch {
		wait := int32(1)
		if len(got) > 0 {
			wait = 0
		}
		out, err := es.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(es.queueURL),
			MaxNumberOfMessages:         int32(min(10, es.batch-len(got))),
			WaitTimeSeconds:             wait,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		if err != nil {
			if len(got) > 0 {
				break // deliver what was received
			}
			return nil, err
		}
		if len(got) == 0 {
			if len(out.Messages) == 0 {
				return nil, nil
			}
			deadline = time.Now().Add(es.window)
		}
		got = append(got, out.Messages...)
		if len(out.Messages) == 0 || !time.Now().Before(deadline) {
			break
		}
	}
	return got, nil
}

// deliver invokes the function with msgs as an SQS event and settles
// them as Lambda does.
func (es *eventSource) deliver(ctx context.Context, msgs []sqstypes.Message) {
	received := es.h.Clock.Now()
	realReceived := time.Now()
	ev := events.SQSEvent{}
	for _, m := range msgs {
		ev.Records = append(ev.Records, es.record(m))
	}
	payload, _ := json.Marshal(ev)
	var redelivered int64
	for _, m := range msgs {
		if n, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)]); n > 1 {
			redelivered++
		}
	}
	es.h.count(func(s *Stats) {
		q := s.Queues[es.queueARN]
		q.Received += int64(len(msgs))
		q.Redelivered += redelivered
		s.Queues[es.queueARN] = q
	})
	res, err := es.fn.Invoke(ctx, SourceSQS, payload)
	if err != nil {
		return // the harness is stopping; the messages reappear in SQS
	}
	failed := es.failures(msgs, res)
	var done []sqstypes.Message
	for _, m := range msgs {
		if !failed[aws.ToString(m.MessageId)] {
			done = append(done, m)
		}
	}
	deleted, err := es.delete(ctx, done)
	if err != nil {
		es.fn.logs.note("harness: delete handled messages: %v", err)
	}
	var exhausted int
	es.mu.Lock()
	for _, m := range msgs {
		if deleted[aws.ToString(m.MessageId)] {
			continue
		}
		// A failed message, or a handled one SQS did not delete: it comes
		// back when its visibility timeout passes on the harness clock.
		n, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
		if es.maxReceive > 0 && n >= es.maxReceive {
			exhausted++
		}
		es.hidden = append(es.hidden, hiddenMessage{receipt: aws.ToString(m.ReceiptHandle), due: received.Add(es.visibility), realDue: realReceived.Add(es.visibility)})
	}
	es.unconfirmed += exhausted
	es.mu.Unlock()
	es.h.count(func(s *Stats) {
		q := s.Queues[es.queueARN]
		q.Deleted += int64(len(deleted))
		q.Undeleted += int64(len(done) - len(deleted))
		q.Failed += int64(len(msgs) - len(done))
		q.Exhausted += int64(exhausted)
		s.Queues[es.queueARN] = q
	})
}

// record is one message as Lambda's SQS event carries it.
func (es *eventSource) record(m sqstypes.Message) events.SQSMessage {
	r := events.SQSMessage{
		MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
		Body: aws.ToString(m.Body), Md5OfBody: aws.ToString(m.MD5OfBody),
		Md5OfMessageAttributes: aws.ToString(m.MD5OfMessageAttributes),
		Attributes:             m.Attributes, MessageAttributes: map[string]events.SQSMessageAttribute{},
		EventSourceARN: es.queueARN, EventSource: "aws:sqs", AWSRegion: es.h.region,
	}
	if r.Attributes == nil {
		r.Attributes = map[string]string{}
	}
	for k, a := range m.MessageAttributes {
		r.MessageAttributes[k] = events.SQSMessageAttribute{
			StringValue: a.StringValue, BinaryValue: a.BinaryValue,
			StringListValues: a.StringListValues, BinaryListValues: a.BinaryListValues,
			DataType: aws.ToString(a.DataType),
		}
	}
	return r
}

// failures returns the message ids to leave for redelivery. A failed
// invocation fails the whole batch. With ReportBatchItemFailures the
// function's answer names the failures, and Lambda takes an answer it
// cannot read (invalid JSON, an empty, null or unknown itemIdentifier) as
// the whole batch failing; an empty or null list, or an empty answer, as
// none failing.
func (es *eventSource) failures(msgs []sqstypes.Message, res *Result) map[string]bool {
	all := map[string]bool{}
	for _, m := range msgs {
		all[aws.ToString(m.MessageId)] = true
	}
	if res.Failed() {
		return all
	}
	if !es.reportFailures {
		return map[string]bool{}
	}
	body := strings.TrimSpace(string(res.Payload))
	if body == "" || body == "null" {
		return map[string]bool{}
	}
	var answer struct {
		BatchItemFailures []map[string]any `json:"batchItemFailures"`
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil {
		es.fn.logs.note("harness: request %s: unreadable batch response, the whole batch failed: %v", res.RequestID, err)
		return all
	}
	failed := map[string]bool{}
	for _, item := range answer.BatchItemFailures {
		id, ok := item["itemIdentifier"].(string)
		if !ok || id == "" || !all[id] {
			es.fn.logs.note("harness: request %s: bad itemIdentifier %v, the whole batch failed", res.RequestID, item["itemIdentifier"])
			return all
		}
		failed[id] = true
	}
	return failed
}

// delete deletes msgs from the queue with the function's role, as
// Lambda's poller does, and returns the ids of the messages SQS deleted.
func (es *eventSource) delete(ctx context.Context, msgs []sqstypes.Message) (map[string]bool, error) {
	deleted := map[string]bool{}
	for chunk := range slices.Chunk(msgs, 10) {
		in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(es.queueURL)}
		for i, m := range chunk {
			in.Entries = append(in.Entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
		out, err := es.sqs.DeleteMessageBatch(ctx, in)
		if err != nil {
			return deleted, err
		}
		for _, ok := range out.Successful {
			if i, err := strconv.Atoi(aws.ToString(ok.Id)); err == nil && i < len(chunk) {
				deleted[aws.ToString(chunk[i].MessageId)] = true
			}
		}
		if len(out.Failed) > 0 {
			return deleted, fmt.Errorf("%d of %d deletions failed: %s", len(out.Failed), len(chunk), aws.ToString(out.Failed[0].Message))
		}
	}
	return deleted, nil
}

// keepTime makes failed messages visible again when their visibility
// timeout has passed on the harness clock, which a test may run faster
// than SQS's, and watches the dead-letter queue for the messages SQS
// moves there.
func (es *eventSource) keepTime(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastDLQ := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now, real := es.h.Clock.Now(), time.Now()
		es.mu.Lock()
		var due []hiddenMessage
		kept := es.hidden[:0]
		for _, m := range es.hidden {
			if !now.Before(m.due) {
				due = append(due, m)
			} else {
				kept = append(kept, m)
			}
		}
		es.hidden = kept
		watch := es.unconfirmed > 0 && es.dlq != ""
		es.mu.Unlock()
		for _, m := range due {
			if m.realDue.Sub(real) < 500*time.Millisecond {
				continue // SQS shows it by itself
			}
			_, _ = es.admin.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(es.queueURL), ReceiptHandle: aws.String(m.receipt), VisibilityTimeout: 0,
			})
		}
		if watch && real.Sub(lastDLQ) > 500*time.Millisecond {
			lastDLQ = real
			es.watchDLQ(ctx)
		}
	}
}

// watchDLQ counts the messages that arrived in the dead-letter queue since
// it last looked (as many as were exhausted, at most).
func (es *eventSource) watchDLQ(ctx context.Context) {
	depth, err := es.depth(ctx, es.dlq)
	if err != nil {
		return
	}
	es.mu.Lock()
	arrived := min(max(depth-es.dlqDepth, 0), es.unconfirmed)
	es.unconfirmed -= arrived
	es.dlqDepth = depth
	es.mu.Unlock()
	if arrived > 0 {
		es.h.count(func(s *Stats) {
			q := s.Queues[es.queueARN]
			q.DeadLettered += int64(arrived)
			s.Queues[es.queueARN] = q
		})
	}
}
