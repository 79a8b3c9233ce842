package registry

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// HealthStatus is a tenant endpoint's health as the prober sees it.
type HealthStatus string

// The health statuses. Degraded means the endpoint answers but not well
// (a body that is not "ok", or slower than the threshold); down means it
// does not answer usefully at all (dns, connect, tls, timeout, status).
const (
	HealthUnknown  HealthStatus = ""
	HealthUp       HealthStatus = "up"
	HealthDegraded HealthStatus = "degraded"
	HealthDown     HealthStatus = "down"
)

// HealthStatuses lists the statuses a filter can name ("unknown" for none).
func HealthStatuses() []string { return []string{"up", "degraded", "down", "unknown"} }

// Health is a tenant's current health, kept on the tenant item. The prober
// writes it only when Status or Class changes, or as a heartbeat (so
// CheckedAt says the prober is alive) at most every few minutes.
type Health struct {
	Status HealthStatus `json:"status" dynamodbav:"status"`
	// Class is why the endpoint is not up (dns, connect, tls, timeout,
	// status, body, slow); empty when up.
	Class string `json:"class,omitempty" dynamodbav:"class,omitempty"`
	// Detail is the failed condition, for an operator ("status 503").
	Detail string `json:"detail,omitempty" dynamodbav:"detail,omitempty"`
	// Since is when the endpoint entered Status (with Class).
	Since time.Time `json:"since" dynamodbav:"since"`
	// CheckedAt is the time of the probe this record is from.
	CheckedAt time.Time `json:"checked_at" dynamodbav:"checked_at"`
	LatencyMS int64     `json:"latency_ms" dynamodbav:"latency_ms"`
	// Uptime24h is the share of checks that found the endpoint up over the
	// last 24 hours, as the prober knew it at CheckedAt; nil when unknown.
	Uptime24h *float64 `json:"uptime_24h,omitempty" dynamodbav:"uptime_24h,omitempty"`
}

// Rollup is one tenant's probe results over one hour.
type Rollup struct {
	TenantID string    `json:"tenant_id"`
	Hour     time.Time `json:"hour"` // the hour's start, UTC
	Checks   int       `json:"checks"`
	Failures int       `json:"failures"`
	P50MS    int64     `json:"p50_ms"`
	P95MS    int64     `json:"p95_ms"`
	MaxMS    int64     `json:"max_ms"`
}

// RollupRetention is how long roll-ups live before DynamoDB's TTL removes
// them: long enough for the 30-day uptime, with a day to spare.
const RollupRetention = 31 * 24 * time.Hour

const prefixHealth = "HEALTH#"

const hourLayout = "2006-01-02T15"

type rollupItem struct {
	PK        string `dynamodbav:"pk"`
	SK        string `dynamodbav:"sk"`
	TenantID  string `dynamodbav:"tenant_id"`
	Hour      string `dynamodbav:"hour"`
	Checks    int    `dynamodbav:"checks"`
	Failures  int    `dynamodbav:"failures"`
	P50MS     int64  `dynamodbav:"p50_ms"`
	P95MS     int64  `dynamodbav:"p95_ms"`
	MaxMS     int64  `dynamodbav:"max_ms"`
	ExpiresAt int64  `dynamodbav:"expires_at"`
}

// PutRollups stores hourly roll-ups, replacing any stored for the same
// tenant and hour. Each expires RollupRetention after its hour.
func (s *Store) PutRollups(ctx context.Context, rollups []Rollup) error {
	reqs := make([]types.WriteRequest, 0, len(rollups))
	for _, r := range rollups {
		if err := ValidateID(r.TenantID); err != nil {
			return err
		}
		h := r.Hour.UTC().Truncate(time.Hour)
		item, err := attributevalue.MarshalMap(rollupItem{
			PK: prefixTenant + r.TenantID, SK: prefixHealth + h.Format(hourLayout), TenantID: r.TenantID,
			Hour: h.Format(hourLayout), Checks: r.Checks, Failures: r.Failures,
			P50MS: r.P50MS, P95MS: r.P95MS, MaxMS: r.MaxMS, ExpiresAt: h.Add(RollupRetention).Unix(),
		})
		if err != nil {
			return err
		}
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
	}
	if err := s.batchWrite(ctx, reqs); err != nil {
		return fmt.Errorf("store health roll-ups: %w", err)
	}
	return nil
}

