package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/webhook"
)

// maxRotationOverlap is the longest time an old secret may keep signing
// after a rotation: one week.
const maxRotationOverlap = 604800

// maxSubscribedEvents bounds an endpoint's events list.
const maxSubscribedEvents = 50

type webhookEndpointBody struct {
	URL         optional[string]         `json:"url"`
	Events      optional[[]string]       `json:"events"`
	Description optional[string]         `json:"description"`
	Metadata    optional[map[string]any] `json:"metadata"`
	Status      optional[string]         `json:"status"`
}

// validate checks the fields present in the body. URLs go through the
// network guard, which rejects private targets unless the operator allows
// them.
func (b *webhookEndpointBody) validate(ctx context.Context, guard webhook.GuardConfig) error {
	if b.URL.Set {
		if b.URL.Null || b.URL.Value == "" {
			return errInvalid("url", "url must be an http or https URL.")
		}
		if err := guard.ValidateURL(ctx, b.URL.Value); err != nil {
			msg := err.Error()
			if errors.Is(err, webhook.ErrBlockedAddress) {
				msg += " (the operator can allow them with BOTA_WEBHOOK_ALLOW_PRIVATE=true)"
			}
			return errInvalid("url", "%s.", msg)
		}
	}
	if b.Events.Set {
		if err := validateEventList(b.Events.Value); err != nil {
			return err
		}
	}
	if v := b.Description.ptr(); v != nil {
		if err := validateText("description", *v, 0, 500); err != nil {
			return err
		}
	}
	if v := b.Status.ptr(); b.Status.Set && (v == nil ||
		(*v != store.WebhookEnabled && *v != store.WebhookDisabled)) {
		return errInvalid("status", "status must be enabled or disabled.")
	}
	return validateMetadata("metadata", b.Metadata.Value)
}

func validateEventList(events []string) error {
	if len(events) == 0 {
		return errInvalid("events", "events must list at least one event type, or [\"*\"] for all.")
	}
	if len(events) > maxSubscribedEvents {
		return errInvalid("events", "events lists %d types; at most %d are allowed.",
			len(events), maxSubscribedEvents)
	}
	for _, e := range events {
		if e != webhook.AllEvents && !webhook.KnownEventType(e) {
			return errInvalid("events", "%q is not an event type; known types: %s, or \"*\" for all.",
				truncate(e, 80), strings.Join(webhook.EventTypes, ", "))
		}
	}
	return nil
}

