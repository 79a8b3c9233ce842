package registry

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// FuzzSpecValidate: validation never panics, every refusal is a typed
// ErrInvalid naming a field, and whatever it accepts is storable as is.
func FuzzSpecValidate(f *testing.F) {
	f.Add("acme", "Acme Corp", "ops@acme.example", "standard", "us-east-1", "tenant")
	f.Add("-bad-", "", "nope", "gold", "mars-1", "robot")
	f.Add("a", strings.Repeat("x", 101), "a@b", "basic", "", "")
	f.Add("ok-id-123", "Ünïcödé ✓", "\"quoted\"@example.com", "enterprise", "eu-west-1", "preview")
	f.Add("abc", "tab\there", "Name <a@example.com>", "basic", "US-EAST-1", "tenant")
	f.Add("x\x00y", "\xff\xfe", "a@b.c\n", "standard", "ap-southeast-2", "tenant")
	f.Fuzz(func(t *testing.T, id, name, email, tier, region, kind string) {
		s := Spec{ID: id, Name: name, Email: email, Tier: Tier(tier), Region: region, Kind: Kind(kind)}.Normalize()
		err := s.Validate()
		if err == nil {
			if ValidateID(s.ID) != nil || !utf8.ValidString(s.Name) || s.Name == "" || !strings.Contains(s.Email, "@") {
				t.Fatalf("accepted a bad spec: %+v", s)
			}
			return
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("refusal is not ErrInvalid: %v", err)
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field == "" || fe.Problem == "" {
			t.Fatalf("refusal names no field: %v", err)
		}
		if len(err.Error()) > 2000 {
			t.Fatalf("error message of %d bytes echoes too much input", len(err.Error()))
		}
	})
}

// FuzzDecodeCursor: any string either decodes to a start key for the asked
// state or is refused with ErrInvalidCursor; never a panic, never a key for
// another state.
func FuzzDecodeCursor(f *testing.F) {
	good, _ := encodeCursorFor(StateActive, "acme")
	f.Add(good, "ACTIVE")
	f.Add(good, "REQUESTED")
	f.Add("", "ACTIVE")
	f.Add("garbage!", "ACTIVE")
	f.Add("eyJ2IjoxfQ", "ACTIVE")                                                  // {"v":1}
	f.Add("eyJ2IjoyLCJzIjoiQUNUSVZFIiwiaWQiOiJhY21lIiwiYXQiOiJ4In0", "ACTIVE")     // v2
	f.Add("eyJ2IjoxLCJzIjoiQUNUSVZFIiwiaWQiOiJBQ01FIiwiYXQiOiIyMDI2In0", "ACTIVE") // bad id
	f.Add(strings.Repeat("A", 600), "ACTIVE")
	f.Fuzz(func(t *testing.T, c, state string) {
		st := State(state)
		if !st.Valid() {
			return
		}
		key, err := decodeCursor(c, st)
		if err != nil {
			if !errors.Is(err, ErrInvalidCursor) {
				t.Fatalf("refusal is not ErrInvalidCursor: %v", err)
			}
			return
		}
		pk, ok := key[attrStatePK].(*types.AttributeValueMemberS)
		if !ok || pk.Value != prefixState+state {
			t.Fatalf("cursor for %s decoded to state key %v", state, key[attrStatePK])
		}
		id, _ := strings.CutPrefix(key[attrPK].(*types.AttributeValueMemberS).Value, prefixTenant)
		if ValidateID(id) != nil {
			t.Fatalf("cursor decoded to a bad tenant id %q", id)
		}
	})
}
