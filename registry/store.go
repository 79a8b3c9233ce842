package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// dynamoAPI lists the DynamoDB calls the registry makes. Note what is not
// here: Scan. Every read is a GetItem or a Query on a key or an index.
type dynamoAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
}

// Store is the tenant registry in one DynamoDB table.
type Store struct {
	db    dynamoAPI
	table string
	now   func() time.Time
}

// New returns a Store on the named table.
func New(db dynamoAPI, table string) *Store {
	if table == "" {
		table = DefaultTable
	}
	return &Store{db: db, table: table, now: func() time.Time { return time.Now().UTC() }}
}

// Table returns the table's name.
func (s *Store) Table() string { return s.table }

// EnsureTable creates the table (for local mode and tests) if it does not
// exist, waits until it is active, and turns on TTL. In AWS the table comes
// from the control-plane stack, built from the same Schema.
func (s *Store) EnsureTable(ctx context.Context) error {
	schema := Schema()
	_, err := s.db.CreateTable(ctx, schema.CreateTableInput(s.table))
	if err != nil && !awsx.IsAlreadyExists(err) {
		return fmt.Errorf("create registry table %s: %w", s.table, err)
	}
	w := dynamodb.NewTableExistsWaiter(s.db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)}, 2*time.Minute); err != nil {
		return fmt.Errorf("wait for registry table %s: %w", s.table, err)
	}
	if _, err := s.db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(s.table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(schema.TTLAttribute), Enabled: aws.Bool(true)},
	}); err != nil && !awsx.IsInvalid(err) { // already enabled is a ValidationException
		return fmt.Errorf("enable TTL on %s: %w", s.table, err)
	}
	return nil
}

// Key prefixes of the single-table design (see ARCHITECTURE.md).
const (
	prefixTenant  = "TENANT#"
	prefixIdemp   = "IDEMP#"
	prefixState   = "STATE#"
	prefixAccount = "ACCOUNT#"
	prefixEvent   = "EVENT#"
	skMeta        = "META"
)

// tenantItem is a tenant as stored.
type tenantItem struct {
	PK      string `dynamodbav:"pk"`
	SK      string `dynamodbav:"sk"`
	StatePK string `dynamodbav:"gsi1pk"`
	StateSK string `dynamodbav:"gsi1sk"`
	AcctPK  string `dynamodbav:"gsi2pk,omitempty"`

	ID            string            `dynamodbav:"id"`
	Name          string            `dynamodbav:"name"`
	Email         string            `dynamodbav:"email"`
	Tier          string            `dynamodbav:"tier"`
	Region        string            `dynamodbav:"region"`
	Kind          string            `dynamodbav:"kind"`
	State         string            `dynamodbav:"state"`
	Reason        string            `dynamodbav:"reason,omitempty"`
	FailedFrom    string            `dynamodbav:"failed_from,omitempty"`
	AccountID     string            `dynamodbav:"account_id,omitempty"`
	Endpoint      string            `dynamodbav:"endpoint,omitempty"`
	Operation     string            `dynamodbav:"operation,omitempty"`
	AppVersion    string            `dynamodbav:"app_version,omitempty"`
	TargetVersion string            `dynamodbav:"target_version,omitempty"`
	Health        *Health           `dynamodbav:"health,omitempty"`
	Attributes    map[string]string `dynamodbav:"attributes,omitempty"`
	StateSince    *time.Time        `dynamodbav:"state_since,omitempty"`
	ProgressAt    *time.Time        `dynamodbav:"progress_at,omitempty"`
	LastError     string            `dynamodbav:"last_error,omitempty"`
	LastErrorAt   *time.Time        `dynamodbav:"last_error_at,omitempty"`
	Waiting       string            `dynamodbav:"waiting,omitempty"`
	WaitingUntil  *time.Time        `dynamodbav:"waiting_until,omitempty"`
	CreatedAt     time.Time         `dynamodbav:"created_at"`
	UpdatedAt     time.Time         `dynamodbav:"updated_at"`
	ClosedAt      *time.Time        `dynamodbav:"closed_at,omitempty"`
	Version       int64             `dynamodbav:"version"`
}

