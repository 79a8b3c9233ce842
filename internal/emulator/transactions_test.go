package emulator

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/awsx"
)

// TestTransactionsAtomic checks moto's TransactWriteItems as patched by
// py/sitecustomize.py: a cancelled transaction leaves no trace, in any item
// it touched, and a successful one applies every item.
func TestTransactionsAtomic(t *testing.T) {
	ctx := context.Background()
	org := emu.ResetT(t)
	cfg, err := org.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	table := aws.String("txn")
	if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: table, BillingMode: types.BillingModePayPerRequest,
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}, {AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}, {AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS}},
	}); err != nil {
		t.Fatal(err)
	}
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	key := func(pk string) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"pk": s(pk), "sk": s("x")}
	}
	for _, pk := range []string{"existing", "guard"} {
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: table, Item: map[string]types.AttributeValue{"pk": s(pk), "sk": s("x"), "v": s("old")}}); err != nil {
			t.Fatal(err)
		}
	}
	items := func() map[string]string {
		out := map[string]string{}
		for _, pk := range []string{"existing", "guard", "new", "doomed"} {
			got, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: table, Key: key(pk), ConsistentRead: aws.Bool(true)})
			if err != nil {
				t.Fatal(err)
			}
			if got.Item != nil {
				out[pk] = got.Item["v"].(*types.AttributeValueMemberS).Value
			}
		}
		return out
	}
	before := items()

	cancelled := []types.TransactWriteItem{
		{Put: &types.Put{TableName: table, Item: map[string]types.AttributeValue{"pk": s("new"), "sk": s("x"), "v": s("new")}, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
		{Update: &types.Update{TableName: table, Key: key("existing"), UpdateExpression: aws.String("SET v = :v"), ExpressionAttributeValues: map[string]types.AttributeValue{":v": s("changed")}}},
		{Delete: &types.Delete{TableName: table, Key: key("doomed")}},
		{ConditionCheck: &types.ConditionCheck{TableName: table, Key: key("guard"), ConditionExpression: aws.String("v = :want"), ExpressionAttributeValues: map[string]types.AttributeValue{":want": s("something else")}}},
	}
	_, err = db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: cancelled})
	if diff := cmp.Diff([]string{"None", "None", "None", "ConditionalCheckFailed"}, awsx.TransactionReasons(err)); diff != "" {
		t.Fatalf("cancellation reasons (-want +got):\n%s\nerr: %v", diff, err)
	}
	if diff := cmp.Diff(before, items()); diff != "" {
		t.Errorf("a cancelled transaction changed items (-before +after):\n%s", diff)
	}

	// The same transaction with a condition that holds applies everything.
	cancelled[3].ConditionCheck.ExpressionAttributeValues[":want"] = s("old")
	if _, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: cancelled}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"existing": "changed", "guard": "old", "new": "new"}
	if diff := cmp.Diff(want, items()); diff != "" {
		t.Errorf("after a committed transaction (-want +got):\n%s", diff)
	}
}
