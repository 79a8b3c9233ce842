package registry

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRoutes: GetRoute reads any tenant's routing fields; GetServingRoute
// only a serving customer tenant's, and is ErrNotFound alike for one that
// does not serve and one that does not exist.
func TestRoutes(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	// make creates a tenant of kind and moves it through states; the move
	// to ACTIVE records an endpoint and a DNS name.
	make := func(id string, kind Kind, states ...State) {
		t.Helper()
		s := spec(id)
		s.Kind = kind
		tn, _, err := f.store.Create(ctx, s, "", "test")
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range states {
			c := Change{Actor: "test"}
			if st == StateActive {
				c.Mutate = func(n *Tenant) {
					n.Endpoint = "https://" + id + ".example/v1/"
					n.Attributes = map[string]string{"dns_name": id + ".tenants.example"}
				}
			}
			if tn, err = f.store.Transition(ctx, tn, st, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	toActive := []State{StateCreatingAccount, StatePreparing, StateDeploying, StateActive}
	make("serving", KindTenant, toActive...)
	make("updating", KindTenant, append(toActive, StateUpdating)...)
	make("suspended", KindTenant, append(toActive, StateSuspended)...)
	make("vending", KindTenant, StateCreatingAccount)
	make("preview", KindPreview, toActive...)

	route := func(id string, st State, kind Kind) *Route {
		return &Route{ID: id, Kind: kind, State: st, Region: spec(id).Region,
			Endpoint: "https://" + id + ".example/v1/", Attributes: map[string]string{"dns_name": id + ".tenants.example"}}
	}
	tests := []struct {
		id          string
		wantRoute   *Route // GetRoute's
		wantServing bool   // GetServingRoute answers the same route, or ErrNotFound
	}{
		{"serving", route("serving", StateActive, KindTenant), true},
		{"updating", route("updating", StateUpdating, KindTenant), true},
		{"suspended", route("suspended", StateSuspended, KindTenant), false},
		{"vending", &Route{ID: "vending", Kind: KindTenant, State: StateCreatingAccount, Region: spec("vending").Region}, false},
		{"preview", route("preview", StateActive, KindPreview), false},
		{"nobody", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			got, err := f.store.GetRoute(ctx, tc.id)
			if tc.wantRoute == nil {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("GetRoute: %+v, %v; want ErrNotFound", got, err)
				}
			} else if err != nil {
				t.Fatalf("GetRoute: %v", err)
			} else if diff := cmp.Diff(tc.wantRoute, got); diff != "" {
				t.Errorf("GetRoute (-want +got):\n%s", diff)
			}
			if serves := tc.wantRoute != nil && tc.wantRoute.Serving(); serves != tc.wantServing {
				t.Errorf("Serving() = %v, want %v", serves, tc.wantServing)
			}
			got, err = f.store.GetServingRoute(ctx, tc.id)
			switch {
			case tc.wantServing && err != nil:
				t.Errorf("GetServingRoute: %v", err)
			case tc.wantServing:
				if diff := cmp.Diff(tc.wantRoute, got); diff != "" {
					t.Errorf("GetServingRoute (-want +got):\n%s", diff)
				}
			case !errors.Is(err, ErrNotFound):
				t.Errorf("GetServingRoute: %+v, %v; want ErrNotFound", got, err)
			}
		})
	}
	for _, get := range []func() error{
		func() error { _, err := f.store.GetRoute(ctx, "NOT AN ID"); return err },
		func() error { _, err := f.store.GetServingRoute(ctx, "NOT AN ID"); return err },
	} {
		if err := get(); !errors.Is(err, ErrInvalid) {
			t.Errorf("a malformed id: %v, want ErrInvalid", err)
		}
	}
}
