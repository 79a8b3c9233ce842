package vending

import (
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/registry"
)

func TestRecordFor(t *testing.T) {
	tests := []struct {
		endpoint, typ, value string
	}{
		{"http://127.0.0.1:41235", "A", "127.0.0.1"},
		{"http://[::1]:8080/", "AAAA", "::1"},
		{"https://abc123.execute-api.us-east-1.amazonaws.com/v1/", "CNAME", "abc123.execute-api.us-east-1.amazonaws.com"},
	}
	for _, tc := range tests {
		rr, err := recordFor("x.tenants.example", tc.endpoint)
		if err != nil {
			t.Fatalf("%s: %v", tc.endpoint, err)
		}
		if got := string(rr.Type) + " " + aws.ToString(rr.ResourceRecords[0].Value); got != tc.typ+" "+tc.value {
			t.Errorf("%s: %s, want %s %s", tc.endpoint, got, tc.typ, tc.value)
		}
	}
	if _, err := recordFor("x.tenants.example", "not a url"); err == nil {
		t.Error("an endpoint without a host made a record")
	}
}

// dnsReconciler is a reconciler with only what the DNS steps use, on a new
// hosted zone of the emulator's management account.
func dnsReconciler(t *testing.T) (*Reconciler, *route53.Client) {
	t.Helper()
	org := emu.ResetT(t)
	opts := org.Options()
	opts.Standard, opts.MaxBackoff = true, 100*time.Millisecond
	cfg, err := awsx.Load(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	dns := route53.NewFromConfig(cfg)
	zone, err := dns.CreateHostedZone(t.Context(), &route53.CreateHostedZoneInput{Name: aws.String("tenants.example.internal"), CallerReference: aws.String("test")})
	if err != nil {
		t.Fatal(err)
	}
	return &Reconciler{
		cfg: Config{HostedZoneID: aws.ToString(zone.HostedZone.Id), TenantDomain: "tenants.example.internal"},
		d:   Deps{DNS: dns, Log: slog.New(slog.DiscardHandler)},
	}, dns
}

// TestDNSRecordLifecycle: UPSERT on serving and again when the endpoint
// changes (even its record type), removal that finds and deletes exactly
// the record, and removal again (a repeated step after a crash) that finds
// nothing and succeeds.
func TestDNSRecordLifecycle(t *testing.T) {
	r, _ := dnsReconciler(t)
	ctx := t.Context()
	tn := &registry.Tenant{Spec: registry.Spec{ID: "acme"}}
	lookup := func() string {
		t.Helper()
		typ, value, ok, err := r.LookupDNS(ctx, tn)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return ""
		}
		return typ + " " + value
	}
	steps := []struct {
		name string
		do   func() error
		want string
	}{
		{"serve loopback", func() error { _, err := r.serveDNS(ctx, tn, "http://127.0.0.1:4000"); return err }, "A 127.0.0.1"},
		{"serve again (a replayed step)", func() error { _, err := r.serveDNS(ctx, tn, "http://127.0.0.1:4000"); return err }, "A 127.0.0.1"},
		{"endpoint becomes a host", func() error {
			_, err := r.serveDNS(ctx, tn, "https://abc.execute-api.us-east-1.amazonaws.com/v1/")
			return err
		}, "CNAME abc.execute-api.us-east-1.amazonaws.com"},
		{"unserve", func() error { return r.unserveDNS(ctx, tn) }, ""},
		{"unserve again", func() error { return r.unserveDNS(ctx, tn) }, ""},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if diff := cmp.Diff(s.want, lookup()); diff != "" {
			t.Errorf("%s: record (-want +got):\n%s", s.name, diff)
		}
	}
	if name, err := r.serveDNS(ctx, tn, "http://127.0.0.1:4000"); err != nil || name != "acme.tenants.example.internal" {
		t.Errorf("serveDNS = %q, %v", name, err)
	}
}

// TestDNSOnlyForCustomerTenants: previews and pool accounts get no record,
// and a reconciler without a zone makes no Route 53 call at all.
func TestDNSOnlyForCustomerTenants(t *testing.T) {
	r, _ := dnsReconciler(t)
	ctx := t.Context()
	for _, kind := range []registry.Kind{registry.KindPreview, registry.KindPool} {
		tn := &registry.Tenant{Spec: registry.Spec{ID: "pr-1", Kind: kind}}
		if name, err := r.serveDNS(ctx, tn, "http://127.0.0.1:4000"); err != nil || name != "" {
			t.Errorf("%s: serveDNS = %q, %v; want no record", kind, name, err)
		}
		if _, _, ok, _ := r.LookupDNS(ctx, tn); ok {
			t.Errorf("%s: a record was made", kind)
		}
	}
	off := &Reconciler{d: Deps{Log: slog.New(slog.DiscardHandler)}} // no zone, no client: a call would panic
	tn := &registry.Tenant{Spec: registry.Spec{ID: "acme"}}
	if name, err := off.serveDNS(ctx, tn, "http://127.0.0.1:4000"); err != nil || name != "" {
		t.Errorf("no zone: serveDNS = %q, %v", name, err)
	}
	if err := off.unserveDNS(ctx, tn); err != nil {
		t.Errorf("no zone: unserveDNS = %v", err)
	}
}

// TestDNSUnderThrottling: Route 53 throttles (through the proxy, in its own
// XML error shape) are retried by the SDK; the record is written and
// removed all the same.
func TestDNSUnderThrottling(t *testing.T) {
	r, _ := dnsReconciler(t)
	ctx := t.Context()
	emu.Proxy.Configure(emulator.Faults{Throttle: map[string]float64{"Route 53.*": 0.4}, Seed: 5})
	defer emu.Proxy.Configure(emulator.Faults{})
	tn := &registry.Tenant{Spec: registry.Spec{ID: "acme"}}
	for range 3 {
		if _, err := r.serveDNS(ctx, tn, "http://127.0.0.1:4000"); err != nil {
			t.Fatalf("serve under throttling: %v", err)
		}
		if err := r.unserveDNS(ctx, tn); err != nil {
			t.Fatalf("unserve under throttling: %v", err)
		}
	}
	if st := emu.Proxy.Stats(); st.Throttled["Route 53.ChangeResourceRecordSets"]+st.Throttled["Route 53.ListResourceRecordSets"] == 0 {
		t.Errorf("nothing was throttled: %+v", st.Throttled)
	}
}