func toItem(t *Tenant) tenantItem {
	it := tenantItem{
		PK: prefixTenant + t.ID, SK: skMeta,
		StatePK: prefixState + string(t.State),
		StateSK: sortTime(t.UpdatedAt) + "#" + t.ID,
		ID:      t.ID, Name: t.Name, Email: t.Email, Tier: string(t.Tier), Region: t.Region, Kind: string(t.Kind),
		State: string(t.State), Reason: t.Reason, FailedFrom: string(t.FailedFrom),
		AccountID: t.AccountID, Endpoint: t.Endpoint, Operation: t.Operation,
		AppVersion: t.AppVersion, TargetVersion: t.TargetVersion, Health: t.Health,
		Attributes: t.Attributes, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, ClosedAt: t.ClosedAt,
		StateSince: timePtr(t.StateSince), ProgressAt: timePtr(t.ProgressAt),
		LastError: t.LastError, LastErrorAt: t.LastErrorAt, Waiting: t.Waiting, WaitingUntil: t.WaitingUntil,
		Version: t.Version,
	}
	if t.AccountID != "" {
		it.AcctPK = prefixAccount + t.AccountID
	}
	return it
}

func (it tenantItem) tenant() *Tenant {
	return &Tenant{
		Spec:  Spec{ID: it.ID, Name: it.Name, Email: it.Email, Tier: Tier(it.Tier), Region: it.Region, Kind: Kind(it.Kind)},
		State: State(it.State), Reason: it.Reason, FailedFrom: State(it.FailedFrom),
		AccountID: it.AccountID, Endpoint: it.Endpoint, Operation: it.Operation,
		AppVersion: it.AppVersion, TargetVersion: it.TargetVersion, Health: it.Health,
		Attributes: it.Attributes, CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt, ClosedAt: it.ClosedAt,
		StateSince: timeOf(it.StateSince), ProgressAt: timeOf(it.ProgressAt),
		LastError: it.LastError, LastErrorAt: it.LastErrorAt, Waiting: it.Waiting, WaitingUntil: it.WaitingUntil,
		Version: it.Version,
	}
}

// timePtr stores a zero time as no attribute at all, as a record written
// before the field existed has none.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// sortTime formats t so that string order is time order.
func sortTime(t time.Time) string { return t.UTC().Format(sortTimeLayout) }

const sortTimeLayout = "2006-01-02T15:04:05.000000000Z"

type idempItem struct {
	PK        string    `dynamodbav:"pk"`
	SK        string    `dynamodbav:"sk"`
	TenantID  string    `dynamodbav:"tenant_id"`
	SpecHash  string    `dynamodbav:"spec_hash"`
	CreatedAt time.Time `dynamodbav:"created_at"`
}

type eventItem struct {
	PK       string            `dynamodbav:"pk"`
	SK       string            `dynamodbav:"sk"`
	TenantID string            `dynamodbav:"tenant_id"`
	Time     time.Time         `dynamodbav:"time"`
	Seq      int64             `dynamodbav:"seq"`
	Type     string            `dynamodbav:"type"`
	From     string            `dynamodbav:"from,omitempty"`
	To       string            `dynamodbav:"to,omitempty"`
	Actor    string            `dynamodbav:"actor"`
	Reason   string            `dynamodbav:"reason,omitempty"`
	Detail   map[string]string `dynamodbav:"detail,omitempty"`
}

func eventSK(t time.Time, seq int64) string {
	return prefixEvent + sortTime(t) + "#" + fmt.Sprintf("%010d", seq)
}

// ValidateIdempotencyKey checks a client-supplied idempotency key: 1–128
// characters of letters, digits and -_.:
func ValidateIdempotencyKey(key string) error {
	if len(key) < 1 || len(key) > 128 {
		return &FieldError{"idempotency_key", fmt.Sprintf("must be 1 to 128 characters, got %d", len(key))}
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:", r)) {
			return &FieldError{"idempotency_key", fmt.Sprintf("has %q; use letters, digits and -_.:", r)}
		}
	}
	return nil
}

