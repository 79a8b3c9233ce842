package stacksets

import (
	"archive/zip"
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/silo-saas/silo/internal/emulator"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// createAccount vends a member account through the emulator's helper.
func createAccount(ctx context.Context, t *testing.T, o *emulator.Org, name string) string {
	t.Helper()
	id, err := o.NewAccount(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return id
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
