// Package emulator runs the local AWS emulator (moto_server) for silo's local
// mode, tests and benchmarks, and seeds it to look like a real management
// account: an IAM user with an access key, an organization with all features,
// and silo's OU tree.
//
// The emulator is a child process on a free loopback port. It dies with its
// parent, even when the parent is killed, so tests and `silo local` never
// leave a stray moto behind.
package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/silo-saas/silo/internal/server"
)

// Command is the emulator's executable.
const Command = "moto_server"

// InstallHint tells a person how to get the emulator.
const InstallHint = "install it with: python3 -m pip install 'moto[server]==5.2.1' (or run .ci/run, which installs what is missing)"

// ErrNotInstalled means moto_server is not on PATH.
var ErrNotInstalled = errors.New("the local AWS emulator (" + Command + ") is not installed: " + InstallHint)

// Emulator is a running moto_server.
type Emulator struct {
	// Endpoint is the base URL every AWS client points at: the Proxy in
	// front of moto.
	Endpoint string
	// MotoEndpoint is moto's own URL, for its control API only.
	MotoEndpoint string
	// Proxy is what serves Endpoint.
	Proxy *Proxy

	server   *http.Server
	patchDir string

	// iamMu guards enforcing, the number of open EnforceIAM windows, and
	// locked (LockIAM holds enforcement on).
	iamMu     sync.Mutex
	enforcing int
	locked    bool

	cmd     *exec.Cmd
	done    chan struct{}
	output  *tailBuffer
	stop    sync.Once
	waitErr error
}

// Start launches moto_server on a free loopback port and waits until it
// answers. Its output goes to logs (it may be nil).
func Start(ctx context.Context, logs io.Writer) (*Emulator, error) {
	path, err := exec.LookPath(Command)
	if err != nil {
		return nil, ErrNotInstalled
	}
	// A port picked here can be taken by someone else before moto binds it;
	// try a few times rather than fail a whole test run on that race.
	var lastErr error
	for range 3 {
		e, err := start(ctx, path, logs)
		if err == nil {
			return e, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, path string, logs io.Writer) (*Emulator, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("find a free port for the emulator: %w", err)
	}
	e := &Emulator{
		MotoEndpoint: "http://127.0.0.1:" + strconv.Itoa(port),
		done:         make(chan struct{}),
		output:       &tailBuffer{max: 8 << 10},
	}
	// Not exec.CommandContext: the emulator outlives the start-up ctx and is
	// stopped by Stop (or by the kernel when this process dies).
	cmd := exec.Command(path, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	var out io.Writer = e.output
	if logs != nil {
		out = io.MultiWriter(e.output, logs)
	}
	cmd.Stdout, cmd.Stderr = out, out
	patches, err := writePatches()
	if err != nil {
		return nil, err
	}
	e.patchDir = patches
	pythonPath := patches
	if pp := os.Getenv("PYTHONPATH"); pp != "" {
		pythonPath += string(os.PathListSeparator) + pp
	}
	cmd.Env = append(os.Environ(),
		// moto reads this for its own default region.
		"AWS_DEFAULT_REGION=us-east-1",
		"PYTHONUNBUFFERED=1",
		"PYTHONPATH="+pythonPath,
	)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(patches)
		return nil, fmt.Errorf("start %s: %w", Command, err)
	}
	e.cmd = cmd
	go func() {
		e.waitErr = cmd.Wait()
		close(e.done)
	}()
	if err := e.waitReady(ctx, 30*time.Second); err != nil {
		e.Stop()
		return nil, err
	}
	// The Python patches report their own failures on stderr; a moto other
	// than the pinned one may lack what they patch. Refuse to run half-fixed.
	if out := e.output.String(); strings.Contains(out, "silo: moto") || strings.Contains(out, "Error in sitecustomize") {
		e.Stop()
		return nil, fmt.Errorf("the emulator's patches did not load (is moto 5.2.1 installed?):\n%s", out)
	}
	if err := e.serveProxy(); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

// proxyTimeouts are generous: the proxy's clients are silo's own AWS SDK
// clients, and a call takes as long as moto and the faults make it. A
// request body (an S3 upload of a release zip or a template) is read as it
// is forwarded, which is after the latency a test injects and, for a
// DynamoDB write, behind the proxy's write lock; an answer comes after
// moto did the work (a stack instance builds a whole tenant stack) and
// after the latency a test adds (Faults.Latency), and under a saturated emulator (the soak) any of these takes tens of
// seconds. The bounds only keep a stuck client from holding a connection
// for ever.
var proxyTimeouts = server.Timeouts{Header: 10 * time.Second, Read: 5 * time.Minute, Write: 15 * time.Minute, Idle: 2 * time.Minute}

// serveProxy puts the Proxy in front of moto on its own loopback port.
func (e *Emulator) serveProxy() error {
	target, err := url.Parse(e.MotoEndpoint)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the emulator proxy: %w", err)
	}
	e.Proxy = NewProxy(target)
	e.server = server.New(e.Proxy, proxyTimeouts)
	e.Endpoint = "http://" + l.Addr().String()
	go func() { _ = e.server.Serve(l) }() // ends when Stop closes the server
	return nil
}

func (e *Emulator) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	delay := 20 * time.Millisecond
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.MotoEndpoint+"/moto-api/data.json", nil)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-e.done:
			return fmt.Errorf("%s exited before answering (%v); its output:\n%s", Command, e.waitErr, e.output.String())
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer at %s: %w; its output:\n%s", Command, e.MotoEndpoint, ctx.Err(), e.output.String())
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// Stop ends the emulator and its children and waits for them. Safe to call
// more than once.
func (e *Emulator) Stop() {
	e.stop.Do(func() {
		if e.server != nil {
			_ = e.server.Close()
			e.Proxy.Close()
		}
		if e.patchDir != "" {
			defer os.RemoveAll(e.patchDir)
		}
		if e.cmd == nil || e.cmd.Process == nil {
			return
		}
		// The emulator runs in its own process group (moto_server may be a
		// shim that starts python): signal the whole group.
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
			<-e.done
		}
	})
}

// Done is closed when the emulator process has exited.
func (e *Emulator) Done() <-chan struct{} { return e.done }

// Output returns the last few KiB the emulator printed, for error reports.
func (e *Emulator) Output() string { return e.output.String() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
