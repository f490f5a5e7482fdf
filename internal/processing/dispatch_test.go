package processing

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

// An upload stored while automatic transcription was off stays
// untranscribed after the setting is turned on, and the handler never
// reads the current settings for it.
func TestAutoTranscribeFollowsStoredWork(t *testing.T) {
	p := &Pipeline{AutoTranscription: func(context.Context, model.Tenant) (bool, *string, error) {
		t.Error("AutoTranscription called for an event that records its work")
		return true, nil, nil
	}}
	work, err := json.Marshal(UploadWork{Transcribe: false})
	if err != nil {
		t.Fatal(err)
	}
	e := &store.Event{ID: "evt_1", Type: "recording.uploaded", Data: json.RawMessage(`{"id":"rec_1"}`), Work: work}
	if err := p.AutoTranscribe(context.Background(), e); err != nil {
		t.Errorf("AutoTranscribe = %v, want nil", err)
	}

	// An event stored without its work reads the settings now.
	called := false
	p.AutoTranscription = func(context.Context, model.Tenant) (bool, *string, error) {
		called = true
		return false, nil, nil
	}
	e.Work = nil
	if err := p.AutoTranscribe(context.Background(), e); err != nil || !called {
		t.Errorf("AutoTranscribe without work = %v, settings read %v; want nil and true", err, called)
	}
}

func TestAttemptTimeout(t *testing.T) {
	ms := func(v int64) *int64 { return &v }
	cases := []struct {
		name       string
		limit, max time.Duration
		durationMs *int64
		want       time.Duration
	}{
		{"clip", 30 * time.Minute, 12 * time.Hour, ms(20_000), 30*time.Minute + 20*time.Second},
		{"eight hours", 30 * time.Minute, 12 * time.Hour, ms(8 * 3600_000), 8*time.Hour + 30*time.Minute},
		{"capped", 30 * time.Minute, 12 * time.Hour, ms(24 * 3600_000), 12 * time.Hour},
		{"unknown duration", 30 * time.Minute, 12 * time.Hour, nil, 12 * time.Hour},
		{"no maximum", 2 * time.Minute, 0, ms(3600_000), 2 * time.Minute},
		{"negative duration", 30 * time.Minute, time.Hour, ms(-5), 30 * time.Minute},
	}
	for _, c := range cases {
		if got := AttemptTimeout(c.limit, c.max, c.durationMs); got != c.want {
			t.Errorf("%s: AttemptTimeout = %s, want %s", c.name, got, c.want)
		}
	}
}
