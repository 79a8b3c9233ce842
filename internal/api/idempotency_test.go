package api

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/silo-saas/silo/registry"
)

// TestIdempotencyKeyRule: keys a client makes at random pass; keys a person
// or a counter makes do not, each with a message saying what is needed.
func TestIdempotencyKeyRule(t *testing.T) {
	random := func(n int) []byte {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Makers of keys that must always pass, each tried many times.
	makers := map[string]func() string{
		"uuid v4":              NewIdempotencyKey,
		"32 hex digits":        func() string { return hex.EncodeToString(random(16)) },
		"22 base64url":         func() string { return base64.RawURLEncoding.EncodeToString(random(16)) },
		"silo signup's own":    func() string { return "cli-" + hex.EncodeToString(random(12)) },
		"a label and a uuid":   func() string { return "soak-signup-0042-" + NewIdempotencyKey() },
		"upper-case uuid":      func() string { return strings.ToUpper(NewIdempotencyKey()) },
		"64 hex (sha256 hash)": func() string { return hex.EncodeToString(random(32)) },
	}
	for name, make := range makers {
		t.Run("passes: "+name, func(t *testing.T) {
			for range 2000 {
				if k := make(); ValidateIdempotencyKey(k) != nil {
					t.Fatalf("%s: %v", k, ValidateIdempotencyKey(k))
				}
			}
		})
	}
	for _, k := range []string{"0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7"} {
		if err := ValidateIdempotencyKey(k); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}

	refused := []struct{ key, wantIn string }{
		{"order-1", "at least 20 characters"},
		{"aaaaaaaaaaaaaaaa", "at least 20 characters"},
		{"1234567890123456", "at least 20 characters"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "too easy to guess"},
		{"12345678901234567890", "too easy to guess"},
		{strings.Repeat("1234567890", 4), "too easy to guess"},
		{"abcdefghijklmnopqrstuvwxyz", "too easy to guess"},
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "too easy to guess"},
		{strings.Repeat("ac", 16), "too easy to guess"},
		{"order-000000000000000001", "too easy to guess"},
		{"", "1 to 128"},
		{"has spaces in it, twenty", "use letters, digits"},
	}
	for _, tc := range refused {
		t.Run("refused: "+tc.key, func(t *testing.T) {
			err := ValidateIdempotencyKey(tc.key)
			var fe *registry.FieldError
			if !errors.As(err, &fe) || !errors.Is(err, registry.ErrInvalid) {
				t.Fatalf("error %v, want a *registry.FieldError", err)
			}
			if !strings.Contains(fe.Problem, tc.wantIn) {
				t.Errorf("problem %q does not say %q", fe.Problem, tc.wantIn)
			}
		})
	}
}
