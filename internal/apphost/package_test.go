package apphost

import (
	"archive/zip"
	"bytes"
	"strings"
	"testing"
)

func TestPackageProblem(t *testing.T) {
	pack := func(entries ...string) []byte { // name, content, name, content...
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for i := 0; i < len(entries); i += 2 {
			w, err := zw.Create(entries[i])
			if err != nil {
				t.Fatal(err)
			}
			_, _ = w.Write([]byte(entries[i+1]))
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	tests := []struct {
		name string
		pkg  []byte
		want string // a prefix of the problem; "" for a good package
	}{
		{"bootstrap without the exec bit", pack("bootstrap", "#!/bin/sh\n"), ""},
		{"bootstrap among other files", pack("lib/a.so", "x", "./bootstrap", "ELF"), ""},
		{"no bootstrap", pack("main", "ELF"), "Runtime.InvalidEntrypoint: the package has no bootstrap"},
		{"bootstrap in a folder", pack("bin/bootstrap", "ELF"), "Runtime.InvalidEntrypoint: the package has no bootstrap"},
		{"bootstrap is a folder", pack("bootstrap/", ""), "Runtime.InvalidEntrypoint: the package has no bootstrap"},
		{"empty bootstrap", pack("bootstrap", ""), "Runtime.InvalidEntrypoint: the package's bootstrap is empty"},
		{"not a zip", []byte("#!/bin/sh\n"), "InvalidZipFileException: Lambda could not unzip the deployment package"},
		{"nothing", nil, "InvalidZipFileException: Lambda could not unzip the deployment package"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := packageProblem(tc.pkg)
			if (tc.want == "") != (got == "") || !strings.HasPrefix(got, tc.want) {
				t.Errorf("packageProblem = %q, want %q", got, tc.want)
			}
		})
	}
}
