package deployed

import (
	"os"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"
)

// TestBatchFailures: which messages of a batch Lambda leaves for
// redelivery, by how the invocation ended and what the function answered
// (the rules of ReportBatchItemFailures).
func TestBatchFailures(t *testing.T) {
	msgs := []sqstypes.Message{{MessageId: aws.String("m1")}, {MessageId: aws.String("m2")}, {MessageId: aws.String("m3")}}
	all := []string{"m1", "m2", "m3"}
	for _, c := range []struct {
		name    string
		report  bool
		res     Result
		wantIDs []string
	}{
		{"success without reporting", false, Result{Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":"m1"}]}`)}, nil},
		{"failure without reporting", false, Result{Error: "errorString"}, all},
		{"timeout", true, Result{Error: ErrorTimeout}, all},
		{"crash", true, Result{Error: ErrorExit}, all},
		{"empty answer", true, Result{Payload: nil}, nil},
		{"null answer", true, Result{Payload: []byte("null")}, nil},
		{"empty list", true, Result{Payload: []byte(`{"batchItemFailures":[]}`)}, nil},
		{"null list", true, Result{Payload: []byte(`{"batchItemFailures":null}`)}, nil},
		{"an object without the list", true, Result{Payload: []byte(`{}`)}, nil},
		{"two reported", true, Result{Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":"m1"},{"itemIdentifier":"m3"}]}`)}, []string{"m1", "m3"}},
		{"invalid JSON", true, Result{Payload: []byte(`{"batchItemFailures":`)}, all},
		{"empty identifier", true, Result{Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":""}]}`)}, all},
		{"null identifier", true, Result{Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":null}]}`)}, all},
		{"bad key", true, Result{Payload: []byte(`{"batchItemFailures":[{"id":"m1"}]}`)}, all},
		{"unknown message", true, Result{Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":"m9"}]}`)}, all},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &Function{logs: &logFile{f: devNull(t)}}
			es := &eventSource{fn: f, reportFailures: c.report}
			got := es.failures(msgs, &c.res)
			var ids []string
			for id, failed := range got {
				if failed {
					ids = append(ids, id)
				}
			}
			slices.Sort(ids)
			if diff := cmp.Diff(c.wantIDs, ids); diff != "" {
				t.Errorf("failed messages (-want +got):\n%s", diff)
			}
		})
	}
}

func devNull(t *testing.T) *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
