package server

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNewSetsEveryTimeout(t *testing.T) {
	tests := []struct {
		name string
		in   Timeouts
		want Timeouts
	}{
		{"zero is the default", Timeouts{}, Default},
		{"each field its own", Timeouts{Header: 1, Read: 2, Write: 3, Idle: 4}, Timeouts{Header: 1, Read: 2, Write: 3, Idle: 4}},
		{"only read", Timeouts{Read: 3 * time.Second}, Timeouts{Header: Default.Header, Read: 3 * time.Second, Write: Default.Write, Idle: Default.Idle}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(nil, tc.in)
			got := Timeouts{Header: s.ReadHeaderTimeout, Read: s.ReadTimeout, Write: s.WriteTimeout, Idle: s.IdleTimeout}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("server timeouts (-want +got):\n%s", diff)
			}
		})
	}
	for name, d := range map[string]time.Duration{"Header": Default.Header, "Read": Default.Read, "Write": Default.Write, "Idle": Default.Idle} {
		if d <= 0 {
			t.Errorf("Default.%s is %v: a zero http.Server timeout is no limit", name, d)
		}
	}
}

// TestEveryServerIsBuiltHere: no http.Server is made anywhere else in the
// module's code (tests aside), so none runs without timeouts. A new
// listener must use New.
func TestEveryServerIsBuiltHere(t *testing.T) {
	root := moduleRoot(t)
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata" || name == "cdk.out") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || filepath.Dir(path) == self {
			return nil
		}
		files++
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			var typ ast.Expr
			switch n := n.(type) {
			case *ast.CompositeLit:
				typ = n.Type
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "new" && len(n.Args) == 1 {
					typ = n.Args[0]
				}
			}
			if sel, ok := typ.(*ast.SelectorExpr); ok && sel.Sel.Name == "Server" {
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "http" {
					rel, _ := filepath.Rel(root, path)
					found = append(found, rel+":"+strconv.Itoa(fset.Position(n.Pos()).Line))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("looked at %d files under %s: not the module", files, root)
	}
	if len(found) > 0 {
		t.Errorf("http.Server made outside internal/server (use server.New, so it has timeouts):\n%s", strings.Join(found, "\n"))
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the package")
		}
		dir = parent
	}
}