// specHash identifies what a request asked for. The id is left out: a
// caller that derives a fresh id per attempt still replays to one tenant.
func specHash(s Spec) string {
	s.ID = ""
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Create registers a new tenant in REQUESTED. With an idempotency key, the
// same key and spec return the tenant the first call created (created is
// false), and the same key with another spec is ErrConflict. Without a key,
// an existing id is ErrAlreadyExists. The tenant, its key and its first
// audit event are written in one transaction.
func (s *Store) Create(ctx context.Context, spec Spec, key, actor string) (t *Tenant, created bool, err error) {
	return s.create(ctx, spec, key, actor, nil)
}

// CreateWith creates a tenant (without an idempotency key) whose status
// fields mutate sets in the same write: a preview's repository, PR and
// target release are there from its first version.
func (s *Store) CreateWith(ctx context.Context, spec Spec, actor string, mutate func(*Tenant)) (*Tenant, error) {
	t, _, err := s.create(ctx, spec, "", actor, mutate)
	return t, err
}

func (s *Store) create(ctx context.Context, spec Spec, key, actor string, mutate func(*Tenant)) (t *Tenant, created bool, err error) {
	spec = spec.Normalize()
	if err := spec.ValidateNew(); err != nil {
		return nil, false, err
	}
	if key != "" {
		if err := ValidateIdempotencyKey(key); err != nil {
			return nil, false, err
		}
	}
	now := s.now()
	t = &Tenant{Spec: spec, State: StateRequested, CreatedAt: now, UpdatedAt: now, StateSince: now, ProgressAt: now, Version: 1}
	if mutate != nil {
		mutate(t)
		t.Spec, t.State, t.CreatedAt, t.UpdatedAt, t.Version, t.ClosedAt = spec, StateRequested, now, now, 1, nil
		t.StateSince, t.ProgressAt = now, now
	}
	ev := Event{TenantID: spec.ID, Time: now, Seq: 1, Type: "created", To: StateRequested, Actor: actorOr(actor)}

	var items []types.TransactWriteItem
	if key != "" {
		idem, err := attributevalue.MarshalMap(idempItem{PK: prefixIdemp + key, SK: skMeta, TenantID: spec.ID, SpecHash: specHash(spec), CreatedAt: now})
		if err != nil {
			return nil, false, fmt.Errorf("encode idempotency key: %w", err)
		}
		items = append(items, types.TransactWriteItem{Put: &types.Put{
			TableName: aws.String(s.table), Item: idem, ConditionExpression: aws.String("attribute_not_exists(pk)"),
		}})
	}
	tput, err := s.putTenant(t, 0)
	if err != nil {
		return nil, false, err
	}
	eput, err := s.putEvent(ev)
	if err != nil {
		return nil, false, err
	}
	items = append(items, tput, eput)

	// A concurrent transaction on the same items makes DynamoDB cancel with
	// TransactionConflict; a few quick retries settle who won.
	for attempt := 0; ; attempt++ {
		_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		if err == nil {
			return t, true, nil
		}
		reasons := awsx.TransactionReasons(err)
		if reasons == nil && !awsx.IsConflict(err) {
			return nil, false, fmt.Errorf("create tenant %s: %w", spec.ID, err)
		}
		if key != "" && len(reasons) > 0 && reasons[0] == "ConditionalCheckFailed" {
			return s.replay(ctx, key, spec)
		}
		tenantIdx := len(items) - 2
		if len(reasons) > tenantIdx && reasons[tenantIdx] == "ConditionalCheckFailed" {
			return nil, false, fmt.Errorf("tenant id %q is taken (ids of closed tenants are not reused): %w", spec.ID, ErrAlreadyExists)
		}
		if attempt == 4 {
			return nil, false, fmt.Errorf("create tenant %s: concurrent writers kept conflicting: %w", spec.ID, ErrConflict)
		}
		if err := awsx.Sleep(ctx, time.Duration(attempt+1)*20*time.Millisecond); err != nil {
			return nil, false, err
		}
	}
}

// replay answers a create whose idempotency key exists already.
func (s *Store) replay(ctx context.Context, key string, spec Spec) (*Tenant, bool, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
		Key: keyOf(prefixIdemp+key, skMeta),
	})
	if err != nil {
		return nil, false, fmt.Errorf("read idempotency key: %w", err)
	}
	if out.Item == nil {
		// The key's writer failed after we saw it: very unlikely, and the
		// caller can simply retry.
		return nil, false, fmt.Errorf("idempotency key %q is being used by a concurrent request: %w", key, ErrConflict)
	}
	var it idempItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return nil, false, fmt.Errorf("decode idempotency key: %w", err)
	}
	if it.SpecHash != specHash(spec) {
		return nil, false, fmt.Errorf("idempotency key %q was already used for a different request: %w", key, ErrConflict)
	}
	t, err := s.Get(ctx, it.TenantID)
	return t, false, err
}

