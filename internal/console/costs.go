package console

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/costexplorer"
	cetypes "github.com/aws/aws-sdk-go-v2/service/costexplorer/types"
)

// CostReport is the month-to-date cost of every linked account of the
// organization.
type CostReport struct {
	// ByAccount maps an account id to its unblended cost so far this month.
	// An account without cost this month is absent (its cost is zero).
	ByAccount map[string]float64
	// Unit is the currency ("USD").
	Unit string
	// Start and End are the period asked for: the first of the month to
	// tomorrow (End is exclusive in Cost Explorer), UTC.
	Start, End time.Time
	// FetchedAt is when Cost Explorer answered.
	FetchedAt time.Time
}

// costSource is what the console needs of costs; *CostExplorer is the real one.
type costSource interface {
	MonthToDate(ctx context.Context) (*CostReport, error)
}

// ceAPI lists the Cost Explorer calls the console makes.
type ceAPI interface {
	GetCostAndUsage(ctx context.Context, in *costexplorer.GetCostAndUsageInput, opts ...func(*costexplorer.Options)) (*costexplorer.GetCostAndUsageOutput, error)
}

// CostExplorer reads month-to-date costs per linked account from AWS Cost
// Explorer and caches them. Cost Explorer charges per request and its data
// changes a few times a day, so every page shares one cached report.
type CostExplorer struct {
	ce  ceAPI
	ttl time.Duration
	now func() time.Time

	// mu is held during a fetch, so concurrent pages wait for one request
	// rather than each paying for their own.
	mu      sync.Mutex
	report  *CostReport
	err     error
	errAt   time.Time
	fetched time.Time
}

// DefaultCostTTL is how long a cost report is reused.
const DefaultCostTTL = time.Hour

// costErrorTTL is how long a failed fetch is remembered, so an unavailable
// Cost Explorer costs one slow request a minute, not one per page.
const costErrorTTL = time.Minute

// NewCostExplorer returns costs read with cfg, which must act as the
// management account (only it sees every linked account's cost). A ttl of
// zero means DefaultCostTTL.
func NewCostExplorer(cfg aws.Config, ttl time.Duration) *CostExplorer {
	return newCostExplorer(costexplorer.NewFromConfig(cfg), ttl, time.Now)
}

func newCostExplorer(ce ceAPI, ttl time.Duration, now func() time.Time) *CostExplorer {
	if ttl <= 0 {
		ttl = DefaultCostTTL
	}
	return &CostExplorer{ce: ce, ttl: ttl, now: now}
}

// MonthToDate returns the cached report, fetching a new one when it is older
// than the TTL or from another month.
func (c *CostExplorer) MonthToDate(ctx context.Context) (*CostReport, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	if r := c.report; r != nil && now.Sub(c.fetched) < c.ttl && r.Start.Equal(start) {
		return r, nil
	}
	if c.err != nil && now.Sub(c.errAt) < costErrorTTL {
		return nil, c.err
	}
	r, err := c.fetch(ctx, now, start)
	if err != nil {
		c.err, c.errAt = err, now
		return nil, err
	}
	c.report, c.fetched, c.err = r, now, nil
	return r, nil
}

func (c *CostExplorer) fetch(ctx context.Context, now, start time.Time) (*CostReport, error) {
	end := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	r := &CostReport{ByAccount: map[string]float64{}, Start: start, End: end}
	in := &costexplorer.GetCostAndUsageInput{
		Granularity: cetypes.GranularityMonthly,
		Metrics:     []string{"UnblendedCost"},
		GroupBy:     []cetypes.GroupDefinition{{Type: cetypes.GroupDefinitionTypeDimension, Key: aws.String("LINKED_ACCOUNT")}},
		TimePeriod:  &cetypes.DateInterval{Start: aws.String(start.Format(time.DateOnly)), End: aws.String(end.Format(time.DateOnly))},
	}
	// Cost Explorer pages groups with a token; it has no paginator.
	for range 100 {
		out, err := c.ce.GetCostAndUsage(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("get cost and usage: %w", err)
		}
		for _, res := range out.ResultsByTime {
			for _, g := range res.Groups {
				m, ok := g.Metrics["UnblendedCost"]
				if !ok || len(g.Keys) == 0 {
					continue
				}
				amount, err := strconv.ParseFloat(aws.ToString(m.Amount), 64)
				if err != nil {
					return nil, fmt.Errorf("cost of account %s: bad amount %q", g.Keys[0], aws.ToString(m.Amount))
				}
				r.ByAccount[g.Keys[0]] += amount
				if u := aws.ToString(m.Unit); u != "" {
					r.Unit = u
				}
			}
		}
		if aws.ToString(out.NextPageToken) == "" {
			break
		}
		in.NextPageToken = out.NextPageToken
	}
	if r.Unit == "" {
		r.Unit = "USD"
	}
	r.FetchedAt = c.now()
	return r, nil
}
