package webhook

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/botaserver/bota/internal/store"
)

// TestEventType is the type of the event that POST
// /v1/webhook-endpoints/{id}/test sends to one endpoint.
const TestEventType = "webhook.test"

// AllEvents subscribes an endpoint to every event type.
const AllEvents = "*"

// EventTypes lists the event types an endpoint may subscribe to.
//
// NOTE: the summary.* types are accepted so that subscriptions written for
// the hosted API keep working, but this server has no summaries yet and
// never sends them.
var EventTypes = []string{
	"recording.created",
	"recording.uploaded",
	"recording.deleted",
	"transcription.started",
	"transcription.completed",
	"transcription.failed",
	"summary.started",
	"summary.completed",
	"summary.failed",
	"device.bound",
	"device.unbound",
	"end_user.deleted",
	TestEventType,
}

// KnownEventType reports whether typ is in EventTypes.
func KnownEventType(typ string) bool { return slices.Contains(EventTypes, typ) }

// Subscribed reports whether an endpoint subscribed to events receives an
// event of type typ. Test events go only to the endpoint they were sent
// for, never through subscriptions.
func Subscribed(events []string, typ string) bool {
	if typ == TestEventType {
		return false
	}
	return slices.Contains(events, AllEvents) || slices.Contains(events, typ)
}

// timeFormat is the API's timestamp form: RFC 3339 in UTC with exactly
// three fraction digits.
const timeFormat = "2006-01-02T15:04:05.000Z"

// Envelope is an event as GET /v1/events/{id} returns it and as every
// delivery sends it.
type Envelope struct {
	ID        string          `json:"id"`
	Object    string          `json:"object"`
	Type      string          `json:"type"`
	CreatedAt string          `json:"created_at"`
	ProjectID string          `json:"project_id"`
	Data      json.RawMessage `json:"data"`
}

// NewEnvelope returns the envelope of a stored event.
func NewEnvelope(e *store.Event) Envelope {
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage(`{}`)
	}
	return Envelope{
		ID:        e.ID,
		Object:    "event",
		Type:      e.Type,
		CreatedAt: e.CreatedAt.UTC().Format(timeFormat),
		ProjectID: e.ProjectID,
		Data:      data,
	}
}

// EventBody returns the JSON body delivered for a stored event. The same
// event always gives the same bytes, so each retry sends what the first
// attempt sent.
func EventBody(e *store.Event) ([]byte, error) {
	body, err := json.Marshal(NewEnvelope(e))
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	return body, nil
}

// EventRetention is how long GET /v1/events lists an event.
const EventRetention = 30 * 24 * time.Hour