func actorOr(a string) string {
	if a == "" {
		return "silo"
	}
	return a
}

func keyOf(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: pk},
		attrSK: &types.AttributeValueMemberS{Value: sk},
	}
}

// putTenant writes t if the stored version is prev (0: the item must not exist).
func (s *Store) putTenant(t *Tenant, prev int64) (types.TransactWriteItem, error) {
	item, err := attributevalue.MarshalMap(toItem(t))
	if err != nil {
		return types.TransactWriteItem{}, fmt.Errorf("encode tenant %s: %w", t.ID, err)
	}
	put := &types.Put{TableName: aws.String(s.table), Item: item}
	if prev == 0 {
		put.ConditionExpression = aws.String("attribute_not_exists(pk)")
	} else {
		put.ConditionExpression = aws.String("version = :v")
		put.ExpressionAttributeValues = map[string]types.AttributeValue{
			":v": &types.AttributeValueMemberN{Value: strconv.FormatInt(prev, 10)},
		}
	}
	return types.TransactWriteItem{Put: put}, nil
}

func (s *Store) putEvent(e Event) (types.TransactWriteItem, error) {
	item, err := attributevalue.MarshalMap(eventItem{
		PK: prefixTenant + e.TenantID, SK: eventSK(e.Time, e.Seq), TenantID: e.TenantID, Time: e.Time, Seq: e.Seq,
		Type: e.Type, From: string(e.From), To: string(e.To), Actor: e.Actor, Reason: e.Reason, Detail: e.Detail,
	})
	if err != nil {
		return types.TransactWriteItem{}, fmt.Errorf("encode event: %w", err)
	}
	return types.TransactWriteItem{Put: &types.Put{
		TableName: aws.String(s.table), Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)"),
	}}, nil
}

// Get returns the tenant with the given id (closed tenants included).
func (s *Store) Get(ctx context.Context, id string) (*Tenant, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	var it tenantItem
	if err := s.getItem(ctx, prefixTenant+id, fmt.Sprintf("tenant %q", id), &it); err != nil {
		return nil, err
	}
	return it.tenant(), nil
}

// getItem reads the META item of pk (strongly consistent) into out; a
// missing item is an ErrNotFound error naming what.
func (s *Store) getItem(ctx context.Context, pk, what string, out any) error {
	res, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), ConsistentRead: aws.Bool(true), Key: keyOf(pk, skMeta),
	})
	if err != nil {
		return fmt.Errorf("get %s: %w", what, err)
	}
	if res.Item == nil {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err := attributevalue.UnmarshalMap(res.Item, out); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}

// ValidateAccountID checks a 12-digit AWS account id.
func ValidateAccountID(id string) error {
	if len(id) != 12 || strings.Trim(id, "0123456789") != "" {
		return &FieldError{"account_id", fmt.Sprintf("%q is not a 12-digit AWS account id", printable(id))}
	}
	return nil
}

