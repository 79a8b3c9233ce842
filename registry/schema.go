package registry

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The registry's single-table schema lives here and only here: EnsureTable
// creates it for local mode and tests, and the control-plane CDK stack builds
// the production table from Schema().
const (
	attrPK      = "pk"
	attrSK      = "sk"
	attrStatePK = "gsi1pk" // STATE#<state> on tenant items
	attrStateSK = "gsi1sk" // <updated RFC3339Nano>#<tenant id>
	attrAcctPK  = "gsi2pk" // ACCOUNT#<account id> on tenant items that have one
	attrTTL     = "expires_at"

	// IndexByState lists tenants in one state, oldest update first.
	IndexByState = "by-state"
	// IndexByAccount finds the tenant that owns an AWS account.
	IndexByAccount = "by-account"
)

// DefaultTable is the registry table's name unless configured otherwise.
const DefaultTable = "silo-registry"

// Index describes one global secondary index (all attributes projected).
type Index struct {
	Name         string
	PartitionKey string
	SortKey      string // empty when the index has none
}

// TableSchema describes the registry table. Every key attribute is a string.
type TableSchema struct {
	PartitionKey string
	SortKey      string
	TTLAttribute string
	Indexes      []Index
}

// Schema returns the registry table's schema.
func Schema() TableSchema {
	return TableSchema{
		PartitionKey: attrPK,
		SortKey:      attrSK,
		TTLAttribute: attrTTL,
		Indexes: []Index{
			{Name: IndexByState, PartitionKey: attrStatePK, SortKey: attrStateSK},
			{Name: IndexByAccount, PartitionKey: attrAcctPK},
		},
	}
}

// CreateTableInput returns the DynamoDB request that creates the table
// (on-demand billing, streams with new and old images).
func (s TableSchema) CreateTableInput(table string) *dynamodb.CreateTableInput {
	attrs := map[string]bool{s.PartitionKey: true, s.SortKey: true}
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(table),
		BillingMode: types.BillingModePayPerRequest,
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(s.PartitionKey), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(s.SortKey), KeyType: types.KeyTypeRange},
		},
		StreamSpecification: &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeNewAndOldImages},
	}
	for _, ix := range s.Indexes {
		ks := []types.KeySchemaElement{{AttributeName: aws.String(ix.PartitionKey), KeyType: types.KeyTypeHash}}
		attrs[ix.PartitionKey] = true
		if ix.SortKey != "" {
			ks = append(ks, types.KeySchemaElement{AttributeName: aws.String(ix.SortKey), KeyType: types.KeyTypeRange})
			attrs[ix.SortKey] = true
		}
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{
			IndexName: aws.String(ix.Name), KeySchema: ks,
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		})
	}
	for _, name := range []string{s.PartitionKey, s.SortKey, attrStatePK, attrStateSK, attrAcctPK} {
		if attrs[name] {
			in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{
				AttributeName: aws.String(name), AttributeType: types.ScalarAttributeTypeS,
			})
		}
	}
	return in
}
