package registry

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Route is the part of a tenant a front end needs to send the tenant's
// users to it (GET /v1/resolve).
type Route struct {
	ID         string            `dynamodbav:"id"`
	Kind       Kind              `dynamodbav:"kind"`
	State      State             `dynamodbav:"state"`
	Region     string            `dynamodbav:"region"`
	Endpoint   string            `dynamodbav:"endpoint,omitempty"`
	Attributes map[string]string `dynamodbav:"attributes,omitempty"`
}

// Serving reports whether r's tenant answers its users: a customer tenant
// (not a preview or a pool account, which nobody resolves), ACTIVE or
// UPDATING, with an endpoint. servingFilter says the same to DynamoDB.
func (r *Route) Serving() bool {
	return (r.State == StateActive || r.State == StateUpdating) && r.Endpoint != "" &&
		(r.Kind == "" || r.Kind == KindTenant)
}

// The projection of a Route, and Route.Serving as a filter expression.
const (
	routeProjection = "#id, #kind, #state, #region, #endpoint, #attributes"
	servingFilter   = "#state IN (:active, :updating) AND attribute_exists(#endpoint) AND #endpoint <> :empty AND (#kind = :tenant OR #kind = :empty)"
)

var routeNames = map[string]string{
	"#id": "id", "#kind": "kind", "#state": "state", "#region": "region", "#endpoint": "endpoint", "#attributes": "attributes",
}

// GetRoute reads tenant id's Route: one strongly consistent GetItem of
// the tenant item, as Get, for Route's attributes only. A malformed id is
// ErrInvalid without a read.
func (s *Store) GetRoute(ctx context.Context, id string) (*Route, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	res, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), ConsistentRead: aws.Bool(true), Key: keyOf(prefixTenant+id, skMeta),
		ProjectionExpression: aws.String(routeProjection), ExpressionAttributeNames: routeNames,
	})
	if err != nil {
		return nil, fmt.Errorf("get route of tenant %q: %w", id, err)
	}
	if res.Item == nil {
		return nil, fmt.Errorf("tenant %q: %w", id, ErrNotFound)
	}
	var r Route
	if err := attributevalue.UnmarshalMap(res.Item, &r); err != nil {
		return nil, fmt.Errorf("decode route of tenant %q: %w", id, err)
	}
	return &r, nil
}

// GetServingRoute reads tenant id's Route if the tenant serves
// (Route.Serving), and is ErrNotFound otherwise, whether the tenant does
// not exist or exists and does not serve. Both come from the same single
// strongly consistent Query of the tenant item, whose filter drops a
// tenant that does not serve on DynamoDB's side: either way the answer is
// an empty page, so neither the answer, nor its size, nor the work done
// with it tells a tenant that does not serve from one that does not
// exist. A malformed id is ErrInvalid without a read.
func (s *Store) GetServingRoute(ctx context.Context, id string) (*Route, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	res, err := s.db.Query(ctx, &dynamodb.QueryInput{
		TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
		KeyConditionExpression: aws.String("pk = :pk AND sk = :sk"),
		FilterExpression:       aws.String(servingFilter),
		ProjectionExpression:   aws.String(routeProjection), ExpressionAttributeNames: routeNames,
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: prefixTenant + id}, ":sk": &types.AttributeValueMemberS{Value: skMeta},
			":active": &types.AttributeValueMemberS{Value: string(StateActive)}, ":updating": &types.AttributeValueMemberS{Value: string(StateUpdating)},
			":tenant": &types.AttributeValueMemberS{Value: string(KindTenant)}, ":empty": &types.AttributeValueMemberS{Value: ""},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("get serving route of tenant %q: %w", id, err)
	}
	if len(res.Items) == 0 {
		return nil, fmt.Errorf("no serving tenant %q: %w", id, ErrNotFound)
	}
	var r Route
	if err := attributevalue.UnmarshalMap(res.Items[0], &r); err != nil {
		return nil, fmt.Errorf("decode route of tenant %q: %w", id, err)
	}
	return &r, nil
}
