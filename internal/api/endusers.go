package api

import (
	"errors"
	"net/http"
	"net/mail"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

type endUserBody struct {
	ExternalID optional[string]         `json:"external_id"`
	Email      optional[string]         `json:"email"`
	Name       optional[string]         `json:"name"`
	Metadata   optional[map[string]any] `json:"metadata"`
}

func (b *endUserBody) validate() error {
	if v := b.ExternalID.ptr(); v != nil {
		if err := validateText("external_id", *v, 1, 255); err != nil {
			return err
		}
	}
	if v := b.Email.ptr(); v != nil {
		if err := validateText("email", *v, 3, 255); err != nil {
			return err
		}
		if a, err := mail.ParseAddress(*v); err != nil || a.Address != *v {
			return errInvalid("email", "email %q is not a valid email address.", truncate(*v, 80))
		}
	}
	if v := b.Name.ptr(); v != nil {
		if err := validateText("name", *v, 0, 255); err != nil {
			return err
		}
	}
	return validateMetadata("metadata", b.Metadata.Value)
}

func (b *endUserBody) apply(u *model.EndUser) {
	if b.ExternalID.Set {
		u.ExternalID = b.ExternalID.ptr()
	}
	if b.Email.Set {
		u.Email = b.Email.ptr()
	}
	if b.Name.Set {
		u.Name = b.Name.ptr()
	}
	if b.Metadata.Set {
		u.Metadata = b.Metadata.Value
	}
}

func (s *Server) createEndUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body endUserBody
	if err := decode(r, &body); err != nil {
		return err
	}
	if err := body.validate(); err != nil {
		return err
	}

	u := &model.EndUser{Tenant: p.Tenant, Metadata: map[string]any{}}
	body.apply(u)
	err := s.store.CreateEndUser(r.Context(), u)
	if errors.Is(err, store.ErrConflict) {
		return errConflict("resource_already_exists", "external_id",
			"An end user with external_id %q already exists.", *u.ExternalID)
	}
	if err != nil {
		return errInternal(err)
	}

	writeJSON(w, http.StatusCreated, endUserJSON(u))
	return nil
}

func (s *Server) listEndUsers(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	page, err := s.pageParams(r)
	if err != nil {
		return err
	}
	f := store.EndUserFilter{ExternalID: queryFilter(r, "external_id"), Email: queryFilter(r, "email")}

	users, more, err := s.store.EndUsers(r.Context(), p.Tenant, f, page)
	if err != nil {
		return errInternal(err)
	}

	writePage(s, w, r, users, more, endUserJSON)
	return nil
}

// endUserFromPath loads the end user named by the path's id.
func (s *Server) endUserFromPath(r *http.Request, p *auth.Principal) (*model.EndUser, error) {
	id := r.PathValue("id")
	if !ids.Valid(ids.EndUser, id) {
		return nil, errNotFound("End user "+truncate(id, 80), "id")
	}
	u, err := s.store.EndUser(r.Context(), p.Tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNotFound("End user "+id, "id")
	}
	if err != nil {
		return nil, errInternal(err)
	}
	return u, nil
}

func (s *Server) getEndUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	u, err := s.endUserFromPath(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, endUserJSON(u))
	return nil
}

func (s *Server) updateEndUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body endUserBody
	if err := decode(r, &body); err != nil {
		return err
	}
	if err := body.validate(); err != nil {
		return err
	}
	u, err := s.endUserFromPath(r, p)
	if err != nil {
		return err
	}

	body.apply(u)
	err = s.store.UpdateEndUser(r.Context(), u)
	if errors.Is(err, store.ErrConflict) {
		return errConflict("resource_already_exists", "external_id",
			"An end user with external_id %q already exists.", *u.ExternalID)
	}
	if err != nil {
		return errInternal(err)
	}

	writeJSON(w, http.StatusOK, endUserJSON(u))
	return nil
}

// deleteEndUser removes the end user and everything recorded for it in one
// transaction, then deletes the media files.
func (s *Server) deleteEndUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	u, err := s.endUserFromPath(r, p)
	if err != nil {
		return err
	}

	var keys []string
	err = s.store.InTx(r.Context(), func(tx *store.Store) error {
		var err error
		keys, err = tx.DeleteEndUser(r.Context(), p.Tenant, u.ID)
		if err != nil {
			return err
		}
		data := endUserJSON(u)
		data["deleted_at"] = formatTime(tx.Now())
		_, err = tx.AddEvent(r.Context(), p.Tenant, "end_user.deleted", data)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("End user "+u.ID, "id")
	}
	if err != nil {
		return errInternal(err)
	}
	s.deleteBlobs(r, keys)

	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteBlobs removes media files after their records are gone. A failure
// leaves an orphan file, which is logged; the records are already deleted.
func (s *Server) deleteBlobs(r *http.Request, keys []string) {
	for _, k := range keys {
		if err := s.blob.Delete(r.Context(), k); err != nil {
			loggerFrom(r.Context()).Error("MediaDeleteFailed", "key", k, "err", err)
		}
	}
}
