package vending

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/silo-saas/silo/registry"
)

// EventSource is the source of every event silo puts on its bus.
const EventSource = "silo"

type putEventsAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Bus publishes tenant events to an EventBridge bus. The registry's audit
// history is the record; the bus is a notification, so a failed put is
// logged, not retried forever.
type Bus struct {
	eb   putEventsAPI
	name string
	log  *slog.Logger
}

// NewBus returns a publisher to the named bus.
func NewBus(eb putEventsAPI, name string, log *slog.Logger) *Bus {
	return &Bus{eb: eb, name: name, log: log}
}

// TenantEvent is the detail of a tenant event.
type TenantEvent struct {
	TenantID   string `json:"tenant_id"`
	State      string `json:"state"`
	AccountID  string `json:"account_id,omitempty"`
	Endpoint   string `json:"endpoint,omitempty"`
	AppVersion string `json:"app_version,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// Health is the tenant's health as last recorded (tenant.health_changed
	// events carry the new one).
	Health *registry.Health `json:"health,omitempty"`
}

// Publish puts one event of the given kind (tenant.activated, …).
func (b *Bus) Publish(ctx context.Context, kind string, t *registry.Tenant) {
	detail, _ := json.Marshal(TenantEvent{TenantID: t.ID, State: string(t.State), AccountID: t.AccountID,
		Endpoint: t.Endpoint, AppVersion: t.AppVersion, Reason: t.Reason, Health: t.Health})
	out, err := b.eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		EventBusName: aws.String(b.name), Source: aws.String(EventSource),
		DetailType: aws.String(kind), Detail: aws.String(string(detail)),
		Resources: []string{},
	}}})
	if err == nil && out.FailedEntryCount > 0 {
		b.log.WarnContext(ctx, "tenant event rejected", "tenant", t.ID, "kind", kind, "code", aws.ToString(out.Entries[0].ErrorCode))
		return
	}
	if err != nil {
		b.log.WarnContext(ctx, "tenant event not published", "tenant", t.ID, "kind", kind, "error", err)
	}
}
