package stacksets

import (
	"archive/zip"
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/silo-saas/silo/internal/emulator"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// createAccount vends a member account and waits until Organizations reports
// it created (moto answers at once; real AWS takes minutes).
func createAccount(ctx context.Context, t *testing.T, org *organizations.Client, name string) string {
	t.Helper()
	req, err := org.CreateAccount(ctx, &organizations.CreateAccountInput{
		AccountName: aws.String(name), Email: aws.String(name + "@example.com"),
	})
	if err != nil {
		t.Fatalf("create account %s: %v", name, err)
	}
	id := aws.ToString(req.CreateAccountStatus.Id)
	delay := 50 * time.Millisecond
	for {
		st, err := org.DescribeCreateAccountStatus(ctx, &organizations.DescribeCreateAccountStatusInput{CreateAccountRequestId: aws.String(id)})
		if err != nil {
			t.Fatalf("create account %s: %v", name, err)
		}
		switch st.CreateAccountStatus.State {
		case orgtypes.CreateAccountStateSucceeded:
			return aws.ToString(st.CreateAccountStatus.AccountId)
		case orgtypes.CreateAccountStateFailed:
			t.Fatalf("create account %s: %s", name, st.CreateAccountStatus.FailureReason)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("create account %s: %v", name, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// codeZip is a Lambda deployment package: a zip with an executable named
// bootstrap (content irrelevant, moto never runs it).
func codeZip(t *testing.T, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	f, err := zw.CreateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte(content))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
