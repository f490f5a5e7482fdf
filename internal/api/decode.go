package api

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxBodyBytes bounds every JSON request body.
const maxBodyBytes = 1 << 20

// decode reads the JSON body into v. An empty body leaves v unchanged.
// Unknown fields are ignored; malformed JSON and wrong types are 400 with
// the offending field in param; bodies over 1 MiB are 413.
func decode(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !jsonContentType(ct, body) {
		return errUnsupportedMedia("Request bodies must be JSON (Content-Type: application/json).")
	}
	return decodeBytes(body, v)
}

// readBody reads a request body of at most maxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBodyBytes))
	if err == nil {
		return body, nil
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, errTooLarge("", "Request body exceeds %d bytes.", maxBodyBytes)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, &apiError{Status: http.StatusRequestTimeout, Code: "request_timeout",
			Message: "The request body stopped arriving before its end; send it again."}
	}
	return nil, errInvalid("", "Could not read the request body: %v.", err)
}

// jsonContentType accepts JSON media types, and also curl's default
// form type when the body is valid JSON, so that "curl -d '{...}'" works
// without an explicit header.
func jsonContentType(ct string, body []byte) bool {
	if ct == "application/json" {
		// What clients send nearly always, checked without parsing.
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		return true
	}
	return mt == "application/x-www-form-urlencoded" && json.Valid(bytes.TrimSpace(body))
}

func decodeBytes(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if !utf8.Valid(body) {
		return errInvalid("", "Request body is not valid UTF-8.")
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var fieldErr *fieldError
	var timeErr *time.ParseError
	switch {
	case errors.As(err, &fieldErr):
		return errInvalid(fieldErr.param, "%s", fieldErr.msg)
	case errors.As(err, &timeErr):
		param := badTimeField(body, v)
		return errInvalid(param, "%s must be an RFC 3339 timestamp such as 2026-01-02T15:04:05Z, not %s.",
			cmp.Or(param, "A timestamp"), truncate(strconv.Quote(timeErr.Value), 60))
	case errors.As(err, &syntaxErr):
		return errInvalid("", "Request body is not valid JSON (at byte %d).", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		param := typeErr.Field
		if param == "" {
			return errInvalid("", "Request body must be a JSON object.")
		}
		want := jsonTypeName(typeErr.Type.Kind().String())
		if strings.HasPrefix(typeErr.Value, "number") && want == "a number" {
			return errInvalid(param, "%s is out of range for this field (%s).", param, strings.TrimPrefix(typeErr.Value, "number "))
		}
		return errInvalid(param, "%s must be %s, not %s.", param, want, typeErr.Value)
	default:
		return errInvalid("", "Request body is not valid JSON: %v.", err)
	}
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "ptr", "interface":
		return "a value"
	default:
		return "a number"
	}
}

// fieldError is returned by custom unmarshalers to name their field.
type fieldError struct {
	param string
	msg   string
}

func (e *fieldError) Error() string { return e.msg }

// optional is a request field that records whether it was present and
// whether it was null, for PATCH bodies.
type optional[T any] struct {
	Set   bool
	Null  bool
	Value T
}

func (o *optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.Value)
}

// ptr returns nil for an absent or null field.
func (o optional[T]) ptr() *T {
	if !o.Set || o.Null {
		return nil
	}
	v := o.Value
	return &v
}

// validateMetadata applies the metadata limits: at most 50 keys, keys up to
// 40 characters, values up to 500 characters (JSON text for non-strings).
func validateMetadata(param string, m map[string]any) error {
	if len(m) > 50 {
		return errInvalid(param, "%s has %d keys; at most 50 are allowed.", param, len(m))
	}
	for k, v := range m {
		if k == "" || utf8.RuneCountInString(k) > 40 {
			return errInvalid(param, "%s keys must be 1 to 40 characters; %q is not.", param, truncate(k, 60))
		}
		var n int
		if s, ok := v.(string); ok {
			n = utf8.RuneCountInString(s)
		} else {
			b, _ := json.Marshal(v)
			n = utf8.RuneCountInString(string(b))
		}
		if n > 500 {
			return errInvalid(param+"."+k, "%s.%s is %d characters; at most 500 are allowed.", param, k, n)
		}
	}
	return nil
}

// validateText checks a string field's length in characters and rejects NUL.
func validateText(param, value string, min, max int) error {
	n := utf8.RuneCountInString(value)
	if n < min || n > max {
		if min > 0 {
			return errInvalid(param, "%s must be %d to %d characters; it has %d.", param, min, max, n)
		}
		return errInvalid(param, "%s must be at most %d characters; it has %d.", param, max, n)
	}
	if strings.ContainsRune(value, 0) {
		return errInvalid(param, "%s must not contain NUL characters.", param)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

var (
	timeType         = reflect.TypeFor[time.Time]()
	optionalTimeType = reflect.TypeFor[optional[time.Time]]()
)

// badTimeField returns the JSON name of the top-level field of the struct
// v points to whose timestamp in body does not parse, or "" when none is
// found.
func badTimeField(body []byte, v any) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return ""
	}
	t := reflect.TypeOf(v)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return ""
	}
	for f := range t.Elem().Fields() {
		if f.Type != timeType && f.Type != optionalTimeType {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		raw, ok := fields[name]
		if !ok || string(raw) == "null" {
			continue
		}
		var ts time.Time
		if json.Unmarshal(raw, &ts) != nil {
			return name
		}
	}
	return ""
}