// GetByAccount returns the tenant that owns an AWS account.
func (s *Store) GetByAccount(ctx context.Context, accountID string) (*Tenant, error) {
	if err := ValidateAccountID(accountID); err != nil {
		return nil, err
	}
	out, err := s.db.Query(ctx, &dynamodb.QueryInput{
		TableName: aws.String(s.table), IndexName: aws.String(IndexByAccount),
		KeyConditionExpression:    aws.String("#k = :k"),
		ExpressionAttributeNames:  map[string]string{"#k": attrAcctPK},
		ExpressionAttributeValues: map[string]types.AttributeValue{":k": &types.AttributeValueMemberS{Value: prefixAccount + accountID}},
		Limit:                     aws.Int32(2),
	})
	if err != nil {
		return nil, fmt.Errorf("find tenant of account %s: %w", accountID, err)
	}
	if len(out.Items) == 0 {
		return nil, fmt.Errorf("no tenant owns account %s: %w", accountID, ErrNotFound)
	}
	var it tenantItem
	if err := attributevalue.UnmarshalMap(out.Items[0], &it); err != nil {
		return nil, fmt.Errorf("decode tenant of account %s: %w", accountID, err)
	}
	return it.tenant(), nil
}

// Change describes what a Transition or Update does besides the state.
type Change struct {
	// Actor is who asked: "reconciler", "operator:alice", "signup".
	Actor string
	// Reason is why; required when moving to FAILED.
	Reason string
	// Type names the audit event; "state_changed" for a transition when empty.
	// An Update writes an event only when Type is set.
	Type string
	// Detail is recorded on the audit event.
	Detail map[string]string
	// Mutate edits the tenant's status fields (account, endpoint, operation,
	// versions, health, attributes, last error, quota note). Changes to the
	// spec, state, version or timestamps are ignored.
	Mutate func(*Tenant)
	// Progress marks the write as progress in the tenant's state (an
	// operation handle recorded, a step checkpointed): it moves ProgressAt,
	// from which the state's deadline is judged, and clears LastError and
	// the quota note. A state change is always progress.
	Progress bool
}

// Transition moves t to another state, writing the tenant and an audit event
// in one transaction, conditional on t.Version: if the stored tenant changed
// since t was read, nothing is written and the error is ErrConflict. t itself
// is not modified; the new tenant is returned.
func (s *Store) Transition(ctx context.Context, t *Tenant, to State, c Change) (*Tenant, error) {
	if !to.Valid() {
		return nil, fmt.Errorf("tenant %s: %w", t.ID, &FieldError{"state", fmt.Sprintf("%q is not a tenant state", printable(string(to)))})
	}
	if !CanTransition(t.State, to) {
		return nil, fmt.Errorf("tenant %s cannot go from %s to %s (allowed: %v): %w", t.ID, t.State, to, transitions[t.State], ErrInvalidTransition)
	}
	if to == StateFailed && strings.TrimSpace(c.Reason) == "" {
		return nil, fmt.Errorf("tenant %s: %w", t.ID, &FieldError{"reason", "is required to mark a tenant FAILED"})
	}
	if c.Type == "" {
		c.Type = "state_changed"
	}
	return s.write(ctx, t, to, c)
}

// Update changes t's status fields without a state change, conditional on
// t.Version like Transition.
func (s *Store) Update(ctx context.Context, t *Tenant, c Change) (*Tenant, error) {
	return s.write(ctx, t, t.State, c)
}

// write stores t moved to state to, with its audit event and any extra
// items in the same transaction (pool accounts leased or returned with it).
// It does not check the state machine: Transition does, and the few
// registry operations that take other paths check their own rules.
func (s *Store) write(ctx context.Context, t *Tenant, to State, c Change, extra ...types.TransactWriteItem) (*Tenant, error) {
	next, items, err := s.prepare(t, to, c)
	if err != nil {
		return nil, err
	}
	items = append(items, extra...)
	if _, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items}); err != nil {
		if awsx.TransactionReasons(err) != nil || awsx.IsConflict(err) {
			return nil, fmt.Errorf("tenant %s changed since version %d was read: %w", t.ID, t.Version, ErrConflict)
		}
		return nil, fmt.Errorf("write tenant %s: %w", t.ID, err)
	}
	return next, nil
}

