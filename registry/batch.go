package registry

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// Fleet-wide operations (a rollout wave of a hundred tenants) read and
// write tenants in batches: one BatchGetItem per 100 tenants, one
// transaction per 50 (a tenant and its audit event are two of a
// transaction's 100 items), instead of a call per tenant.

// maxTransitionBatch is how many tenants one TransitionMany transaction
// writes.
const maxTransitionBatch = 50

// GetMany returns the tenants with the given ids (strongly consistent),
// by id; ids not found are absent from the map.
func (s *Store) GetMany(ctx context.Context, ids []string) (map[string]*Tenant, error) {
	out := make(map[string]*Tenant, len(ids))
	for start := 0; start < len(ids); start += 100 {
		keys := make([]map[string]types.AttributeValue, 0, 100)
		for _, id := range ids[start:min(start+100, len(ids))] {
			if err := ValidateID(id); err != nil {
				return nil, err
			}
			keys = append(keys, keyOf(prefixTenant+id, skMeta))
		}
		req := map[string]types.KeysAndAttributes{s.table: {Keys: keys, ConsistentRead: aws.Bool(true)}}
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 0 {
				if attempt > 8 {
					return nil, fmt.Errorf("get tenants: %d keys still unprocessed", len(req[s.table].Keys))
				}
				if err := awsx.Sleep(ctx, time.Duration(25<<attempt)*time.Millisecond); err != nil {
					return nil, err
				}
			}
			res, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, fmt.Errorf("get tenants: %w", err)
			}
			for _, raw := range res.Responses[s.table] {
				var it tenantItem
				if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
					return nil, fmt.Errorf("decode tenant: %w", err)
				}
				out[it.ID] = it.tenant()
			}
			req = res.UnprocessedKeys
		}
	}
	return out, nil
}

// Move is one tenant's part in TransitionMany.
type Move struct {
	Tenant *Tenant
	To     State
	Change Change
}

// TransitionMany applies moves like Transition, up to 50 tenants to a
// transaction, each conditional on its tenant's version. It returns the
// new tenants by id. A transaction that loses a race writes nothing and
// its tenants are listed in the ErrConflict error's Conflicted; the caller
// re-reads those and moves them one by one.
func (s *Store) TransitionMany(ctx context.Context, moves []Move) (map[string]*Tenant, error) {
	out := make(map[string]*Tenant, len(moves))
	var conflicted []string
	for start := 0; start < len(moves); start += maxTransitionBatch {
		chunk := moves[start:min(start+maxTransitionBatch, len(moves))]
		var items []types.TransactWriteItem
		next := make([]*Tenant, len(chunk))
		for i, m := range chunk {
			t, c := m.Tenant, m.Change
			if !CanTransition(t.State, m.To) && t.State != m.To {
				return out, fmt.Errorf("tenant %s cannot go from %s to %s: %w", t.ID, t.State, m.To, ErrInvalidTransition)
			}
			if c.Type == "" && t.State != m.To {
				c.Type = "state_changed"
			}
			n, its, err := s.prepare(t, m.To, c)
			if err != nil {
				return out, err
			}
			next[i] = n
			items = append(items, its...)
		}
		_, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		if err != nil {
			if awsx.TransactionReasons(err) != nil || awsx.IsConflict(err) {
				for _, m := range chunk {
					conflicted = append(conflicted, m.Tenant.ID)
				}
				continue
			}
			return out, fmt.Errorf("write %d tenants: %w", len(chunk), err)
		}
		for _, n := range next {
			out[n.ID] = n
		}
	}
	if len(conflicted) > 0 {
		return out, &ConflictError{IDs: conflicted}
	}
	return out, nil
}

// ConflictError names the tenants of TransitionMany whose transaction lost
// a race; it wraps ErrConflict.
type ConflictError struct{ IDs []string }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("tenants %s changed meanwhile: %v", strings.Join(e.IDs, ", "), ErrConflict)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }
