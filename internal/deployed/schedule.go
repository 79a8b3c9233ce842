package deployed

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
)

// Schedule is an EventBridge schedule expression: rate(...) or cron(...).
type Schedule interface {
	// Next is the first time after t the schedule fires, false when it
	// never fires again (a cron whose years are over).
	Next(t time.Time) (time.Time, bool)
}

// ParseSchedule reads an EventBridge schedule expression, as EventBridge
// validates it: rate(1 minute), rate(5 minutes), cron(17 3 * * ? *). A
// rate counts from anchor (when the rule was made). The cron forms L, W
// and # are not supported (no silo schedule uses them) and are refused.
func ParseSchedule(expr string, anchor time.Time) (Schedule, error) {
	switch {
	case strings.HasPrefix(expr, "rate(") && strings.HasSuffix(expr, ")"):
		return parseRate(strings.TrimSuffix(strings.TrimPrefix(expr, "rate("), ")"), anchor)
	case strings.HasPrefix(expr, "cron(") && strings.HasSuffix(expr, ")"):
		return parseCron(strings.TrimSuffix(strings.TrimPrefix(expr, "cron("), ")"))
	}
	return nil, fmt.Errorf("schedule %q: want rate(...) or cron(...)", expr)
}

type rate struct {
	anchor time.Time
	every  time.Duration
}

