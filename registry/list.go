package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// List limits.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ListOptions select a page of a listing.
type ListOptions struct {
	// Limit is the page size: DefaultPageSize when zero, at most MaxPageSize.
	Limit int
	// Cursor continues a listing where the previous page's Next left off.
	Cursor string
}

// Page is one page of tenants.
type Page struct {
	Tenants []*Tenant `json:"tenants"`
	// Next is the cursor of the following page; empty on the last page.
	Next string `json:"next,omitempty"`
}

// List returns the tenants in one state, least recently updated first, a
// page at a time. It is a Query on the by-state index: never a Scan.
func (s *Store) List(ctx context.Context, state State, o ListOptions) (*Page, error) {
	if !state.Valid() {
		_, err := ParseState(string(state))
		return nil, err
	}
	limit := o.Limit
	switch {
	case limit == 0:
		limit = DefaultPageSize
	case limit < 0 || limit > MaxPageSize:
		return nil, &FieldError{"limit", fmt.Sprintf("must be 1 to %d, got %d", MaxPageSize, limit)}
	}
	in := &dynamodb.QueryInput{
		TableName: aws.String(s.table), IndexName: aws.String(IndexByState),
		KeyConditionExpression:    aws.String("#k = :k"),
		ExpressionAttributeNames:  map[string]string{"#k": attrStatePK},
		ExpressionAttributeValues: map[string]types.AttributeValue{":k": &types.AttributeValueMemberS{Value: prefixState + string(state)}},
		Limit:                     aws.Int32(int32(limit)),
	}
	if o.Cursor != "" {
		start, err := decodeCursor(o.Cursor, state)
		if err != nil {
			return nil, err
		}
		in.ExclusiveStartKey = start
	}
	out, err := s.db.Query(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("list %s tenants: %w", state, err)
	}
	page := &Page{Tenants: make([]*Tenant, 0, len(out.Items))}
	for _, raw := range out.Items {
		var it tenantItem
		if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
			return nil, fmt.Errorf("decode tenant: %w", err)
		}
		page.Tenants = append(page.Tenants, it.tenant())
	}
	if len(out.LastEvaluatedKey) > 0 {
		page.Next, err = encodeCursor(state, out.LastEvaluatedKey)
		if err != nil {
			return nil, err
		}
	}
	return page, nil
}

// cursor is the decoded form of a list cursor: the last key of a page on the
// by-state index, and the state it belongs to. It is opaque to callers
// (base64url JSON); it is checked, not trusted, when it comes back.
type cursor struct {
	V     int    `json:"v"`
	State string `json:"s"`
	ID    string `json:"id"`
	At    string `json:"at"` // the by-state sort key's time part
}

const maxCursorLen = 512

func encodeCursor(state State, last map[string]types.AttributeValue) (string, error) {
	var k struct {
		PK      string `dynamodbav:"pk"`
		StateSK string `dynamodbav:"gsi1sk"`
	}
	if err := attributevalue.UnmarshalMap(last, &k); err != nil {
		return "", fmt.Errorf("encode cursor: %w", err)
	}
	at, id, ok := strings.Cut(k.StateSK, "#")
	if !ok || prefixTenant+id != k.PK {
		return "", fmt.Errorf("encode cursor: unexpected last key %q", k.StateSK)
	}
	b, err := json.Marshal(cursor{V: 1, State: string(state), ID: id, At: at})
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// decodeCursor turns a cursor back into the exclusive start key of the
// by-state index, refusing anything this registry did not hand out for a
// listing of state.
func decodeCursor(s string, state State) (map[string]types.AttributeValue, error) {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrInvalidCursor, why) }
	if len(s) > maxCursorLen {
		return nil, bad(fmt.Sprintf("longer than %d characters", maxCursorLen))
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad("not a cursor from a previous page")
	}
	var c cursor
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || dec.More() {
		return nil, bad("not a cursor from a previous page")
	}
	if c.V != 1 {
		return nil, bad(fmt.Sprintf("unknown cursor version %d", c.V))
	}
	if c.State != string(state) {
		return nil, bad(fmt.Sprintf("it continues a listing of %q, not of %s", printable(c.State), state))
	}
	if ValidateID(c.ID) != nil {
		return nil, bad("it names no valid tenant")
	}
	if _, err := time.Parse(sortTimeLayout, c.At); err != nil || len(c.At) != len(sortTimeLayout) {
		return nil, bad("its position is malformed")
	}
	return map[string]types.AttributeValue{
		attrPK:      &types.AttributeValueMemberS{Value: prefixTenant + c.ID},
		attrSK:      &types.AttributeValueMemberS{Value: skMeta},
		attrStatePK: &types.AttributeValueMemberS{Value: prefixState + string(state)},
		attrStateSK: &types.AttributeValueMemberS{Value: c.At + "#" + c.ID},
	}, nil
}
