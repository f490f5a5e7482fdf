package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
)

// Event is a change that webhooks and background work react to. Events are
// written in the same transaction as the change, so the events table is
// also the outbox that background work reads.
type Event struct {
	ID string
	model.Tenant
	Type string
	Data json.RawMessage
	// Work is the background work decided when the event was stored, as
	// JSON whose shape the event's handler defines, or nil when none was
	// recorded.
	Work      json.RawMessage
	CreatedAt time.Time
}

// AddEvent stores an event whose data is the JSON of data.
func (s *Store) AddEvent(ctx context.Context, t model.Tenant, typ string, data any) (*Event, error) {
	return s.AddEventWork(ctx, t, typ, data, nil)
}

// AddEventWork stores an event whose data is the JSON of data, with the
// JSON of work, unless nil, as the background work the event requires.
func (s *Store) AddEventWork(ctx context.Context, t model.Tenant, typ string, data, work any) (*Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", typ, err)
	}
	e := &Event{ID: ids.New(ids.Event), Tenant: t, Type: typ, Data: raw, CreatedAt: fromMs(s.nowMs())}
	var workCol *string
	if work != nil {
		w, err := json.Marshal(work)
		if err != nil {
			return nil, fmt.Errorf("encode %s event work: %w", typ, err)
		}
		e.Work = w
		ws := string(w)
		workCol = &ws
	}
	_, err = s.exec(ctx, `INSERT INTO events (id, project_id, mode, type, data, work, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, e.ID, t.ProjectID, t.Mode, typ, string(raw), workCol, ms(e.CreatedAt))
	if err != nil {
		return nil, fmt.Errorf("store %s event: %w", typ, err)
	}
	return e, nil
}

const eventColumns = `id, project_id, mode, type, data, work, created_at`

func scanEvent(sc interface{ Scan(...any) error }) (*Event, error) {
	var e Event
	var data string
	var work sql.NullString
	var created int64
	if err := sc.Scan(&e.ID, &e.ProjectID, &e.Mode, &e.Type, &data, &work, &created); err != nil {
		return nil, err
	}
	e.Data = json.RawMessage(data)
	if work.Valid {
		e.Work = json.RawMessage(work.String)
	}
	e.CreatedAt = fromMs(created)
	return &e, nil
}

// UndispatchedEvents returns up to limit events not yet handed to
// background work, oldest first.
func (s *Store) UndispatchedEvents(ctx context.Context, limit int) ([]*Event, error) {
	rows, err := s.query(ctx, `SELECT `+eventColumns+` FROM events WHERE dispatched_at IS NULL
		ORDER BY created_at, id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list undispatched events: %w", err)
	}
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// MarkEventDispatched records that background work for the event exists.
func (s *Store) MarkEventDispatched(ctx context.Context, id string) error {
	_, err := s.exec(ctx, `UPDATE events SET dispatched_at = ? WHERE id = ?`, s.nowMs(), id)
	return err
}

// EventByID returns the tenant's event.
func (s *Store) EventByID(ctx context.Context, t model.Tenant, id string) (*Event, error) {
	e, err := scanEvent(s.queryRow(ctx, `SELECT `+eventColumns+` FROM events
		WHERE id = ? AND project_id = ? AND mode = ?`, id, t.ProjectID, t.Mode))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return e, err
}

// Events returns one page of the tenant's events newer than since.
func (s *Store) Events(ctx context.Context, t model.Tenant, typ *string, since time.Time, p Page) ([]*Event, bool, error) {
	w := &where{}
	w.add("project_id = ? AND mode = ? AND created_at >= ?", t.ProjectID, t.Mode, ms(since))
	if typ != nil {
		w.add("type = ?", *typ)
	}
	q, args := listQuery(`SELECT `+eventColumns+` FROM events`, w, p)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, false, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	out, more := trim(out, p.Limit)
	return out, more, nil
}

// SortKey returns the event's position in lists.
func (e *Event) SortKey() (time.Time, string) { return e.CreatedAt, e.ID }
