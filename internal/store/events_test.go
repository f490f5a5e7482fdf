package store_test

import (
	"context"
	"testing"

	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

func TestEventWork(t *testing.T) {
	eachEngine(t, func(t *testing.T, st *store.Store, tenant model.Tenant) {
		ctx := context.Background()
		type work struct {
			Transcribe bool   `json:"transcribe"`
			Provider   string `json:"provider"`
		}
		with, err := st.AddEventWork(ctx, tenant, "recording.uploaded", map[string]string{"id": "rec_1"},
			work{Transcribe: true, Provider: "deepgram"})
		if err != nil {
			t.Fatal(err)
		}
		without, err := st.AddEvent(ctx, tenant, "recording.uploaded", map[string]string{"id": "rec_2"})
		if err != nil {
			t.Fatal(err)
		}
		const want = `{"transcribe":true,"provider":"deepgram"}`

		events, err := st.UndispatchedEvents(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]*store.Event{}
		for _, e := range events {
			got[e.ID] = e
		}
		if e := got[with.ID]; e == nil || string(e.Work) != want || string(e.Data) != `{"id":"rec_1"}` {
			t.Errorf("undispatched event with work = %+v, want work %s", e, want)
		}
		if e := got[without.ID]; e == nil || e.Work != nil {
			t.Errorf("undispatched event without work = %+v, want nil work", e)
		}

		e, err := st.EventByID(ctx, tenant, with.ID)
		if err != nil {
			t.Fatal(err)
		}
		if string(e.Work) != want {
			t.Errorf("EventByID work = %s, want %s", e.Work, want)
		}
		e, err = st.EventByID(ctx, tenant, without.ID)
		if err != nil {
			t.Fatal(err)
		}
		if e.Work != nil {
			t.Errorf("EventByID work of an event stored without = %s, want nil", e.Work)
		}
	})
}
