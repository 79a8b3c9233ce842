package vending

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/registry"
)

// Each customer tenant gets a DNS name, <tenant id>.<Config.TenantDomain>, as
// a record in the management account's hosted zone (Config.HostedZoneID)
// that points at the tenant's own API: a CNAME to the API Gateway host in
// AWS, an A record to the loopback address locally (the app host's URLs
// carry a port, which no DNS record can). The full endpoint URL stays in
// the registry. A central front end finds a tenant by its name alone, and
// no request of the tenant's ever passes through a shared component.
//
// The record is written (UPSERT, idempotent) before the tenant becomes
// ACTIVE and after every update, and removed as the first step of a
// decommission: read, then delete exactly what was read, so a crash
// anywhere only repeats a step that is safe to repeat.

// dnsAPI lists the Route 53 calls the reconciler makes.
type dnsAPI interface {
	ChangeResourceRecordSets(ctx context.Context, in *route53.ChangeResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error)
	ListResourceRecordSets(ctx context.Context, in *route53.ListResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ListResourceRecordSetsOutput, error)
}

// AttrDNSName is the tenant attribute that records the DNS name the
// reconciler gave the tenant (the resolve API answers it).
const AttrDNSName = "dns_name"

// dnsTTL is the records' TTL in seconds: short, so a changed endpoint
// (a redeployed API) is seen quickly.
const dnsTTL = 60

// dnsEnabled reports whether tenants get DNS names: a zone, a domain and a
// Route 53 client are all configured.
func (r *Reconciler) dnsEnabled() bool {
	return r.cfg.HostedZoneID != "" && r.cfg.TenantDomain != "" && r.d.DNS != nil
}

// DNSName is the DNS name of tenant id under domain (registry.DNSName).
func DNSName(id, domain string) string { return registry.DNSName(id, domain) }

// wantsDNS reports whether t gets a DNS name: customer tenants do; previews
// and pool accounts do not.
func wantsDNS(t *registry.Tenant) bool {
	return t.Kind == "" || t.Kind == registry.KindTenant
}

// recordFor is the record that points name at endpoint: an A record for an
// endpoint whose host is an IP address, a CNAME to the host otherwise.
func recordFor(name, endpoint string) (*r53types.ResourceRecordSet, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Hostname() == "" {
		return nil, fmt.Errorf("endpoint %q has no host", endpoint)
	}
	host := u.Hostname()
	rr := &r53types.ResourceRecordSet{Name: aws.String(name), TTL: aws.Int64(dnsTTL)}
	if ip := net.ParseIP(host); ip != nil {
		rr.Type = r53types.RRTypeA
		if ip.To4() == nil {
			rr.Type = r53types.RRTypeAaaa
		}
		rr.ResourceRecords = []r53types.ResourceRecord{{Value: aws.String(ip.String())}}
		return rr, nil
	}
	rr.Type = r53types.RRTypeCname
	rr.ResourceRecords = []r53types.ResourceRecord{{Value: aws.String(host)}}
	return rr, nil
}

// serveDNS points t's DNS name at endpoint (UPSERT) and returns the name,
// or "" when DNS names are off or t gets none.
func (r *Reconciler) serveDNS(ctx context.Context, t *registry.Tenant, endpoint string) (string, error) {
	if !r.dnsEnabled() || !wantsDNS(t) {
		return "", nil
	}
	name := DNSName(t.ID, r.cfg.TenantDomain)
	rr, err := recordFor(name, endpoint)
	if err != nil {
		return "", fmt.Errorf("dns record of %s: %w", t.ID, err)
	}
	// A CNAME and an A record cannot share a name: an endpoint that
	// changed kind (never, in practice) leaves the old record to delete.
	if err := r.deleteRecords(ctx, name, rr.Type); err != nil {
		return "", err
	}
	_, err = r.d.DNS.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(r.cfg.HostedZoneID),
		ChangeBatch: &r53types.ChangeBatch{
			Comment: aws.String("silo tenant " + t.ID),
			Changes: []r53types.Change{{Action: r53types.ChangeActionUpsert, ResourceRecordSet: rr}},
		},
	})
	if err != nil {
		return "", fmt.Errorf("upsert dns record %s: %w", name, err)
	}
	r.d.Log.DebugContext(ctx, "dns record upserted", "tenant", t.ID, "name", name, "type", rr.Type)
	return name, nil
}

// unserveDNS removes t's DNS record, if it has one. It is idempotent.
func (r *Reconciler) unserveDNS(ctx context.Context, t *registry.Tenant) error {
	if !r.dnsEnabled() || !wantsDNS(t) {
		return nil
	}
	name := t.Attributes[AttrDNSName]
	if name == "" {
		name = DNSName(t.ID, r.cfg.TenantDomain)
	}
	return r.deleteRecords(ctx, name, "")
}

// deleteRecords deletes the A, AAAA and CNAME records named name, except
// those of type keep. Route 53 deletes a record only when given all of it,
// so each is read first and deleted exactly as read; a record already gone
// (a repeated step, or another reconciler's) is done.
func (r *Reconciler) deleteRecords(ctx context.Context, name string, keep r53types.RRType) error {
	found, err := r.records(ctx, name)
	if err != nil {
		return err
	}
	for _, rr := range found {
		if rr.Type == keep {
			continue
		}
		// The name as silo writes it (no trailing dot), the rest as read.
		del := rr
		del.Name = aws.String(name)
		_, err := r.d.DNS.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
			HostedZoneId: aws.String(r.cfg.HostedZoneID),
			ChangeBatch:  &r53types.ChangeBatch{Changes: []r53types.Change{{Action: r53types.ChangeActionDelete, ResourceRecordSet: &del}}},
		})
		if err != nil && !awsx.IsRecordSetGone(err) {
			return fmt.Errorf("delete dns record %s %s: %w", name, rr.Type, err)
		}
		r.d.Log.DebugContext(ctx, "dns record deleted", "name", name, "type", rr.Type)
	}
	return nil
}

// records returns the A, AAAA and CNAME records named exactly name.
func (r *Reconciler) records(ctx context.Context, name string) ([]r53types.ResourceRecordSet, error) {
	out, err := r.d.DNS.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{
		HostedZoneId:    aws.String(r.cfg.HostedZoneID),
		StartRecordName: aws.String(name),
		MaxItems:        aws.Int32(10),
	})
	if err != nil {
		return nil, fmt.Errorf("read dns records %s: %w", name, err)
	}
	var found []r53types.ResourceRecordSet
	for _, rr := range out.ResourceRecordSets {
		if !sameName(aws.ToString(rr.Name), name) {
			continue
		}
		switch rr.Type {
		case r53types.RRTypeA, r53types.RRTypeAaaa, r53types.RRTypeCname:
			found = append(found, rr)
		}
	}
	return found, nil
}

func sameName(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// LookupDNS returns the record behind t's DNS name (type and value), for
// tests and checks; ok is false when there is none or DNS names are off.
func (r *Reconciler) LookupDNS(ctx context.Context, t *registry.Tenant) (typ, value string, ok bool, err error) {
	if !r.dnsEnabled() {
		return "", "", false, nil
	}
	found, err := r.records(ctx, DNSName(t.ID, r.cfg.TenantDomain))
	if err != nil || len(found) == 0 {
		return "", "", false, err
	}
	rr := found[0]
	if len(rr.ResourceRecords) > 0 {
		value = aws.ToString(rr.ResourceRecords[0].Value)
	}
	return string(rr.Type), value, true, nil
}
