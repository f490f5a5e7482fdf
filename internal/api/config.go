package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

// processingDefaults is the built-in processing section.
func processingDefaults() map[string]any {
	return map[string]any{
		"auto_transcription": map[string]any{"enabled": true, "provider": nil},
		"auto_summary":       map[string]any{"enabled": false, "template": "general_notes", "provider": nil},
		"auto_embedding":     map[string]any{"enabled": false},
		"auto_enhancement":   map[string]any{"enabled": false, "provider": nil},
	}
}

var transcriptionProviders = []string{"local", "whisper", "deepgram", "assemblyai", "elevenlabs"}

// ProcessingConfig is the resolved processing section of a project.
type ProcessingConfig struct {
	AutoTranscription bool
	// Provider is nil for the server's default engine.
	Provider *string
}

// ResolveProcessing returns the project's effective processing section
// and which level set it ("default" or "project").
func ResolveProcessing(ctx context.Context, st *store.Store, t model.Tenant) (map[string]any, string, error) {
	value := processingDefaults()
	raw, _, err := st.ProjectConfig(ctx, t, "processing")
	if errors.Is(err, store.ErrNotFound) {
		return value, "default", nil
	}
	if err != nil {
		return nil, "", err
	}
	var override map[string]any
	if err := json.Unmarshal([]byte(raw), &override); err != nil {
		return nil, "", fmt.Errorf("decode processing config: %w", err)
	}
	return mergeDeep(value, override), "project", nil
}

// Processing returns the settings the pipeline acts on.
func Processing(ctx context.Context, st *store.Store, t model.Tenant) (ProcessingConfig, error) {
	value, _, err := ResolveProcessing(ctx, st, t)
	if err != nil {
		return ProcessingConfig{}, err
	}
	var pc ProcessingConfig
	if at, ok := value["auto_transcription"].(map[string]any); ok {
		pc.AutoTranscription, _ = at["enabled"].(bool)
		if p, ok := at["provider"].(string); ok && p != "" && p != "local" {
			pc.Provider = &p
		}
	}
	return pc, nil
}

// mergeDeep returns base with override merged in: objects merge key by
// key, anything else replaces.
func mergeDeep(base, override map[string]any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range override {
		bo, ok1 := out[k].(map[string]any)
		oo, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = mergeDeep(bo, oo)
			continue
		}
		out[k] = v
	}
	return out
}

// processingFields lists the settings of each processing feature, as the
// section's schema defines them.
var processingFields = map[string][]string{
	"auto_transcription": {"enabled", "provider"},
	"auto_summary":       {"enabled", "template", "provider"},
	"auto_embedding":     {"enabled"},
	"auto_enhancement":   {"enabled", "provider"},
}

// processingProviders lists the provider names each feature accepts; null
// always means the server's default.
var processingProviders = map[string][]string{
	"auto_transcription": transcriptionProviders,
	"auto_summary":       {"gemini", "openai", "claude"},
	"auto_enhancement":   {"cleanvoice"},
}

// validateProcessing checks a processing section body: known features,
// each an object of its own settings with values of the right type.
func validateProcessing(body map[string]any) error {
	for _, key := range slices.Sorted(maps.Keys(body)) {
		fields, ok := processingFields[key]
		if !ok {
			return errInvalid(key, "%s is not a setting of the processing section; known: auto_transcription, auto_summary, auto_embedding, auto_enhancement.", key)
		}
		obj, ok := body[key].(map[string]any)
		if !ok {
			return errInvalid(key, "%s must be an object.", key)
		}
		for _, field := range slices.Sorted(maps.Keys(obj)) {
			if err := validateProcessingField(key, field, fields, obj[field]); err != nil {
				return err
			}
		}
	}
	return nil
}

func validateProcessingField(key, field string, fields []string, v any) error {
	param := key + "." + field
	if !slices.Contains(fields, field) {
		return errInvalid(param, "%s is not a known setting; %s has %s.", param, key,
			strings.Join(fields, ", "))
	}
	switch field {
	case "enabled":
		if _, ok := v.(bool); !ok {
			return errInvalid(param, "%s must be true or false.", param)
		}
	case "provider":
		p, isString := v.(string)
		if v != nil && !isString {
			return errInvalid(param, "%s must be a string or null.", param)
		}
		allowed := processingProviders[key]
		if isString && !slices.Contains(allowed, p) {
			return errInvalid(param, "%s must be null or one of %s.", param, strings.Join(allowed, ", "))
		}
	case "template":
		if s, ok := v.(string); !ok || s == "" || len(s) > 64 {
			return errInvalid(param, "%s must be a template name of 1 to 64 characters.", param)
		}
	}
	return nil
}

func (s *Server) writeProcessing(w http.ResponseWriter, r *http.Request, t model.Tenant) error {
	value, source, err := ResolveProcessing(r.Context(), s.store, t)
	if err != nil {
		return errInternal(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object":     "config_section",
		"section":    "processing",
		"project_id": t.ProjectID,
		"value":      value,
		"source":     source,
		"definition": map[string]any{
			"section":        "processing",
			"description":    "What happens to a recording after upload: transcription, summary, embedding, enhancement.",
			"merge_strategy": "merge_deep",
			"levels":         []string{"project"},
			"defaults":       processingDefaults(),
		},
		"deleted_at": nil,
	})
	return nil
}

func (s *Server) getProcessingConfig(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if id := r.PathValue("id"); id != "" && id != p.ProjectID {
		return errNotFound("Project "+truncate(id, 80), "id")
	}
	return s.writeProcessing(w, r, p.Tenant)
}

func (s *Server) setProcessingConfig(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	// Another project is not found whatever the body holds, so that its
	// id cannot be probed through validation errors.
	if r.PathValue("id") != p.ProjectID {
		return errNotFound("Project "+truncate(r.PathValue("id"), 80), "id")
	}
	var body map[string]any
	if err := decode(r, &body); err != nil {
		return err
	}
	if body == nil {
		return errInvalid("", "Send the processing section as a JSON object.")
	}
	if err := validateProcessing(body); err != nil {
		return err
	}

	// PUT replaces the project's override and PATCH merges into it; both
	// are deep-merged onto the defaults when read.
	override := body
	if r.Method == http.MethodPatch {
		raw, _, err := s.store.ProjectConfig(r.Context(), p.Tenant, "processing")
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return errInternal(err)
		}
		current := map[string]any{}
		if raw != "" {
			if err := json.Unmarshal([]byte(raw), &current); err != nil {
				return errInternal(err)
			}
		}
		override = mergeDeep(current, body)
	}
	raw, err := json.Marshal(override)
	if err != nil {
		return errInternal(err)
	}
	if err := s.store.SetProjectConfig(r.Context(), p.Tenant, "processing", string(raw)); err != nil {
		return errInternal(err)
	}
	return s.writeProcessing(w, r, p.Tenant)
}