// prepare returns t moved to state to by c, and the transaction items that
// write it (conditional on t.Version) and its audit event.
func (s *Store) prepare(t *Tenant, to State, c Change) (*Tenant, []types.TransactWriteItem, error) {
	if t.Version < 1 {
		return nil, nil, fmt.Errorf("tenant %s: %w", t.ID, &FieldError{"version", "must come from a stored tenant (Get it first)"})
	}
	now := s.now()
	next := *t
	next.Attributes = maps.Clone(t.Attributes)
	if t.Health != nil {
		h := *t.Health
		next.Health = &h
	}
	if c.Mutate != nil {
		c.Mutate(&next)
		// The spec and the bookkeeping are not the caller's to change.
		next.Spec, next.State, next.Version, next.CreatedAt, next.ClosedAt = t.Spec, t.State, t.Version, t.CreatedAt, t.ClosedAt
		next.StateSince, next.ProgressAt = t.StateSince, t.ProgressAt
	}
	// A record written before StateSince and ProgressAt existed gets the
	// latest time its state can have begun: its previous write. From then
	// on the fields hold still between progress, as UpdatedAt does not.
	if next.StateSince.IsZero() {
		next.StateSince = t.UpdatedAt
	}
	if next.ProgressAt.IsZero() {
		next.ProgressAt = next.StateSince
	}
	if next.AccountID != "" {
		if err := ValidateAccountID(next.AccountID); err != nil {
			return nil, nil, fmt.Errorf("tenant %s: %w", t.ID, err)
		}
	}
	from := t.State
	if to != from {
		switch {
		case to == StateFailed:
			next.FailedFrom, next.Reason = from, c.Reason
		case from == StateFailed:
			next.FailedFrom, next.Reason = "", ""
		case to == StateSuspended || to == StateDecommissioning:
			next.Reason = c.Reason
		case to == StateActive:
			next.Reason = ""
		}
		if to == StateClosed {
			next.ClosedAt = &now
		} else if from == StateClosed {
			next.ClosedAt = nil // a preview reopened
		}
	}
	next.State = to
	next.Version = t.Version + 1
	// The by-state index sorts on update time; never let it go backwards
	// when clocks of two writers disagree.
	next.UpdatedAt = now
	if !now.After(t.UpdatedAt) {
		next.UpdatedAt = t.UpdatedAt.Add(time.Microsecond)
	}
	if to != from || c.Progress {
		next.ProgressAt = next.UpdatedAt
		if to != from {
			next.StateSince = next.UpdatedAt
		}
		// What the tenant was stuck on, or waiting for, is behind it now
		// (unless this very write says otherwise).
		if next.LastError == t.LastError {
			next.LastError, next.LastErrorAt = "", nil
		}
		if next.Waiting == t.Waiting {
			next.Waiting, next.WaitingUntil = "", nil
		}
	}

	tput, err := s.putTenant(&next, t.Version)
	if err != nil {
		return nil, nil, err
	}
	items := []types.TransactWriteItem{tput}
	if c.Type != "" {
		ev := Event{TenantID: t.ID, Time: next.UpdatedAt, Seq: next.Version, Type: c.Type, Actor: actorOr(c.Actor), Reason: c.Reason, Detail: c.Detail}
		if to != from {
			ev.From, ev.To = from, to
		}
		eput, err := s.putEvent(ev)
		if err != nil {
			return nil, nil, err
		}
		items = append(items, eput)
	}
	return &next, items, nil
}

// Events returns a tenant's audit history, oldest first.
func (s *Store) Events(ctx context.Context, id string) ([]Event, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    aws.String("pk = :pk AND begins_with(sk, :ev)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: prefixTenant + id}, ":ev": &types.AttributeValueMemberS{Value: prefixEvent}},
		ConsistentRead:            aws.Bool(true),
	})
	var events []Event
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("read events of %s: %w", id, err)
		}
		for _, raw := range page.Items {
			var it eventItem
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return nil, fmt.Errorf("decode event of %s: %w", id, err)
			}
			events = append(events, Event{TenantID: it.TenantID, Time: it.Time, Seq: it.Seq, Type: it.Type,
				From: State(it.From), To: State(it.To), Actor: it.Actor, Reason: it.Reason, Detail: it.Detail})
		}
	}
	if len(events) == 0 {
		if _, err := s.Get(ctx, id); err != nil {
			return nil, err
		}
	}
	return events, nil
}
