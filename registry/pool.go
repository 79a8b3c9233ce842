package registry

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// The preview pool: warm accounts that PR previews lease and give back.
// Each is an ACCOUNT#<id> item; its state goes
//
//	available → leased → resetting → available
//
// or, when resets keep failing, to quarantined with the leftovers listed.
// A lease is written in one transaction with the preview tenant it serves,
// conditional on both versions, so an account is never leased twice and a
// tenant never holds two accounts.

// PoolState is a pool account's state.
type PoolState string

// The pool states.
const (
	PoolAvailable   PoolState = "available"
	PoolLeased      PoolState = "leased"
	PoolResetting   PoolState = "resetting"
	PoolQuarantined PoolState = "quarantined"
)

// PoolStates lists the pool states in lifecycle order.
func PoolStates() []PoolState {
	return []PoolState{PoolAvailable, PoolLeased, PoolResetting, PoolQuarantined}
}

// Valid reports whether s is a pool state.
func (s PoolState) Valid() bool { return slices.Contains(PoolStates(), s) }

// poolTransitions is the pool's state machine.
var poolTransitions = map[PoolState][]PoolState{
	PoolAvailable:   {PoolLeased, PoolQuarantined},
	PoolLeased:      {PoolResetting},
	PoolResetting:   {PoolResetting, PoolAvailable, PoolQuarantined},
	PoolQuarantined: {PoolResetting},
}

// Lease is one preview's hold on a pool account.
type Lease struct {
	// Tenant is the preview tenant the account serves.
	Tenant string `json:"tenant" dynamodbav:"tenant"`
	Repo   string `json:"repo" dynamodbav:"repo"`
	PR     int    `json:"pr" dynamodbav:"pr"`
	// By is who asked for the preview.
	By        string    `json:"by,omitempty" dynamodbav:"by,omitempty"`
	LeasedAt  time.Time `json:"leased_at" dynamodbav:"leased_at"`
	ExpiresAt time.Time `json:"expires_at" dynamodbav:"expires_at"`
}

