package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/botaserver/bota/internal/store"
)

// cursorBody is what a cursor encodes: the position of a page's last row.
type cursorBody struct {
	T int64  `json:"t"`
	I string `json:"i"`
}

// cursorScope ties a cursor to the list and the credential's project and
// mode it came from, so a cursor pasted into another list is rejected
// instead of returning wrong pages.
func cursorScope(r *http.Request) string {
	scope := "cursor:" + r.URL.Path
	if p := principalFrom(r.Context()); p != nil {
		scope += ":" + p.ProjectID + ":" + p.Mode
	}
	return scope + ":"
}

// encodeCursor returns base64url(JSON) + "." + base64url(HMAC), so the
// server can tell its own cursors from made-up ones.
func (s *Server) encodeCursor(r *http.Request, createdAt time.Time, id string) string {
	raw, _ := json.Marshal(cursorBody{T: createdAt.UnixMilli(), I: id})
	mac := hmac.New(sha256.New, s.cfg.Secret)
	mac.Write([]byte(cursorScope(r)))
	mac.Write(raw)
	sig := mac.Sum(nil)[:16]
	enc := base64.RawURLEncoding
	return enc.EncodeToString(raw) + "." + enc.EncodeToString(sig)
}

func (s *Server) decodeCursor(r *http.Request, c string) (*store.Position, error) {
	bad := errInvalid("cursor", "cursor was not issued for this list; pass next_cursor from the previous page of the same list.")
	if len(c) > 512 {
		return nil, bad
	}
	var rawPart, sigPart string
	for i := 0; i < len(c); i++ {
		if c[i] == '.' {
			rawPart, sigPart = c[:i], c[i+1:]
			break
		}
	}
	enc := base64.RawURLEncoding
	raw, err1 := enc.DecodeString(rawPart)
	sig, err2 := enc.DecodeString(sigPart)
	if rawPart == "" || err1 != nil || err2 != nil {
		return nil, bad
	}
	mac := hmac.New(sha256.New, s.cfg.Secret)
	mac.Write([]byte(cursorScope(r)))
	mac.Write(raw)
	if !hmac.Equal(sig, mac.Sum(nil)[:16]) {
		return nil, bad
	}
	var body cursorBody
	if err := json.Unmarshal(raw, &body); err != nil || body.I == "" {
		return nil, bad
	}
	return &store.Position{CreatedAt: time.UnixMilli(body.T), ID: body.I}, nil
}

// pageParams reads limit (1 to 100, default 25), offset and cursor.
func (s *Server) pageParams(r *http.Request) (store.Page, error) {
	q := r.URL.Query()
	p := store.Page{Limit: 25}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return p, errInvalid("limit", "limit must be an integer from 1 to 100; got %q.", truncate(v, 20))
		}
		p.Limit = n
	}
	offset, cursor := q.Get("offset"), q.Get("cursor")
	if offset != "" && cursor != "" {
		return p, errInvalid("cursor", "Send either offset or cursor, not both.")
	}
	if offset != "" {
		n, err := strconv.Atoi(offset)
		if err != nil || n < 0 || n > 1_000_000 {
			return p, errInvalid("offset", "offset must be an integer from 0 to 1000000; got %q.", truncate(offset, 20))
		}
		p.Offset = n
	}
	if cursor != "" {
		pos, err := s.decodeCursor(r, cursor)
		if err != nil {
			return p, err
		}
		p.After = pos
	}
	return p, nil
}

// writeList sends a page; next is the position of the last row.
func (s *Server) writeList(w http.ResponseWriter, r *http.Request, data any, more bool, lastCreated time.Time, lastID string) {
	l := list{Data: data, HasMore: more}
	if more {
		c := s.encodeCursor(r, lastCreated, lastID)
		l.NextCursor = &c
	}
	writeJSON(w, http.StatusOK, l)
}

// listed is a row of a list: it knows its position in the list order.
type listed interface {
	SortKey() (time.Time, string)
}

// writePage renders one page of items and sends it with the cursor of its
// last item when more follow.
func writePage[T listed, R any](s *Server, w http.ResponseWriter, r *http.Request, items []T, more bool, render func(T) R) {
	data := make([]any, 0, len(items))
	for _, item := range items {
		data = append(data, render(item))
	}
	if len(items) == 0 {
		s.writeList(w, r, data, false, time.Time{}, "")
		return
	}
	created, id := items[len(items)-1].SortKey()
	s.writeList(w, r, data, more, created, id)
}

// queryFilter returns a pointer to a query parameter's value, or nil.
func queryFilter(r *http.Request, name string) *string {
	if !r.URL.Query().Has(name) {
		return nil
	}
	v := r.URL.Query().Get(name)
	return &v
}