// uniqueEvents returns events without repeats, in their first order.
func uniqueEvents(events []string) []string {
	out := make([]string, 0, len(events))
	for _, e := range events {
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

func (b *webhookEndpointBody) apply(e *store.WebhookEndpoint) {
	if b.URL.Set {
		e.URL = b.URL.Value
	}
	if b.Events.Set {
		e.Events = uniqueEvents(b.Events.Value)
	}
	if b.Description.Set {
		e.Description = b.Description.ptr()
	}
	if b.Metadata.Set {
		e.Metadata = b.Metadata.Value
	}
	if v := b.Status.ptr(); v != nil && *v != e.Status {
		e.Status = *v
		e.DisabledReason = nil
		e.FailingSince = nil
		if *v == store.WebhookDisabled {
			reason := "Disabled through the API."
			e.DisabledReason = &reason
		}
	}
}

func (s *Server) webhookBox() (*webhook.SecretBox, error) {
	box, err := webhook.NewSecretBox(s.cfg.Secret)
	if err != nil {
		return nil, errInternal(err)
	}
	return box, nil
}

func (s *Server) createWebhookEndpoint(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body webhookEndpointBody
	if err := decode(r, &body); err != nil {
		return err
	}
	if !body.URL.Set {
		return errInvalid("url", "url is required.")
	}
	if !body.Events.Set {
		return errInvalid("events", "events is required: a list of event types, or [\"*\"] for all.")
	}
	if err := body.validate(r.Context(), s.cfg.WebhookGuard); err != nil {
		return err
	}
	box, err := s.webhookBox()
	if err != nil {
		return err
	}

	ep := &store.WebhookEndpoint{ID: ids.New(ids.Webhook), Tenant: p.Tenant,
		Status: store.WebhookEnabled, Metadata: map[string]any{}}
	body.apply(ep)
	secret := webhook.NewSecret()
	if ep.Secret, err = box.Seal(ep.ID, secret); err != nil {
		return errInternal(err)
	}
	if err := s.store.CreateWebhookEndpoint(r.Context(), ep); err != nil {
		return errInternal(err)
	}

	out := s.webhookEndpointJSON(ep)
	out["secret"] = secret
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listWebhookEndpoints(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	page, err := s.pageParams(r)
	if err != nil {
		return err
	}

	endpoints, more, err := s.store.WebhookEndpoints(r.Context(), p.Tenant, page)
	if err != nil {
		return errInternal(err)
	}

	writePage(s, w, r, endpoints, more, s.webhookEndpointJSON)
	return nil
}

// webhookEndpointFromPath loads the endpoint named by the path's id.
func (s *Server) webhookEndpointFromPath(r *http.Request, p *auth.Principal) (*store.WebhookEndpoint, error) {
	id := r.PathValue("id")
	if !ids.Valid(ids.Webhook, id) {
		return nil, errNotFound("Webhook endpoint "+truncate(id, 80), "id")
	}
	e, err := s.store.WebhookEndpoint(r.Context(), p.Tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNotFound("Webhook endpoint "+id, "id")
	}
	if err != nil {
		return nil, errInternal(err)
	}
	return e, nil
}

func (s *Server) getWebhookEndpoint(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	ep, err := s.webhookEndpointFromPath(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.webhookEndpointJSON(ep))
	return nil
}

func (s *Server) updateWebhookEndpoint(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body webhookEndpointBody
	if err := decode(r, &body); err != nil {
		return err
	}
	if err := body.validate(r.Context(), s.cfg.WebhookGuard); err != nil {
		return err
	}
	ep, err := s.webhookEndpointFromPath(r, p)
	if err != nil {
		return err
	}

	body.apply(ep)
	err = s.store.UpdateWebhookEndpoint(r.Context(), ep)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Webhook endpoint "+ep.ID, "id")
	}
	if err != nil {
		return errInternal(err)
	}

	writeJSON(w, http.StatusOK, s.webhookEndpointJSON(ep))
	return nil
}

func (s *Server) deleteWebhookEndpoint(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	ep, err := s.webhookEndpointFromPath(r, p)
	if err != nil {
		return err
	}

	err = s.store.DeleteWebhookEndpoint(r.Context(), p.Tenant, ep.ID)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Webhook endpoint "+ep.ID, "id")
	}
	if err != nil {
		return errInternal(err)
	}

	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rotateWebhookSecret replaces the signing secret. With
// expire_old_after_seconds the old secret keeps signing, after the new one,
// for that long; otherwise it ends at once.
func (s *Server) rotateWebhookSecret(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body struct {
		ExpireOldAfter optional[int64] `json:"expire_old_after_seconds"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	overlap := int64(0)
	if v := body.ExpireOldAfter.ptr(); v != nil {
		if *v < 0 || *v > maxRotationOverlap {
			return errInvalid("expire_old_after_seconds",
				"expire_old_after_seconds must be from 0 to %d (one week); got %d.", maxRotationOverlap, *v)
		}
		overlap = *v
	}
	ep, err := s.webhookEndpointFromPath(r, p)
	if err != nil {
		return err
	}
	box, err := s.webhookBox()
	if err != nil {
		return err
	}

	secret := webhook.NewSecret()
	sealed, err := box.Seal(ep.ID, secret)
	if err != nil {
		return errInternal(err)
	}
	var old *string
	var oldExpires *time.Time
	if overlap > 0 {
		until := s.store.Now().Add(time.Duration(overlap) * time.Second)
		old, oldExpires = &ep.Secret, &until
	}
	err = s.store.SetWebhookEndpointSecret(r.Context(), p.Tenant, ep.ID, sealed, old, oldExpires)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Webhook endpoint "+ep.ID, "id")
	}
	if err != nil {
		return errInternal(err)
	}
	ep.Secret, ep.OldSecret, ep.OldSecretExpiresAt = sealed, old, oldExpires
	ep.UpdatedAt = s.store.Now()

	out := s.webhookEndpointJSON(ep)
	out["secret"] = secret
	writeJSON(w, http.StatusOK, out)
	return nil
}

// reissueWebhookSecret serves replays of create and rotate-secret: the
// secret of the lost response is replaced by a new one at once, and an
// overlapping older secret keeps its expiry.
func (s *Server) reissueWebhookSecret(r *http.Request, p *auth.Principal, body map[string]any) error {
	id, _ := body["id"].(string)
	ep, err := s.store.WebhookEndpoint(r.Context(), p.Tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Webhook endpoint "+truncate(id, 80), "id")
	}
	if err != nil {
		return errInternal(err)
	}
	box, err := s.webhookBox()
	if err != nil {
		return err
	}
	secret := webhook.NewSecret()
	sealed, err := box.Seal(ep.ID, secret)
	if err != nil {
		return errInternal(err)
	}
	err = s.store.SetWebhookEndpointSecret(r.Context(), p.Tenant, ep.ID, sealed, ep.OldSecret,
		ep.OldSecretExpiresAt)
	if err != nil {
		return errInternal(err)
	}
	body["secret"] = secret
	return nil
}

// testWebhookEndpoint queues a webhook.test event for this endpoint only.
// Its data is the endpoint object.
func (s *Server) testWebhookEndpoint(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	ep, err := s.webhookEndpointFromPath(r, p)
	if err != nil {
		return err
	}
	if s.cfg.Webhooks == nil {
		return errUnavailable("Webhook delivery is not running on this server.", nil)
	}

	d, err := s.cfg.Webhooks.SendTest(r.Context(), p.Tenant, ep.ID, s.webhookEndpointJSON(ep))
	if err != nil {
		return webhookSendError(ep.ID, err)
	}

	writeJSON(w, http.StatusAccepted, webhookDeliveryJSON(d))
	return nil
}

func (s *Server) listWebhookDeliveries(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	page, err := s.pageParams(r)
	if err != nil {
		return err
	}
	status := queryFilter(r, "status")
	if status != nil && !slices.Contains([]string{store.DeliveryPending, store.DeliverySucceeded,
		store.DeliveryFailed}, *status) {
		return errInvalid("status", "status must be pending, succeeded or failed.")
	}
	ep, err := s.webhookEndpointFromPath(r, p)
	if err != nil {
		return err
	}

	deliveries, more, err := s.store.WebhookDeliveries(r.Context(), p.Tenant, ep.ID, status, page)
	if err != nil {
		return errInternal(err)
	}

	writePage(s, w, r, deliveries, more, webhookDeliveryJSON)
	return nil
}

// retryWebhookDelivery sends a delivery again now, whatever its status.
func (s *Server) retryWebhookDelivery(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	ep, err := s.webhookEndpointFromPath(r, p)
	if err != nil {
		return err
	}
	deliveryID := r.PathValue("delivery_id")
	if !ids.Valid(ids.Delivery, deliveryID) {
		return errNotFound("Webhook delivery "+truncate(deliveryID, 80), "delivery_id")
	}
	if s.cfg.Webhooks == nil {
		return errUnavailable("Webhook delivery is not running on this server.", nil)
	}

	d, err := s.cfg.Webhooks.Redeliver(r.Context(), p.Tenant, ep.ID, deliveryID)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Webhook delivery "+deliveryID, "delivery_id")
	}
	if err != nil {
		return webhookSendError(ep.ID, err)
	}

	writeJSON(w, http.StatusAccepted, webhookDeliveryJSON(d))
	return nil
}

func webhookSendError(endpointID string, err error) error {
	switch {
	case errors.Is(err, webhook.ErrEndpointDisabled):
		return errConflict("conflict", "id", "Webhook endpoint %s is disabled; set its status "+
			"to enabled first.", endpointID)
	case errors.Is(err, store.ErrNotFound):
		return errNotFound("Webhook endpoint "+endpointID, "id")
	}
	return errInternal(err)
}

// webhookEndpointJSON is the endpoint object; the secret is added only by
// create and rotate-secret.
func (s *Server) webhookEndpointJSON(e *store.WebhookEndpoint) map[string]any {
	var oldExpires any
	if e.OldSecret != nil && e.OldSecretExpiresAt != nil && e.OldSecretExpiresAt.After(s.store.Now()) {
		oldExpires = formatTime(*e.OldSecretExpiresAt)
	}
	events := e.Events
	if events == nil {
		events = []string{}
	}
	return map[string]any{
		"id":                         e.ID,
		"object":                     "webhook_endpoint",
		"project_id":                 e.ProjectID,
		"url":                        e.URL,
		"events":                     events,
		"description":                e.Description,
		"status":                     e.Status,
		"disabled_reason":            e.DisabledReason,
		"metadata":                   object(e.Metadata),
		"previous_secret_expires_at": oldExpires,
		"created_at":                 formatTime(e.CreatedAt),
		"updated_at":                 formatTime(e.UpdatedAt),
	}
}

func webhookDeliveryJSON(d *store.WebhookDelivery) map[string]any {
	attempts := make([]any, 0, len(d.Attempts))
	for _, a := range d.Attempts {
		attempts = append(attempts, map[string]any{
			"attempted_at":  formatTime(a.AttemptedAt),
			"status_code":   a.StatusCode,
			"duration_ms":   a.DurationMs,
			"error":         a.Error,
			"response_body": a.ResponseSnippet,
		})
	}
	return map[string]any{
		"id":              d.ID,
		"object":          "webhook_delivery",
		"project_id":      d.ProjectID,
		"endpoint_id":     d.EndpointID,
		"event_id":        d.EventID,
		"event_type":      d.EventType,
		"status":          d.Status,
		"attempt_count":   d.AttemptCount,
		"attempts":        attempts,
		"last_attempt_at": formatTimePtr(d.LastAttemptAt),
		"next_attempt_at": formatTimePtr(d.NextAttemptAt),
		"created_at":      formatTime(d.CreatedAt),
		"updated_at":      formatTime(d.UpdatedAt),
	}
}
