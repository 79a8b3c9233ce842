package lambdazip

import (
	"archive/zip"
	"bytes"
	"io"
	"testing"
)

func TestPack(t *testing.T) {
	z, err := Pack([]byte("binary"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.File) != 1 || r.File[0].Name != "bootstrap" {
		t.Fatalf("files %v, want only bootstrap", r.File)
	}
	if m := r.File[0].Mode(); m.Perm() != 0o755 {
		t.Errorf("mode %v, want executable", m)
	}
	f, _ := r.File[0].Open()
	b, _ := io.ReadAll(f)
	if string(b) != "binary" {
		t.Errorf("content %q", b)
	}
	again, _ := Pack([]byte("binary"))
	if !bytes.Equal(z, again) {
		t.Error("packing is not reproducible")
	}
}