// Rollups returns a tenant's hourly roll-ups from the hour of since on,
// oldest first: one Query on the tenant's partition.
func (s *Store) Rollups(ctx context.Context, id string, since time.Time) ([]Rollup, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:              aws.String(s.table),
		KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :from AND :to"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk":   &types.AttributeValueMemberS{Value: prefixTenant + id},
			":from": &types.AttributeValueMemberS{Value: prefixHealth + since.UTC().Truncate(time.Hour).Format(hourLayout)},
			":to":   &types.AttributeValueMemberS{Value: prefixHealth + "~"},
		},
	})
	var out []Rollup
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("read health roll-ups of %s: %w", id, err)
		}
		for _, raw := range page.Items {
			var it rollupItem
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return nil, fmt.Errorf("decode health roll-up of %s: %w", id, err)
			}
			hour, err := time.Parse(hourLayout, it.Hour)
			if err != nil {
				return nil, fmt.Errorf("health roll-up of %s has a bad hour %q", id, it.Hour)
			}
			out = append(out, Rollup{TenantID: it.TenantID, Hour: hour, Checks: it.Checks, Failures: it.Failures,
				P50MS: it.P50MS, P95MS: it.P95MS, MaxMS: it.MaxMS})
		}
	}
	slices.SortFunc(out, func(a, b Rollup) int { return a.Hour.Compare(b.Hour) })
	return out, nil
}

// Uptime is the share of checks that found the endpoint up in the
// roll-ups whose hour starts at or after since; ok is false when there were
// no checks.
func Uptime(rollups []Rollup, since time.Time) (uptime float64, ok bool) {
	var checks, failures int
	from := since.UTC().Truncate(time.Hour)
	for _, r := range rollups {
		if r.Hour.Before(from) {
			continue
		}
		checks += r.Checks
		failures += r.Failures
	}
	if checks == 0 {
		return 0, false
	}
	return float64(checks-failures) / float64(checks), true
}

// Percentile returns the p-th percentile (0–100, nearest rank) of sorted
// values, 0 for none. Roll-ups use it; so do benchmarks.
func Percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank-1, 0), len(sorted)-1)]
}

// ImportTenants writes tenants as they are, 25 to a request, with no audit
// events and no conditions: it is for seeding a fleet into an empty table
// (tests, benchmarks, a migration), never for changing a live tenant, which
// goes through Transition and Update. Every tenant is validated first, and
// the version of one that has none is set to 1.
func (s *Store) ImportTenants(ctx context.Context, tenants []*Tenant) error {
	reqs := make([]types.WriteRequest, 0, len(tenants))
	for _, t := range tenants {
		c := *t
		c.Spec = t.Spec.Normalize()
		if err := c.Spec.Validate(); err != nil {
			return fmt.Errorf("import tenant %s: %w", t.ID, err)
		}
		if !t.State.Valid() {
			return fmt.Errorf("import tenant %s: %w", t.ID, &FieldError{"state", fmt.Sprintf("%q is not a tenant state", printable(string(t.State)))})
		}
		if c.Version < 1 {
			c.Version = 1
		}
		if c.CreatedAt.IsZero() {
			c.CreatedAt = s.now()
		}
		if c.UpdatedAt.IsZero() {
			c.UpdatedAt = c.CreatedAt
		}
		item, err := attributevalue.MarshalMap(toItem(&c))
		if err != nil {
			return fmt.Errorf("encode tenant %s: %w", t.ID, err)
		}
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
	}
	if err := s.batchWrite(ctx, reqs); err != nil {
		return fmt.Errorf("import tenants: %w", err)
	}
	return nil
}

// batchWrite sends write requests 25 at a time (DynamoDB's limit),
// resending what comes back unprocessed with a growing pause.
func (s *Store) batchWrite(ctx context.Context, reqs []types.WriteRequest) error {
	for len(reqs) > 0 {
		n := min(25, len(reqs))
		batch := reqs[:n]
		reqs = reqs[n:]
		for attempt := 0; len(batch) > 0; attempt++ {
			if attempt > 0 {
				if attempt > 8 {
					return fmt.Errorf("%d writes still unprocessed after %d attempts", len(batch), attempt)
				}
				if err := awsx.Sleep(ctx, time.Duration(25<<attempt)*time.Millisecond); err != nil {
					return err
				}
			}
			out, err := s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{s.table: batch}})
			if err != nil {
				return err
			}
			batch = out.UnprocessedItems[s.table]
		}
	}
	return nil
}

// Summary describes the health in a few words for tables and logs:
// "up 42ms", "down (timeout) since 10:02:03Z", "unknown".
func (h *Health) Summary() string {
	if h == nil || h.Status == HealthUnknown {
		return "unknown"
	}
	s := string(h.Status)
	if h.Class != "" {
		s += " (" + h.Class + ")"
	}
	if h.Status == HealthUp {
		s += fmt.Sprintf(" %dms", h.LatencyMS)
	} else {
		s += " since " + h.Since.UTC().Format(time.RFC3339)
	}
	if h.Uptime24h != nil {
		s += fmt.Sprintf(", %.2f%% over 24h", *h.Uptime24h*100)
	}
	return s
}
