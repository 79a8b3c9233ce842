package awsx

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TestChecksumValidationOnlyRelaxedForTheEmulator: against an endpoint
// override (the emulator, which sends S3 objects without checksums) the
// SDK validates checksums only when asked; against AWS it keeps its
// default of validating whenever a checksum comes back.
func TestChecksumValidationOnlyRelaxedForTheEmulator(t *testing.T) {
	t.Setenv(EndpointEnv, "")
	for _, tc := range []struct {
		name     string
		endpoint string
		want     aws.ResponseChecksumValidation
	}{
		{"emulator", "http://127.0.0.1:4566", aws.ResponseChecksumValidationWhenRequired},
		{"aws", "", aws.ResponseChecksumValidationWhenSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(t.Context(), Options{Endpoint: tc.endpoint, Region: "us-east-1", AccessKeyID: "k", SecretAccessKey: "s"})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ResponseChecksumValidation != tc.want {
				t.Errorf("ResponseChecksumValidation = %v, want %v", cfg.ResponseChecksumValidation, tc.want)
			}
		})
	}
}
