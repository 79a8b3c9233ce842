// Package lambdazip packs a Lambda custom-runtime deployment package: a zip
// holding one executable named bootstrap. It exists so `make build` needs no
// zip binary and produces the same bytes on every machine.
package lambdazip

import (
	"archive/zip"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Pack returns a zip with binary stored as bootstrap (mode 0755, fixed
// timestamp, so equal binaries give equal zips).
func Pack(binary []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate, Modified: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(binary); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteFile packs the executable at binPath into zipPath.
func WriteFile(zipPath, binPath string) error {
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", binPath, err)
	}
	z, err := Pack(bin)
	if err != nil {
		return fmt.Errorf("zip %s: %w", binPath, err)
	}
	if err := os.MkdirAll(filepath.Dir(zipPath), 0o755); err != nil {
		return err
	}
	return os.WriteFile(zipPath, z, 0o644)
}
