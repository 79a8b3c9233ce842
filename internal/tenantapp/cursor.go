package tenantapp

import (
	"encoding/base64"
	"encoding/json"
	"errors"
)

// A cursor is where the next page of a list starts: the id of the last item
// of the previous page. It is opaque to callers (base64url of a small
// versioned JSON document) so its format can change without breaking them;
// a decoded cursor is validated like any other input, because it comes back
// from the client.
type cursor struct {
	V     int    `json:"v"`
	After string `json:"after"`
}

const cursorVersion = 1

// maxCursorLen bounds what is decoded: a valid cursor is far shorter.
const maxCursorLen = 256

var errBadCursor = errors.New("bad cursor")

func encodeCursor(afterID string) string {
	b, _ := json.Marshal(cursor{V: cursorVersion, After: afterID})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor returns the item id a cursor points after.
func decodeCursor(s string) (string, error) {
	if s == "" || len(s) > maxCursorLen {
		return "", errBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", errBadCursor
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.V != cursorVersion || !validID(c.After) {
		return "", errBadCursor
	}
	return c.After, nil
}
