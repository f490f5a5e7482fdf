package processing

import (
	"context"
	"encoding/json"
	"testing"

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
