package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// decodeBody is decodeJSON's parsing half, separate so it can be fuzzed:
// the strict check, then encoding/json with unknown fields refused.
func decodeBody[T any](body []byte) (T, error) {
	var v T
	if err := checkStrict(body); err != nil {
		return v, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) && typ.Field != "" {
			return v, fieldFail(typ.Field, "must be a "+typ.Type.String())
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			if n, err := strconv.Unquote(name); err == nil {
				return v, fieldFail(n, "is not a field of this request")
			}
		}
		return v, fail(http.StatusBadRequest, CodeInvalidJSON, "%s", jsonProblem(err))
	}
	return v, nil
}

// jsonProblem describes a decoding error without echoing the body.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "the body is empty; send a JSON object"
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return "the body must be a JSON object"
	}
	return "malformed JSON"
}

// maxJSONDepth bounds how deeply a request body may nest; no request
// type goes past two levels (an object holding a list).
const maxJSONDepth = 32

// checkStrict walks a request body's tokens once, before it is decoded,
// for what encoding/json lets through silently:
//
//   - a name given twice in one object, in any letter case: the decoder
//     matches names case-insensitively and keeps the last, so
//     {"name":"a","NAME":"b"} would sign "b" up;
//   - a string (value or name) that is not valid UTF-8, or has an unpaired
//     \uD800–\uDFFF escape: the decoder turns both into U+FFFD;
//   - a body that is not one JSON object: null (which decodes into a
//     struct as all fields absent), another value, data after it.
//
// Go 1.26's encoding/json/v2 refuses the first two, but only under
// GOEXPERIMENT=jsonv2, so this check is ours. Its work is one pass over
// a body whose size the caller has bounded, with the nesting bounded by
// maxJSONDepth. Problems are 400 invalid_json naming the field.
func checkStrict(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // numbers are the real decode's business
	var stack []*jsonFrame
	for started := false; !started || len(stack) > 0; started = true {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return fail(http.StatusBadRequest, CodeInvalidJSON, "%s", jsonProblem(err))
		}
		raw := body[before:dec.InputOffset()]
		if !started {
			switch tok {
			case json.Delim('{'):
			case nil:
				return fail(http.StatusBadRequest, CodeInvalidJSON, "the body is null; send a JSON object")
			default:
				return fail(http.StatusBadRequest, CodeInvalidJSON, "the body must be a JSON object")
			}
		}
		var top *jsonFrame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				finishValue(stack)
				continue
			}
			name := tok.(string) // the decoder allows only a string here
			if problem := stringProblem(raw); problem != "" {
				return fieldFail(top.path, "has a field name that "+problem)
			}
			folded := string(appendFolded(nil, name))
			if first, ok := top.names[folded]; ok {
				if first == name {
					return fieldFail(childPath(top.path, name), "appears twice")
				}
				return fieldFail(childPath(top.path, name), fmt.Sprintf("appears twice (as %s and %s; names match regardless of case)", quoteLabel(first), quoteLabel(name)))
			}
			top.names[folded] = name
			top.key, top.wantKey = name, false
			continue
		}
		path := ""
		if top != nil {
			if top.object {
				path = childPath(top.path, top.key)
			} else {
				path = top.path + "[" + strconv.Itoa(top.index) + "]"
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == maxJSONDepth {
				return fail(http.StatusBadRequest, CodeInvalidJSON, "the body nests deeper than %d levels", maxJSONDepth)
			}
			f := &jsonFrame{path: path, object: tok == json.Delim('{')}
			if f.object {
				f.names, f.wantKey = map[string]string{}, true
			}
			stack = append(stack, f)
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			finishValue(stack)
			continue
		}
		if _, ok := tok.(string); ok {
			if problem := stringProblem(raw); problem != "" {
				return fieldFail(path, problem)
			}
		}
		finishValue(stack)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail(http.StatusBadRequest, CodeInvalidJSON, "the body has data after the JSON object")
	}
	return nil
}

// jsonFrame is an object or array being walked.
type jsonFrame struct {
	path   string
	object bool
	// names maps each name seen in the object, folded as encoding/json
	// matches names, to its first spelling.
	names   map[string]string
	key     string // the name whose value comes next
	wantKey bool
	index   int // arrays: the next element's
}

// finishValue records that the value the innermost frame waited for is
// complete.
func finishValue(stack []*jsonFrame) {
	if len(stack) == 0 {
		return
	}
	if top := stack[len(stack)-1]; top.object {
		top.wantKey = true
	} else {
		top.index++
	}
}

func childPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func fieldFail(field, problem string) error {
	field = label(field)
	if field == "" {
		return fail(http.StatusBadRequest, CodeInvalidJSON, "the body %s", problem)
	}
	e := fail(http.StatusBadRequest, CodeInvalidJSON, "field %s %s", field, problem)
	e.fields = []FieldProblem{{Field: field, Problem: problem}}
	return e
}

// label makes a field name fit for a message: at most 64 bytes, and
// escaped when it is not valid UTF-8 or not printable.
func label(s string) string {
	cut := len(s) > 64
	if cut {
		s = s[:64]
		for len(s) > 0 && !utf8.ValidString(s) && len(s) > 60 {
			s = s[:len(s)-1] // do not split the last character
		}
	}
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			q := strconv.QuoteToASCII(s)
			s = q[1 : len(q)-1]
			break
		}
	}
	if cut {
		s += "…"
	}
	return s
}

func quoteLabel(s string) string { return `"` + label(s) + `"` }

// stringProblem checks a string token as it was written (with whatever
// separator came before it): valid UTF-8, and every \u escape of a
// surrogate paired. It says what is wrong, or "".
func stringProblem(raw []byte) string {
	if !utf8.Valid(raw) {
		return "is not valid UTF-8"
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++
		if i >= len(raw) || raw[i] != 'u' {
			continue // a one-character escape; the decoder checked it
		}
		r, ok := hex4(raw[i+1:])
		if !ok {
			continue // the decoder refused it already
		}
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return fmt.Sprintf("has an unpaired surrogate escape (\\u%04x), which is no character", r)
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
				if lo, ok := hex4(raw[i+3:]); ok && lo >= 0xDC00 && lo <= 0xDFFF {
					i += 6
					continue
				}
			}
			return fmt.Sprintf("has an unpaired surrogate escape (\\u%04x), which is no character", r)
		}
	}
	return ""
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 32)
	return rune(n), err == nil
}

// appendFolded folds a name as encoding/json does when it matches names
// to fields (its foldName): ASCII letters to upper case, other runes to
// the smallest of their simple case folding orbit, so two names fold
// alike exactly when strings.EqualFold says they are equal.
func appendFolded(out []byte, name string) []byte {
	for _, r := range name {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			out = append(out, byte(r))
			continue
		}
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		out = utf8.AppendRune(out, r)
	}
	return out
}
