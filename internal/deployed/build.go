package deployed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/silo-saas/silo/cdk/controlplane"
	"github.com/silo-saas/silo/internal/lambdazip"
)

// Module is silo's Go module path: the harness builds from a checkout of it.
const Module = "github.com/silo-saas/silo"

// RIEPackage is the Lambda runtime interface emulator's command, a tool
// dependency of the module (go.mod's tool line), so building it needs
// nothing the module does not already pin.
const RIEPackage = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"

// ErrNoSource means the harness was not run from a checkout of silo: it
// builds the Lambda functions from their source.
var ErrNoSource = errors.New("the deployed topology is built from silo's source, and no checkout of " + Module + " holds the working directory")

// FindSource returns the root of the silo checkout that holds dir (its
// go.mod names Module).
func FindSource(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for line := range strings.SplitSeq(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && f[1] == Module {
					return dir, nil
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoSource
		}
		dir = parent
	}
}

// DefaultCacheDir is where built functions, their zips, the runtime
// interface emulator and synthesized stacks are kept between runs.
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory: %w", err)
	}
	return filepath.Join(dir, "silo", "deployed"), nil
}

// artifacts is what a build produced: every function's zip (by function
// name), the runtime interface emulator, and the architecture they run on.
type artifacts struct {
	// zips maps a function name to its zip, named by content.
	zips map[string]string
	// sums maps a function name to its zip's CodeSha256 (base64 SHA-256, as
	// Lambda reports it).
	sums map[string]string
	rie  string
	// arch is the Lambda architecture of the binaries (x86_64 or arm64).
	arch string
}

// buildSpec says what to build and where.
type buildSpec struct {
	source, cache string
	// packages maps each function to the package it is built from
	// ("./lambdas/api").
	packages map[string]string
}

// build compiles every function for this machine (linux, its GOARCH) with
// the flags `make build` uses for AWS, zips each with lambdazip, and builds
// the runtime interface emulator. Go's build cache makes a repeated build
// cheap; the zips are named by content, so an unchanged function keeps its
// zip (and the synthesized stack that names it stays valid). Concurrent
// harnesses (test packages run in parallel) share the cache under a lock.
func build(ctx context.Context, s buildSpec) (*artifacts, error) {
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("the deployed topology runs Lambda binaries natively, which needs linux (this is %s)", runtime.GOOS)
	}
	arch, err := controlplane.ArchitectureOf(runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	unlock, err := lock(s.cache)
	if err != nil {
		return nil, err
	}
	defer unlock()

	binDir := filepath.Join(s.cache, "bin", runtime.GOOS+"_"+runtime.GOARCH)
	zipDir := filepath.Join(s.cache, "zip")
	for _, d := range []string{binDir, zipDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The go builds run at once: each mostly checks the build cache, and
	// a warm start is then as long as the slowest. Each function lands
	// in a directory of its own, as bootstrap.
	a := &artifacts{zips: map[string]string{}, sums: map[string]string{}, arch: arch, rie: filepath.Join(s.cache, "rie", "aws-lambda-rie")}
	fns := sortedKeys(s.packages)
	errs := make([]error, len(fns)+1)
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() {
			out := filepath.Join(binDir, fn, "bootstrap")
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				errs[i] = err
				return
			}
			if err := goBuild(ctx, s.source, out, s.packages[fn], "-tags", "lambda.norpc", "-trimpath"); err != nil {
				errs[i] = fmt.Errorf("build function %s from %s: %w", fn, s.packages[fn], err)
			}
		})
	}
	wg.Go(func() {
		if err := goBuild(ctx, s.source, a.rie, RIEPackage); err != nil {
			errs[len(fns)] = fmt.Errorf("build the Lambda runtime interface emulator: %w", err)
		}
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, fn := range fns {
		bin, err := os.ReadFile(filepath.Join(binDir, fn, "bootstrap"))
		if err != nil {
			return nil, err
		}
		// Zipping (deflating) the binaries is most of a warm start's
		// build: a zip is kept by its binary's content, and made again
		// only for a binary that changed.
		binSum := sha256.Sum256(bin)
		path := filepath.Join(zipDir, hex.EncodeToString(binSum[:]), fn+".zip")
		z, err := os.ReadFile(path)
		if err == nil {
			touch(filepath.Dir(path))
		} else {
			if z, err = lambdazip.Pack(bin); err != nil {
				return nil, fmt.Errorf("zip function %s: %w", fn, err)
			}
			if err := writeOnce(path, z); err != nil {
				return nil, err
			}
		}
		sum := sha256.Sum256(z)
		a.zips[fn] = path
		a.sums[fn] = base64.StdEncoding.EncodeToString(sum[:])
	}
	if err := prune(zipDir, keepZips); err != nil {
		return nil, err
	}
	return a, nil
}

// What the cache keeps: a few versions of every function's zip and of the
// synthesized stack (each new test binary or silo build synthesizes anew,
// some 40 MB, since its CDK code is part of the key), the most recently
// used first.
const (
	keepZips      = 6 * 4
	keepSyntheses = 6
)

// touch marks a cache entry used now.
func touch(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// prune removes all but the keep most recently used entries of dir.
func prune(dir string, keep int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	type entry struct {
		name string
		used time.Time
	}
	var all []entry
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // another harness's work in progress
		}
		if info, err := e.Info(); err == nil {
			all = append(all, entry{e.Name(), info.ModTime()})
		}
	}
	if len(all) <= keep {
		return nil
	}
	slices.SortFunc(all, func(a, b entry) int { return b.used.Compare(a.used) })
	for _, e := range all[keep:] {
		if err := os.RemoveAll(filepath.Join(dir, e.name)); err != nil {
			return fmt.Errorf("prune the cache: %w", err)
		}
	}
	return nil
}

// goBuild runs go build in the source tree for this machine, statically
// linked as Lambda's provided runtimes want.
func goBuild(ctx context.Context, source, out, pkg string, flags ...string) error {
	args := append([]string{"build", "-o", out}, flags...)
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = source
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, stderr.String())
	}
	return nil
}

// writeOnce writes b to path unless a file is there already (files are
// named by their content), atomically.
func writeOnce(path string, b []byte) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// lock takes the cache directory's lock (flock, released by the kernel
// if the process dies), so that two harnesses do not build into it at
// once.
func lock(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache directory %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
