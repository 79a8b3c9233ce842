package registry

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/silo-saas/silo/internal/awsx"
)

// FieldError says which input field is wrong and why. It matches ErrInvalid.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// ValidateID checks a tenant id: a slug of MinIDLen to MaxIDLen (3–40)
// lowercase letters, digits and hyphens that neither starts nor ends with
// a hyphen. It accepts every id silo ever handed out; a new tenant's id must
// also be within the budget (ValidateNewID, names.go).
func ValidateID(id string) error {
	switch {
	case len(id) < MinIDLen || len(id) > MaxIDLen:
		return &FieldError{"id", fmt.Sprintf("must be %d to %d characters, got %d", MinIDLen, MaxIDLen, utf8.RuneCountInString(id))}
	case id[0] == '-' || id[len(id)-1] == '-':
		return &FieldError{"id", fmt.Sprintf("%q must not start or end with a hyphen", id)}
	}
	for i, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return &FieldError{"id", fmt.Sprintf("%q has %q at position %d; use lowercase letters, digits and hyphens", printable(id), r, i)}
		}
	}
	return nil
}

// Normalize trims surrounding spaces and lowercases the email, and fills the
// default kind. It does not validate.
func (s Spec) Normalize() Spec {
	s.ID = strings.TrimSpace(s.ID)
	s.Name = strings.TrimSpace(s.Name)
	s.Email = strings.ToLower(strings.TrimSpace(s.Email))
	s.Region = strings.TrimSpace(s.Region)
	if s.Kind == "" {
		s.Kind = KindTenant
	}
	return s
}

// Validate checks every field and returns all problems at once (joined),
// each a *FieldError matching ErrInvalid.
func (s Spec) Validate() error { return s.validate(ValidateID) }

// ValidateNew is Validate for a tenant about to be created: its id must
// also be within the budget of new ids (MaxNewIDLen).
func (s Spec) ValidateNew() error { return s.validate(ValidateNewID) }

func (s Spec) validate(validateID func(string) error) error {
	var errs []error
	if err := validateID(s.ID); err != nil {
		errs = append(errs, err)
	}
	if err := validateName(s.Name); err != nil {
		errs = append(errs, err)
	}
	if err := validateEmail(s.Email); err != nil {
		errs = append(errs, err)
	}
	switch s.Tier {
	case TierBasic, TierStandard, TierEnterprise:
	default:
		errs = append(errs, &FieldError{"tier", fmt.Sprintf("%q is not a tier (basic, standard or enterprise)", printable(string(s.Tier)))})
	}
	if !awsx.KnownRegion(s.Region) {
		errs = append(errs, &FieldError{"region", fmt.Sprintf("%q is not a known AWS region code (such as us-east-1)", printable(s.Region))})
	}
	switch s.Kind {
	case KindTenant, KindPreview, KindPool:
	default:
		errs = append(errs, &FieldError{"kind", fmt.Sprintf("%q is not a kind (tenant, preview or pool)", printable(string(s.Kind)))})
	}
	return errors.Join(errs...)
}

// MaxNameLen bounds a tenant's name, in characters. Registered company
// names run long ("… Gesellschaft mit beschränkter Haftung & Co.
// Kommanditgesellschaft"); the name is only stored and shown, the id
// derived from it is short whatever its length.
const MaxNameLen = 256

func validateName(name string) error {
	if !utf8.ValidString(name) {
		return &FieldError{"name", "is not valid UTF-8"}
	}
	n := utf8.RuneCountInString(name)
	if n < 1 || n > MaxNameLen {
		return &FieldError{"name", fmt.Sprintf("must be 1 to %d characters, got %d", MaxNameLen, n)}
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return &FieldError{"name", fmt.Sprintf("has the unprintable character %U", r)}
		}
	}
	return nil
}

func validateEmail(email string) error {
	if email == "" {
		return &FieldError{"email", "is required"}
	}
	if len(email) > 254 {
		return &FieldError{"email", fmt.Sprintf("must be at most 254 characters, got %d", len(email))}
	}
	addr, err := mail.ParseAddress(email)
	// A bare address only: no display name, no comments, no angle brackets.
	if err != nil || addr.Name != "" || addr.Address != email {
		return &FieldError{"email", fmt.Sprintf("%q is not a plain email address (like ops@example.com)", printable(email))}
	}
	at := strings.LastIndexByte(email, '@')
	domain := email[at+1:]
	// mail.ParseAddress accepts quoted local parts and dotless domains that
	// no mail system of a customer will have; refuse them here.
	if strings.ContainsAny(email, " \"") || !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return &FieldError{"email", fmt.Sprintf("%q needs a domain with a dot (like example.com)", printable(email))}
	}
	return nil
}

// printable quotes-safe shortens what the caller sent, so an error message
// never carries a megabyte or control characters back.
func printable(s string) string {
	const max = 64
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "…"
	}
	return s
}