func parseRate(s string, anchor time.Time) (Schedule, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return nil, fmt.Errorf("rate(%s): want a value and a unit", s)
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 1 {
		return nil, fmt.Errorf("rate(%s): the value must be a positive whole number", s)
	}
	units := map[string]time.Duration{"minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}
	// EventBridge wants the plural for values above 1 and the singular
	// for 1.
	unit, plural := strings.CutSuffix(f[1], "s")
	switch {
	case n > 1 && !plural:
		return nil, fmt.Errorf("rate(%s): a value above 1 takes %ss", s, unit)
	case n == 1 && plural:
		return nil, fmt.Errorf("rate(%s): a value of 1 takes %s", s, unit)
	}
	d, ok := units[unit]
	if !ok {
		return nil, fmt.Errorf("rate(%s): the unit must be minute(s), hour(s) or day(s)", s)
	}
	return rate{anchor: anchor, every: time.Duration(n) * d}, nil
}

func (r rate) Next(t time.Time) (time.Time, bool) {
	if t.Before(r.anchor) {
		return r.anchor.Add(r.every), true
	}
	k := t.Sub(r.anchor)/r.every + 1
	return r.anchor.Add(k * r.every), true
}

// cron is an EventBridge cron expression: minutes, hours, day of month,
// month, day of week, year, in UTC.
type cron struct {
	minute, hour, dom, month, dow, year []bool
	// anyDOM and anyDOW: the field is "?" (EventBridge wants exactly one
	// of them so).
	anyDOM, anyDOW bool
}

var (
	monthNames = map[string]int{"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}
	dayNames   = map[string]int{"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
)

func parseCron(s string) (Schedule, error) {
	f := strings.Fields(s)
	if len(f) != 6 {
		return nil, fmt.Errorf("cron(%s): want 6 fields (minutes hours day-of-month month day-of-week year), got %d", s, len(f))
	}
	var c cron
	var err error
	fields := []struct {
		name     string
		text     string
		lo, hi   int
		names    map[string]int
		dst      *[]bool
		question *bool
	}{
		{"minutes", f[0], 0, 59, nil, &c.minute, nil},
		{"hours", f[1], 0, 23, nil, &c.hour, nil},
		{"day-of-month", f[2], 1, 31, nil, &c.dom, &c.anyDOM},
		{"month", f[3], 1, 12, monthNames, &c.month, nil},
		{"day-of-week", f[4], 1, 7, dayNames, &c.dow, &c.anyDOW},
		{"year", f[5], 1970, 2199, nil, &c.year, nil},
	}
	for _, fd := range fields {
		if fd.text == "?" {
			if fd.question == nil {
				return nil, fmt.Errorf("cron(%s): ? is only for day-of-month or day-of-week", s)
			}
			*fd.question = true
			*fd.dst = span(fd.lo, fd.hi, 1, fd.hi)
			continue
		}
		if *fd.dst, err = parseField(fd.text, fd.lo, fd.hi, fd.names); err != nil {
			return nil, fmt.Errorf("cron(%s): %s: %w", s, fd.name, err)
		}
	}
	if c.anyDOM == c.anyDOW {
		return nil, fmt.Errorf("cron(%s): exactly one of day-of-month and day-of-week must be ?", s)
	}
	return c, nil
}

// parseField reads a comma-separated list of *, a value, a range, each
// with an optional /step. Names (JAN, MON) are taken in any case.
func parseField(s string, lo, hi int, names map[string]int) ([]bool, error) {
	s = strings.ToUpper(s)
	for name, n := range names {
		s = strings.ReplaceAll(s, name, strconv.Itoa(n))
	}
	if strings.ContainsAny(s, "LW#") {
		return nil, fmt.Errorf("%q: the L, W and # forms are not supported", s)
	}
	out := make([]bool, hi+1)
	for part := range strings.SplitSeq(s, ",") {
		rng, stepText, stepped := strings.Cut(part, "/")
		step := 1
		if stepped {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%q: step %q is not a positive whole number", part, stepText)
			}
			step = n
		}
		from, to := lo, hi
		if rng != "*" {
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if from, err = value(a, lo, hi); err != nil {
				return nil, err
			}
			to = from
			if isRange {
				if to, err = value(b, lo, hi); err != nil {
					return nil, err
				}
			} else if stepped {
				to = hi // a/step: from a to the end
			}
			if to < from {
				return nil, fmt.Errorf("%q: the range goes backwards", part)
			}
		}
		for i, v := range span(from, to, step, hi) {
			out[i] = out[i] || v
		}
	}
	return out, nil
}

func value(s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q is not a value from %d to %d", s, lo, hi)
	}
	return n, nil
}

func span(from, to, step, hi int) []bool {
	out := make([]bool, hi+1)
	for i := from; i <= to; i += step {
		out[i] = true
	}
	return out
}

func (c cron) Next(t time.Time) (time.Time, bool) {
	t = t.UTC().Truncate(time.Minute).Add(time.Minute)
	for t.Year() <= 2199 {
		switch {
		case !c.year[t.Year()]:
			t = time.Date(t.Year()+1, 1, 1, 0, 0, 0, 0, time.UTC)
		case !c.month[int(t.Month())]:
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		case !c.day(t):
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
		case !c.hour[t.Hour()]:
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, time.UTC)
		case !c.minute[t.Minute()]:
			t = t.Add(time.Minute)
		default:
			return t, true
		}
	}
	return time.Time{}, false
}

func (c cron) day(t time.Time) bool {
	if c.anyDOM {
		return c.dow[int(t.Weekday())+1] // SUN is 1
	}
	return c.dom[t.Day()]
}

// rule is an EventBridge rule with a schedule, and the functions it
// targets.
type rule struct {
	name, arn, expression string
	schedule              Schedule
	targets               []ruleTarget
}

type ruleTarget struct {
	fn *Function
	// input is the target's constant Input; nil sends the scheduled
	// event itself.
	input []byte
}

