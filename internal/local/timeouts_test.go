package local

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/server"
)

// TestAPICutsOffATrickledBody: the local API's server has a read timeout,
// so a signup whose body arrives a byte every two seconds is cut off with
// a 408 long before the body is complete, while a body sent at once, on
// the same server, is served.
func TestAPICutsOffATrickledBody(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	// A read timeout of a few seconds instead of the default 30, so the
	// test does not wait half a minute; the mechanism is the same.
	p, err := Start(ctx, Options{Emulator: emu, APITimeouts: server.Timeouts{Read: 3 * time.Second}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	body := `{"name":"Trickle Co","email":"ops@trickle.example","tier":"basic","region":"us-east-1"}`

	t.Run("a body sent at once is served", func(t *testing.T) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.Info.API+"/v1/signup", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(api.IdempotencyKeyHeader, randomKey(t))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("signup: %d %s", resp.StatusCode, b)
		}
	})

	t.Run("a trickled body is cut off", func(t *testing.T) {
		u, err := url.Parse(p.Info.API)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		head := fmt.Sprintf("POST /v1/signup HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s: %s\r\nContent-Length: %d\r\n\r\n",
			u.Host, api.IdempotencyKeyHeader, randomKey(t), len(body))
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		type answer struct {
			resp *http.Response
			body []byte
			err  error
		}
		answered := make(chan answer, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				answered <- answer{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			answered <- answer{resp: resp, body: b, err: err}
		}()
		sent := 0
		var got answer
	trickle:
		for {
			select {
			case got = <-answered:
				break trickle
			case <-time.After(2 * time.Second):
			}
			if sent == len(body) {
				t.Fatalf("the whole body went out, a byte every 2s, and the server still waits for more")
			}
			if _, err := io.WriteString(conn, body[sent:sent+1]); err != nil {
				// The server closed the connection: cut off too; its
				// answer, if it sent one, is still read below.
				got = <-answered
				break
			}
			sent++
		}
		if sent >= len(body) {
			t.Fatalf("cut off only after the whole body (%d bytes) was sent", sent)
		}
		if got.err != nil {
			t.Fatalf("after %d of %d bytes the connection ended without an answer: %v", sent, len(body), got.err)
		}
		var eb api.ErrorBody
		if err := json.Unmarshal(got.body, &eb); err != nil {
			t.Fatalf("answer %d %q: %v", got.resp.StatusCode, got.body, err)
		}
		if got.resp.StatusCode != http.StatusRequestTimeout || eb.Error.Code != api.CodeRequestTimeout {
			t.Errorf("answer %d %s, want 408 %s", got.resp.StatusCode, got.body, api.CodeRequestTimeout)
		}
		// The server is done with the connection: nothing more comes.
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			t.Errorf("after the 408 the connection gave %d bytes, %v; want it closed", n, err)
		}
		t.Logf("cut off after %d of %d bytes", sent, len(body))
	})
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// randomKey is an idempotency key as a client should make one.
func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
