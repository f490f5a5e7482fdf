package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

func projectJSON(p *model.Project) map[string]any {
	return map[string]any{"id": p.ID, "object": "project", "name": p.Name, "created_at": formatTime(p.CreatedAt)}
}

func keyJSON(k *model.APIKey, secret string) map[string]any {
	out := map[string]any{
		"id":           k.ID,
		"object":       "api_key",
		"project_id":   k.ProjectID,
		"mode":         k.Mode,
		"type":         map[bool]string{true: "restricted", false: "secret"}[k.Restricted],
		"scopes":       nonNilStrings(k.Scopes),
		"hint":         k.Hint,
		"name":         k.Name,
		"created_at":   formatTime(k.CreatedAt),
		"revoked_at":   formatTimePtr(k.RevokedAt),
		"last_used_at": formatTimePtr(k.LastUsedAt),
	}
	if secret != "" {
		out["secret"] = secret
	}
	return out
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// CreateProjectWithKeys stores a project and one secret key per mode, and
// returns the project and the secrets (test first). The command line uses
// it too.
func CreateProjectWithKeys(ctx context.Context, st *store.Store, name string) (*model.Project, []*model.APIKey, []string, error) {
	var p *model.Project
	var keys []*model.APIKey
	var secrets []string
	err := st.InTx(ctx, func(tx *store.Store) error {
		var err error
		p, err = tx.CreateProject(ctx, name)
		if err != nil {
			return err
		}
		for _, mode := range []string{model.ModeTest, model.ModeLive} {
			k, secret := auth.NewAPIKey(p.ID, mode, "default "+mode+" key", nil)
			if err := tx.CreateAPIKey(ctx, k, hashSecret(secret)); err != nil {
				return err
			}
			keys = append(keys, k)
			secrets = append(secrets, secret)
		}
		return nil
	})
	return p, keys, secrets, err
}

func (s *Server) adminCreateProject(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name string `json:"name"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	if body.Name == "" {
		body.Name = "Untitled project"
	}
	if err := validateText("name", body.Name, 1, 200); err != nil {
		return err
	}

	p, keys, secrets, err := CreateProjectWithKeys(r.Context(), s.store, body.Name)
	if err != nil {
		return errInternal(err)
	}

	out := projectJSON(p)
	out["keys"] = []any{keyJSON(keys[0], secrets[0]), keyJSON(keys[1], secrets[1])}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) adminListProjects(w http.ResponseWriter, r *http.Request) error {
	projects, err := s.store.Projects(r.Context())
	if err != nil {
		return errInternal(err)
	}
	data := make([]any, 0, len(projects))
	for _, p := range projects {
		data = append(data, projectJSON(p))
	}
	writeJSON(w, http.StatusOK, list{Data: data})
	return nil
}

func (s *Server) adminGetProject(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.Project(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Project", "id")
	}
	if err != nil {
		return errInternal(err)
	}
	writeJSON(w, http.StatusOK, projectJSON(p))
	return nil
}

func (s *Server) adminListKeys(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.store.Project(r.Context(), r.PathValue("id")); errors.Is(err, store.ErrNotFound) {
		return errNotFound("Project", "id")
	} else if err != nil {
		return errInternal(err)
	}
	keys, err := s.store.APIKeys(r.Context(), r.PathValue("id"))
	if err != nil {
		return errInternal(err)
	}
	data := make([]any, 0, len(keys))
	for _, k := range keys {
		data = append(data, keyJSON(k, ""))
	}
	writeJSON(w, http.StatusOK, list{Data: data})
	return nil
}

func (s *Server) adminCreateKey(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Mode   string   `json:"mode"`
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	if body.Mode != model.ModeTest && body.Mode != model.ModeLive {
		return errInvalid("mode", "mode must be test or live.")
	}
	if body.Scopes != nil && len(body.Scopes) == 0 {
		return errInvalid("scopes", "scopes must name at least one scope; omit scopes for a secret key.")
	}
	if err := ValidateScopes(body.Scopes); err != nil {
		return errInvalid("scopes", "%v", err)
	}
	if _, err := s.store.Project(r.Context(), r.PathValue("id")); errors.Is(err, store.ErrNotFound) {
		return errNotFound("Project", "id")
	} else if err != nil {
		return errInternal(err)
	}

	if body.Name == "" {
		body.Name = body.Mode + " key"
	}
	k, secret := auth.NewAPIKey(r.PathValue("id"), body.Mode, body.Name, body.Scopes)
	if err := s.store.CreateAPIKey(r.Context(), k, hashSecret(secret)); err != nil {
		return errInternal(err)
	}

	writeJSON(w, http.StatusCreated, keyJSON(k, secret))
	return nil
}

func (s *Server) adminRevokeKey(w http.ResponseWriter, r *http.Request) error {
	k, err := s.store.RevokeAPIKey(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("API key", "id")
	}
	if err != nil {
		return errInternal(err)
	}
	writeJSON(w, http.StatusOK, keyJSON(k, ""))
	return nil
}

// ValidateScopes checks a restricted key's scopes.
func ValidateScopes(scopes []string) error {
	for _, sc := range scopes {
		if !auth.ValidScope(sc) {
			return errors.New("unknown scope " + sc + "; known scopes: " + strings.Join(auth.Scopes, ", "))
		}
	}
	return nil
}