// PoolAccount is one account of the preview pool.
type PoolAccount struct {
	AccountID string    `json:"account_id"`
	State     PoolState `json:"state"`
	// Lease is the current lease while leased, and the last one while the
	// account is reset (or quarantined after it).
	Lease *Lease `json:"lease,omitempty"`
	// ResetAttempts counts failed resets since the account was last clean.
	ResetAttempts int `json:"reset_attempts,omitempty"`
	// Leftovers lists what the last failed reset could not remove
	// ("table orders-x", "bucket y").
	Leftovers []string `json:"leftovers,omitempty"`
	// Reason says why the account is quarantined.
	Reason string `json:"reason,omitempty"`
	// Leases counts every lease the account has served.
	Leases    int       `json:"leases"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   int64     `json:"version"`
}

const prefixPool = "POOL#"

type poolItem struct {
	PK      string `dynamodbav:"pk"`
	SK      string `dynamodbav:"sk"`
	StatePK string `dynamodbav:"gsi1pk"`
	StateSK string `dynamodbav:"gsi1sk"`

	AccountID     string    `dynamodbav:"account_id"`
	State         string    `dynamodbav:"state"`
	Lease         *Lease    `dynamodbav:"lease,omitempty"`
	ResetAttempts int       `dynamodbav:"reset_attempts"`
	Leftovers     []string  `dynamodbav:"leftovers,omitempty"`
	Reason        string    `dynamodbav:"reason,omitempty"`
	Leases        int       `dynamodbav:"leases"`
	CreatedAt     time.Time `dynamodbav:"created_at"`
	UpdatedAt     time.Time `dynamodbav:"updated_at"`
	Version       int64     `dynamodbav:"version"`
}

func (a *PoolAccount) item() poolItem {
	return poolItem{
		PK: prefixAccount + a.AccountID, SK: skMeta,
		StatePK: prefixPool + string(a.State), StateSK: sortTime(a.UpdatedAt) + "#" + a.AccountID,
		AccountID: a.AccountID, State: string(a.State), Lease: a.Lease, ResetAttempts: a.ResetAttempts,
		Leftovers: a.Leftovers, Reason: a.Reason, Leases: a.Leases,
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt, Version: a.Version,
	}
}

func (it poolItem) account() *PoolAccount {
	return &PoolAccount{
		AccountID: it.AccountID, State: PoolState(it.State), Lease: it.Lease, ResetAttempts: it.ResetAttempts,
		Leftovers: it.Leftovers, Reason: it.Reason, Leases: it.Leases,
		CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt, Version: it.Version,
	}
}

// putPool writes a if the stored version is prev (0: must not exist).
func (s *Store) putPool(a *PoolAccount, prev int64) (types.TransactWriteItem, error) {
	item, err := attributevalue.MarshalMap(a.item())
	if err != nil {
		return types.TransactWriteItem{}, fmt.Errorf("encode pool account %s: %w", a.AccountID, err)
	}
	put := &types.Put{TableName: aws.String(s.table), Item: item}
	if prev == 0 {
		put.ConditionExpression = aws.String("attribute_not_exists(pk)")
	} else {
		put.ConditionExpression = aws.String("version = :v")
		put.ExpressionAttributeValues = map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: strconv.FormatInt(prev, 10)}}
	}
	return types.TransactWriteItem{Put: put}, nil
}

// nextPool returns a copy of a moved to state to, stamped and versioned.
func (s *Store) nextPool(a *PoolAccount, to PoolState, mutate func(*PoolAccount)) *PoolAccount {
	next := *a
	next.Leftovers = slices.Clone(a.Leftovers)
	if a.Lease != nil {
		l := *a.Lease
		next.Lease = &l
	}
	if mutate != nil {
		mutate(&next)
	}
	next.AccountID, next.CreatedAt = a.AccountID, a.CreatedAt
	next.State, next.Version = to, a.Version+1
	next.UpdatedAt = s.now()
	if !next.UpdatedAt.After(a.UpdatedAt) {
		next.UpdatedAt = a.UpdatedAt.Add(time.Microsecond)
	}
	return &next
}

func (s *Store) checkPoolMove(a *PoolAccount, to PoolState) error {
	if a.Version < 1 {
		return fmt.Errorf("pool account %s: %w", a.AccountID, &FieldError{"version", "must come from a stored pool account"})
	}
	if !slices.Contains(poolTransitions[a.State], to) {
		return fmt.Errorf("pool account %s cannot go from %s to %s: %w", a.AccountID, a.State, to, ErrInvalidTransition)
	}
	return nil
}

func (s *Store) transact(ctx context.Context, what string, items ...types.TransactWriteItem) error {
	if _, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items}); err != nil {
		if awsx.TransactionReasons(err) != nil || awsx.IsConflict(err) {
			return fmt.Errorf("%s: changed meanwhile: %w", what, ErrConflict)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// AddPoolAccount hands the account of a pool-kind tenant to the pool: the
// account becomes available and the vending record closes, in one
// transaction, so a crash never leaves the account in neither place.
func (s *Store) AddPoolAccount(ctx context.Context, t *Tenant, actor string) (*PoolAccount, *Tenant, error) {
	if t.Kind != KindPool || t.AccountID == "" {
		return nil, nil, fmt.Errorf("tenant %s (kind %s, account %q) is not a pool account ready to hand over: %w", t.ID, t.Kind, t.AccountID, ErrInvalidTransition)
	}
	if t.State != StatePreparing && t.State != StateDeploying {
		return nil, nil, fmt.Errorf("pool tenant %s is %s: %w", t.ID, t.State, ErrInvalidTransition)
	}
	now := s.now()
	a := &PoolAccount{AccountID: t.AccountID, State: PoolAvailable, CreatedAt: now, UpdatedAt: now, Version: 1}
	put, err := s.putPool(a, 0)
	if err != nil {
		return nil, nil, err
	}
	next, err := s.write(ctx, t, StateClosed, Change{Actor: actor, Type: "pool.account_added", Reason: "handed to the preview pool",
		Detail: map[string]string{"account": t.AccountID},
		Mutate: func(n *Tenant) { n.Operation, n.Endpoint = "", "" }}, put)
	if err != nil {
		return nil, nil, err
	}
	return a, next, nil
}

// GetPoolAccount returns one pool account.
func (s *Store) GetPoolAccount(ctx context.Context, accountID string) (*PoolAccount, error) {
	if err := ValidateAccountID(accountID); err != nil {
		return nil, err
	}
	var it poolItem
	if err := s.getItem(ctx, prefixAccount+accountID, "pool account "+accountID, &it); err != nil {
		return nil, err
	}
	return it.account(), nil
}

// ListPool returns the pool accounts in one state, least recently changed
// first (a query on the by-state index). The pool is small (tens to a few
// hundred accounts), so it reads every page.
func (s *Store) ListPool(ctx context.Context, state PoolState) ([]*PoolAccount, error) {
	if !state.Valid() {
		return nil, &FieldError{"state", fmt.Sprintf("%q is not a pool state (one of %v)", printable(string(state)), PoolStates())}
	}
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName: aws.String(s.table), IndexName: aws.String(IndexByState),
		KeyConditionExpression:    aws.String("#k = :k"),
		ExpressionAttributeNames:  map[string]string{"#k": attrStatePK},
		ExpressionAttributeValues: map[string]types.AttributeValue{":k": &types.AttributeValueMemberS{Value: prefixPool + string(state)}},
	})
	var out []*PoolAccount
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s pool accounts: %w", state, err)
		}
		for _, raw := range page.Items {
			var it poolItem
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return nil, fmt.Errorf("decode pool account: %w", err)
			}
			out = append(out, it.account())
		}
	}
	return out, nil
}

// ListPoolAll returns every pool account, by state in lifecycle order.
func (s *Store) ListPoolAll(ctx context.Context) ([]*PoolAccount, error) {
	var all []*PoolAccount
	for _, st := range PoolStates() {
		page, err := s.ListPool(ctx, st)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
	}
	return all, nil
}

// LeaseAccount leases available account a to preview tenant t, which is
// waiting in REQUESTED without an account: in one transaction the account
// becomes leased and the tenant moves to CREATING_ACCOUNT holding it (the
// reconciler then finds the account there and prepares it). Either both
// happen or neither: a lost race on either item is ErrConflict.
func (s *Store) LeaseAccount(ctx context.Context, a *PoolAccount, t *Tenant, lease Lease, actor string) (*PoolAccount, *Tenant, error) {
	if err := s.checkPoolMove(a, PoolLeased); err != nil {
		return nil, nil, err
	}
	if t.Kind != KindPreview || t.State != StateRequested || t.AccountID != "" {
		return nil, nil, fmt.Errorf("tenant %s (%s %s, account %q) is not a preview waiting for an account: %w", t.ID, t.Kind, t.State, t.AccountID, ErrInvalidTransition)
	}
	lease.Tenant = t.ID
	if lease.LeasedAt.IsZero() {
		lease.LeasedAt = s.now()
	}
	next := s.nextPool(a, PoolLeased, func(n *PoolAccount) {
		n.Lease = &lease
		n.Leases++
		n.Reason = ""
	})
	put, err := s.putPool(next, a.Version)
	if err != nil {
		return nil, nil, err
	}
	nt, err := s.write(ctx, t, StateCreatingAccount, Change{Actor: actor, Type: "preview.leased",
		Detail: map[string]string{"account": a.AccountID, "expires_at": lease.ExpiresAt.UTC().Format(time.RFC3339)},
		Mutate: func(n *Tenant) { n.AccountID = a.AccountID }}, put)
	if err != nil {
		return nil, nil, err
	}
	return next, nt, nil
}

// ReturnLease ends a preview's lease: the DECOMMISSIONING preview tenant
// closes (it no longer owns the account; the account id stays in its
// attributes as last_account) and its account goes to resetting, in one
// transaction. mutate (optional) edits the tenant's status fields too.
func (s *Store) ReturnLease(ctx context.Context, t *Tenant, actor string, mutate func(*Tenant)) (*PoolAccount, *Tenant, error) {
	if t.Kind != KindPreview || t.State != StateDecommissioning || t.AccountID == "" {
		return nil, nil, fmt.Errorf("tenant %s (%s %s, account %q) is not a preview giving back an account: %w", t.ID, t.Kind, t.State, t.AccountID, ErrInvalidTransition)
	}
	a, err := s.GetPoolAccount(ctx, t.AccountID)
	if err != nil {
		return nil, nil, err
	}
	if a.State != PoolLeased || a.Lease == nil || a.Lease.Tenant != t.ID {
		return nil, nil, fmt.Errorf("pool account %s is %s, not leased to %s: %w", a.AccountID, a.State, t.ID, ErrInvalidTransition)
	}
	next := s.nextPool(a, PoolResetting, nil)
	put, err := s.putPool(next, a.Version)
	if err != nil {
		return nil, nil, err
	}
	nt, err := s.write(ctx, t, StateClosed, Change{Actor: actor, Type: "preview.released",
		Detail: map[string]string{"account": a.AccountID},
		Mutate: func(n *Tenant) {
			if n.Attributes == nil {
				n.Attributes = map[string]string{}
			}
			n.Attributes[AttrLastAccount] = n.AccountID
			n.AccountID, n.Endpoint, n.Operation = "", "", ""
			if mutate != nil {
				mutate(n)
			}
		}}, put)
	if err != nil {
		return nil, nil, err
	}
	return next, nt, nil
}

// AttrLastAccount is the tenant attribute that keeps the account a closed
// preview last held.
const AttrLastAccount = "last_account"

// MovePoolAccount moves a to another state (reset results, quarantine,
// lease extensions with to == a.State for a leased account), conditional
// on its version. mutate edits the fields besides the state.
func (s *Store) MovePoolAccount(ctx context.Context, a *PoolAccount, to PoolState, mutate func(*PoolAccount)) (*PoolAccount, error) {
	if !(to == a.State && to == PoolLeased) {
		if err := s.checkPoolMove(a, to); err != nil {
			return nil, err
		}
	}
	next := s.nextPool(a, to, mutate)
	put, err := s.putPool(next, a.Version)
	if err != nil {
		return nil, err
	}
	if err := s.transact(ctx, "pool account "+a.AccountID, put); err != nil {
		return nil, err
	}
	return next, nil
}

// ReopenPreview takes a CLOSED preview tenant back to REQUESTED: a preview's
// id comes from its repository and pull request, so a PR opened again after
// its preview was released gets its old record (and history) back. Customer
// tenants are never reopened: their ids are never reused.
func (s *Store) ReopenPreview(ctx context.Context, t *Tenant, c Change) (*Tenant, error) {
	if t.Kind != KindPreview || t.State != StateClosed {
		return nil, fmt.Errorf("tenant %s (%s %s) is not a closed preview: %w", t.ID, t.Kind, t.State, ErrInvalidTransition)
	}
	if c.Type == "" {
		c.Type = "preview.reopened"
	}
	mutate := c.Mutate
	c.Mutate = func(n *Tenant) {
		n.Reason, n.FailedFrom, n.Health = "", "", nil
		if mutate != nil {
			mutate(n)
		}
	}
	return s.write(ctx, t, StateRequested, c)
}

// Describe is a short human summary of a pool account.
func (a *PoolAccount) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", a.AccountID, a.State)
	if a.Lease != nil && a.State == PoolLeased {
		fmt.Fprintf(&b, " to %s#%d until %s", a.Lease.Repo, a.Lease.PR, a.Lease.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if a.Reason != "" {
		fmt.Fprintf(&b, " (%s)", a.Reason)
	}
	return b.String()
}
