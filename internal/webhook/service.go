package webhook

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

// DefaultEndpointConcurrency is how many deliveries to one endpoint run at
// once across every node when Service.EndpointConcurrency is zero.
const DefaultEndpointConcurrency = 5

// ErrEndpointDisabled is returned for a test or retry of a disabled
// endpoint, which gets no attempts until it is enabled again.
var ErrEndpointDisabled = errors.New("webhook endpoint is disabled")

// Inserter inserts jobs inside a store transaction. *jobs.Queue implements
// it.
type Inserter interface {
	InsertTx(ctx context.Context, tx *sql.Tx, args river.JobArgs, opts *river.InsertOpts) (
		id int64, duplicate bool, err error)
}

// Service turns events into deliveries and sends them. Its zero values
// have working defaults except Store, Queue and Box.
type Service struct {
	Store *store.Store
	Queue Inserter
	Box   *SecretBox
	// Client sends deliveries; nil means NewClient(GuardConfig{}), which
	// rejects private addresses.
	Client *http.Client
	// EndpointConcurrency caps the deliveries in flight to one endpoint
	// across every node. Zero means DefaultEndpointConcurrency.
	EndpointConcurrency int
	// Now is the clock of attempts, retries and leases; nil means
	// time.Now. Tests move it to drive the retry schedule.
	Now func() time.Time
	Log *slog.Logger

	defaultClient     *http.Client
	defaultClientOnce sync.Once
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Service) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	s.defaultClientOnce.Do(func() { s.defaultClient = NewClient(GuardConfig{}) })
	return s.defaultClient
}

func (s *Service) concurrency() int {
	if s.EndpointConcurrency > 0 {
		return s.EndpointConcurrency
	}
	return DefaultEndpointConcurrency
}

// Fanout is the outbox handler (a processing.EventHandler) that creates one
// delivery, and its job, for each enabled endpoint subscribed to the event.
// Deliveries are unique per event and endpoint, so a second run for the
// same event adds nothing. Endpoints created after the event get none.
func (s *Service) Fanout(ctx context.Context, e *store.Event) error {
	if e.Type == TestEventType {
		return nil
	}
	return s.Store.InTx(ctx, func(tx *store.Store) error {
		endpoints, err := tx.EnabledWebhookEndpoints(ctx, e.Tenant)
		if err != nil {
			return err
		}
		for _, ep := range endpoints {
			if !Subscribed(ep.Events, e.Type) || ep.CreatedAt.After(e.CreatedAt) {
				continue
			}
			if _, err := s.createDelivery(ctx, tx, ep, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// createDelivery stores the delivery of e to ep and inserts its job in the
// same transaction. It returns nil when ep already has a delivery of e.
func (s *Service) createDelivery(ctx context.Context, tx *store.Store, ep *store.WebhookEndpoint,
	e *store.Event) (*store.WebhookDelivery, error) {
	d := &store.WebhookDelivery{
		Tenant:     e.Tenant,
		EndpointID: ep.ID,
		EventID:    e.ID,
		EventType:  e.Type,
	}
	created, err := tx.CreateWebhookDelivery(ctx, d)
	if err != nil || !created {
		return nil, err
	}
	if _, _, err := s.Queue.InsertTx(ctx, tx.Tx(), DeliverArgs{DeliveryID: d.ID}, nil); err != nil {
		return nil, fmt.Errorf("queue webhook delivery %s: %w", d.ID, err)
	}
	return d, nil
}

// SendTest stores a webhook.test event whose data is data and queues its
// delivery to the endpoint alone. It returns the new delivery.
func (s *Service) SendTest(ctx context.Context, t model.Tenant, endpointID string, data any) (
	*store.WebhookDelivery, error) {
	var d *store.WebhookDelivery
	err := s.Store.InTx(ctx, func(tx *store.Store) error {
		ep, err := tx.WebhookEndpoint(ctx, t, endpointID)
		if err != nil {
			return err
		}
		if ep.Status != store.WebhookEnabled {
			return ErrEndpointDisabled
		}
		e, err := tx.AddEvent(ctx, t, TestEventType, data)
		if err != nil {
			return err
		}
		d, err = s.createDelivery(ctx, tx, ep, e)
		return err
	})
	if err != nil {
		return nil, err
	}
	d.Attempts = []store.WebhookAttempt{}
	return d, nil
}

// Redeliver queues one more attempt of a delivery now, whatever its
// status. A failed attempt of it schedules no further retries. It returns
// the delivery as it is after the change.
func (s *Service) Redeliver(ctx context.Context, t model.Tenant, endpointID, deliveryID string) (
	*store.WebhookDelivery, error) {
	err := s.Store.InTx(ctx, func(tx *store.Store) error {
		ep, err := tx.WebhookEndpoint(ctx, t, endpointID)
		if err != nil {
			return err
		}
		if ep.Status != store.WebhookEnabled {
			return ErrEndpointDisabled
		}
		if _, err := tx.WebhookDelivery(ctx, t, endpointID, deliveryID); err != nil {
			return err
		}
		n, err := tx.StartWebhookRedelivery(ctx, deliveryID)
		if err != nil {
			return err
		}
		args := DeliverArgs{DeliveryID: deliveryID, Redelivery: n}
		_, _, err = s.Queue.InsertTx(ctx, tx.Tx(), args, &river.InsertOpts{MaxAttempts: 1})
		if err != nil {
			return fmt.Errorf("queue webhook redelivery %s: %w", deliveryID, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.Store.WebhookDelivery(ctx, t, endpointID, deliveryID)
}
