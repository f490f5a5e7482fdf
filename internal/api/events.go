package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/webhook"
)

// listEvents returns the events of the last 30 days, newest first, with an
// optional type filter.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	page, err := s.pageParams(r)
	if err != nil {
		return err
	}
	typ := queryFilter(r, "type")
	if typ != nil && !webhook.KnownEventType(*typ) {
		return errInvalid("type", "%q is not an event type; known types: %s.",
			truncate(*typ, 80), strings.Join(webhook.EventTypes, ", "))
	}

	since := s.store.Now().Add(-webhook.EventRetention)
	events, more, err := s.store.Events(r.Context(), p.Tenant, typ, since, page)
	if err != nil {
		return errInternal(err)
	}

	writePage(s, w, r, events, more, webhook.NewEnvelope)
	return nil
}

// getEvent returns one event of the last 30 days.
func (s *Server) getEvent(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id := r.PathValue("id")
	if !ids.Valid(ids.Event, id) {
		return errNotFound("Event "+truncate(id, 80), "id")
	}

	e, err := s.store.EventByID(r.Context(), p.Tenant, id)
	if errors.Is(err, store.ErrNotFound) ||
		(err == nil && e.CreatedAt.Before(s.store.Now().Add(-webhook.EventRetention))) {
		return errNotFound("Event "+id, "id")
	}
	if err != nil {
		return errInternal(err)
	}

	writeJSON(w, http.StatusOK, webhook.NewEnvelope(e))
	return nil
}
