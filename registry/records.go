package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// Records kept beside tenants: per-tenant reports (a decommission's
// deletion report, an isolation audit's report), the fleet copies of the
// reports a console lists for every tenant, and the account-closure ledger
// the quota governor reads.
const (
	prefixReport  = "REPORT#"
	prefixFleet   = "AUDIT#"
	pkClosures    = "QUOTA#closures"
	prefixClosure = "CLOSE#"
)

type reportItem struct {
	PK        string    `dynamodbav:"pk"`
	SK        string    `dynamodbav:"sk"`
	Kind      string    `dynamodbav:"kind"`
	Body      string    `dynamodbav:"body"`
	CreatedAt time.Time `dynamodbav:"created_at"`
}

// PutReport stores a JSON report of some kind on a tenant, replacing any
// earlier report of that kind.
func (s *Store) PutReport(ctx context.Context, id, kind string, report any) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	body, err := json.Marshal(report)
	if err != nil {
		return fmt.Errorf("encode %s report of %s: %w", kind, id, err)
	}
	item, err := attributevalue.MarshalMap(reportItem{PK: prefixTenant + id, SK: prefixReport + kind, Kind: kind, Body: string(body), CreatedAt: s.now()})
	if err != nil {
		return err
	}
	if _, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String(s.table), Item: item}},
	}}); err != nil {
		return fmt.Errorf("store %s report of %s: %w", kind, id, err)
	}
	return nil
}

// Report reads a tenant's report of some kind into v.
func (s *Store) Report(ctx context.Context, id, kind string, v any) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), ConsistentRead: aws.Bool(true), Key: keyOf(prefixTenant+id, prefixReport+kind),
	})
	if err != nil {
		return fmt.Errorf("read %s report of %s: %w", kind, id, err)
	}
	if out.Item == nil {
		return fmt.Errorf("%s report of %s: %w", kind, id, ErrNotFound)
	}
	var it reportItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return err
	}
	return json.Unmarshal([]byte(it.Body), v)
}

// StoredReport is one tenant's report as FleetReports returns it.
type StoredReport struct {
	TenantID  string
	Body      json.RawMessage
	CreatedAt time.Time
}

type fleetReportItem struct {
	PK        string    `dynamodbav:"pk"`
	SK        string    `dynamodbav:"sk"`
	TenantID  string    `dynamodbav:"tenant_id"`
	Kind      string    `dynamodbav:"kind"`
	Body      string    `dynamodbav:"body"`
	CreatedAt time.Time `dynamodbav:"created_at"`
}

// PutFleetReport stores a tenant's report of some kind as PutReport does
// and, in the same transaction, a copy filed under the kind's fleet
// partition (AUDIT#<kind>, TENANT#<id>), so that FleetReports reads the
// latest report of every tenant in one query rather than a scan.
func (s *Store) PutFleetReport(ctx context.Context, id, kind string, report any) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if kind == "" {
		return &FieldError{"kind", "is required"}
	}
	body, err := json.Marshal(report)
	if err != nil {
		return fmt.Errorf("encode %s report of %s: %w", kind, id, err)
	}
	now := s.now()
	own, err := attributevalue.MarshalMap(reportItem{PK: prefixTenant + id, SK: prefixReport + kind, Kind: kind, Body: string(body), CreatedAt: now})
	if err != nil {
		return err
	}
	fleet, err := attributevalue.MarshalMap(fleetReportItem{PK: prefixFleet + kind, SK: prefixTenant + id, TenantID: id, Kind: kind, Body: string(body), CreatedAt: now})
	if err != nil {
		return err
	}
	if _, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String(s.table), Item: own}},
		{Put: &types.Put{TableName: aws.String(s.table), Item: fleet}},
	}}); err != nil {
		return fmt.Errorf("store %s report of %s: %w", kind, id, err)
	}
	return nil
}

// FleetReports returns the latest report of some kind of every tenant that
// has one (stored with PutFleetReport), ordered by tenant id. One query on
// one partition, paged.
func (s *Store) FleetReports(ctx context.Context, kind string) ([]StoredReport, error) {
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    aws.String("pk = :pk AND begins_with(sk, :t)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: prefixFleet + kind}, ":t": &types.AttributeValueMemberS{Value: prefixTenant}},
		ConsistentRead:            aws.Bool(true),
	})
	var out []StoredReport
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("read %s reports: %w", kind, err)
		}
		for _, raw := range page.Items {
			var it fleetReportItem
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return nil, fmt.Errorf("decode %s report: %w", kind, err)
			}
			out = append(out, StoredReport{TenantID: it.TenantID, Body: json.RawMessage(it.Body), CreatedAt: it.CreatedAt})
		}
	}
	return out, nil
}

type closureItem struct {
	PK        string    `dynamodbav:"pk"`
	SK        string    `dynamodbav:"sk"`
	AccountID string    `dynamodbav:"account_id"`
	At        time.Time `dynamodbav:"at"`
	ExpiresAt int64     `dynamodbav:"expires_at"` // TTL: the ledger forgets what the window no longer counts
}

// RecordClosure adds an account closure to the ledger. The entry expires
// (by TTL) after window; recording the same account twice is harmless.
func (s *Store) RecordClosure(ctx context.Context, accountID string, at time.Time, window time.Duration) error {
	if err := ValidateAccountID(accountID); err != nil {
		return err
	}
	item, err := attributevalue.MarshalMap(closureItem{
		PK: pkClosures, SK: prefixClosure + accountID, AccountID: accountID, At: at.UTC(),
		ExpiresAt: at.Add(window + 24*time.Hour).Unix(),
	})
	if err != nil {
		return err
	}
	if _, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String(s.table), Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
	}}); err != nil {
		if reasons := awsx.TransactionReasons(err); len(reasons) == 1 && reasons[0] == "ConditionalCheckFailed" {
			return nil
		}
		return fmt.Errorf("record closure of %s: %w", accountID, err)
	}
	return nil
}

// Closures returns when each account closed since the given time, oldest
// first. One query on one partition; the ledger holds at most a window's
// worth of closures (at most 1,000 by AWS's quota).
func (s *Store) Closures(ctx context.Context, since time.Time) ([]time.Time, error) {
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    aws.String("pk = :pk AND begins_with(sk, :c)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: pkClosures}, ":c": &types.AttributeValueMemberS{Value: prefixClosure}},
		ConsistentRead:            aws.Bool(true),
	})
	var out []time.Time
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("read closure ledger: %w", err)
		}
		for _, raw := range page.Items {
			var it closureItem
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return nil, err
			}
			if !it.At.Before(since) {
				out = append(out, it.At)
			}
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out, nil
}