// readRules lists the enabled scheduled rules of the default bus and
// their function targets. Targets the harness cannot deliver as AWS
// would (an InputPath or InputTransformer, a target that is not one of
// the stack's functions) fail the start rather than go missing.
func (h *Harness) readRules(ctx context.Context, eb *eventbridge.Client, anchor time.Time) ([]*rule, error) {
	var out []*rule
	var token *string
	for {
		page, err := eb.ListRules(ctx, &eventbridge.ListRulesInput{NextToken: token})
		if err != nil {
			return nil, fmt.Errorf("list EventBridge rules: %w", err)
		}
		for _, r := range page.Rules {
			expr := aws.ToString(r.ScheduleExpression)
			if expr == "" || r.State != "ENABLED" {
				continue
			}
			sched, err := ParseSchedule(expr, anchor)
			if err != nil {
				return nil, fmt.Errorf("rule %s: %w", aws.ToString(r.Name), err)
			}
			ru := &rule{name: aws.ToString(r.Name), arn: aws.ToString(r.Arn), expression: expr, schedule: sched}
			targets, err := eb.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: r.Name})
			if err != nil {
				return nil, fmt.Errorf("targets of rule %s: %w", ru.name, err)
			}
			for _, t := range targets.Targets {
				fn := h.functionByARN(aws.ToString(t.Arn))
				if fn == nil {
					return nil, fmt.Errorf("rule %s targets %s, which is not a function of the stack", ru.name, aws.ToString(t.Arn))
				}
				if t.InputPath != nil || t.InputTransformer != nil {
					return nil, fmt.Errorf("rule %s: target %s uses InputPath or InputTransformer, which the harness does not deliver", ru.name, aws.ToString(t.Id))
				}
				var input []byte
				if t.Input != nil {
					input = []byte(aws.ToString(t.Input))
				}
				ru.targets = append(ru.targets, ruleTarget{fn: fn, input: input})
			}
			out = append(out, ru)
		}
		if token = page.NextToken; token == nil {
			return out, nil
		}
	}
}

// scheduledEvent is what EventBridge sends a target of a scheduled rule
// that has no Input.
func (h *Harness) scheduledEvent(r *rule, at time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"version": "0", "id": requestID(), "detail-type": "Scheduled Event", "source": "aws.events",
		"account": h.account, "time": at.UTC().Format(time.RFC3339), "region": h.region,
		"resources": []string{r.arn}, "detail": map[string]any{},
	})
	return b
}

// runRule fires r on the harness clock until ctx ends. When the clock
// jumps over several occurrences, the rule fires once, for the latest, as
// a scheduler that woke late would.
func (h *Harness) runRule(ctx context.Context, r *rule) {
	next, ok := r.schedule.Next(h.Clock.Now())
	for ok {
		if err := h.Clock.WaitUntil(ctx, next); err != nil {
			return
		}
		now := h.Clock.Now()
		at := next
		for {
			n, more := r.schedule.Next(at)
			if !more || n.After(now) {
				next, ok = n, more
				break
			}
			at = n
		}
		h.count(func(s *Stats) { s.Schedules[r.name]++ })
		for _, t := range r.targets {
			payload := t.input
			if payload == nil {
				payload = h.scheduledEvent(r, at)
			}
			h.invokeAsync(t.fn, SourceSchedule, payload)
		}
	}
}

// asyncRetryDelays are how long Lambda waits before retrying a failed
// asynchronous invocation (it retries twice by default), on the harness
// clock.
var asyncRetryDelays = []time.Duration{time.Minute, 2 * time.Minute}

// invokeAsync invokes fn as Lambda's asynchronous invocation does: the
// caller does not wait, and a failed invocation is retried after a minute
// and again after two more (fn's MaximumRetryAttempts when it sets one).
func (h *Harness) invokeAsync(fn *Function, source Source, payload []byte) {
	h.spawn(func() {
		retries := fn.asyncRetries
		for attempt := 0; ; attempt++ {
			res, err := fn.Invoke(h.ctx, source, payload)
			if err != nil || !res.Failed() || attempt >= retries || attempt >= len(asyncRetryDelays) {
				if err == nil && res.Failed() {
					h.count(func(s *Stats) { s.AsyncDropped[fn.Config.Name]++ })
					fn.logs.note("harness: asynchronous event dropped after %d attempts (request %s: %s)", attempt+1, res.RequestID, res.Error)
				}
				return
			}
			if h.Clock.WaitUntil(h.ctx, h.Clock.Now().Add(asyncRetryDelays[attempt])) != nil {
				return
			}
		}
	})
}
