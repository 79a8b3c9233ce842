package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"

	"github.com/silo-saas/silo/registry"
)

// The Idempotency-Key rule. A replayed signup answers with the tenant's
// status token, so whoever can guess a key (and the body it came with)
// reads that tenant's status: a key must be as hard to guess as a random
// one. Beyond the registry's format (1–128 of A-Za-z0-9-_.:), a key needs
// MinIdempotencyKeyLen characters and an estimated MinIdempotencyKeyBits
// bits: a random UUID (version 4), 22 or more random base64url characters,
// or 32 random hex digits pass; "aaaaaaaaaaaaaaaaaaaa",
// "12345678901234567890" or "order-1" do not.
//
// The estimate is the smaller of two: the Shannon entropy of the key's
// characters, times its length (refuses few distinct characters), and the
// same of the differences between neighbouring characters (refuses runs
// and sequences such as "abcdef…" or "1234…", whose characters vary but
// whose steps do not). It refuses keys of few characters, repeats, runs
// and counters; it cannot tell a random key from a well-varied made-up
// one ("signup-acme-corp-2026" passes), which is why clients are told to
// make keys at random.
//
// The rule applies to requests, not to the registry: tenants signed up
// under a key that no longer passes keep it, but a replay with it is
// refused like a new one, which is the point.
const (
	MinIdempotencyKeyLen  = 20
	MinIdempotencyKeyBits = 64
)

// ValidateIdempotencyKey checks a signup's Idempotency-Key: the registry's
// format, then the rule above. Its error is a *registry.FieldError saying
// what is needed.
func ValidateIdempotencyKey(key string) error {
	if err := registry.ValidateIdempotencyKey(key); err != nil {
		return err
	}
	if len(key) < MinIdempotencyKeyLen {
		return &registry.FieldError{Field: "idempotency_key", Problem: fmt.Sprintf(
			"must be at least %d characters, got %d; use a random UUID", MinIdempotencyKeyLen, len(key))}
	}
	if bits := keyBits(key); bits < MinIdempotencyKeyBits {
		return &registry.FieldError{Field: "idempotency_key", Problem: fmt.Sprintf(
			"is too easy to guess (about %.0f bits of variety, %d needed; a replay returns the status token); use a random UUID or at least 22 random characters",
			math.Floor(bits), MinIdempotencyKeyBits)}
	}
	return nil
}

// keyBits estimates how many bits of randomness key holds (see the rule).
func keyBits(key string) float64 {
	chars := make([]int, len(key))
	steps := make([]int, 0, len(key))
	for i := range len(key) {
		chars[i] = int(key[i])
		if i > 0 {
			steps = append(steps, int(key[i])-int(key[i-1]))
		}
	}
	return min(entropyBits(chars), entropyBits(steps))
}

// entropyBits is the Shannon entropy of xs' distribution times len(xs).
func entropyBits(xs []int) float64 {
	counts := map[int]int{}
	for _, x := range xs {
		counts[x]++
	}
	n := float64(len(xs))
	h := 0.0
	for _, c := range counts {
		p := float64(c) / n
		h -= p * math.Log2(p)
	}
	return h * n
}

// NewIdempotencyKey returns a random UUID (version 4): a key that passes
// the rule, for clients that make their own.
func NewIdempotencyKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
