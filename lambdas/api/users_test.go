package main

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/issuer"
)

// TestUserVerifierSettings: the SILO_USER_* settings are all or nothing,
// and when set the API verifies that issuer's user tokens.
func TestUserVerifierSettings(t *testing.T) {
	iss, err := issuer.New("https://login.example.com", issuer.Options{Audience: "tenant-app"})
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(iss.PublicKey())
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	full := map[string]string{"SILO_USER_ISSUER": iss.URL(), "SILO_USER_PUBLIC_KEY": keyPEM, "SILO_USER_AUDIENCE": "tenant-app"}
	lookup := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	if v, err := userVerifier(lookup(nil)); v != nil || err != nil {
		t.Errorf("no settings: %v %v, want none and no error", v, err)
	}
	if _, err := userVerifier(lookup(map[string]string{"SILO_USER_ISSUER": iss.URL()})); err == nil || !strings.Contains(err.Error(), "SILO_USER_AUDIENCE") {
		t.Errorf("issuer alone: %v, want the missing settings named", err)
	}
	v, err := userVerifier(lookup(full))
	if err != nil || v == nil {
		t.Fatalf("all settings: %v %v", v, err)
	}
	tok, err := iss.Mint("acme", "u1", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := v.VerifyUser(t.Context(), tok)
	if err != nil || u.Tenant != "acme" || u.Subject != "u1" {
		t.Errorf("verify a user token: %+v %v", u, err)
	}
}
