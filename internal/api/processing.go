package api

import (
	"context"
	"net/http"

	"github.com/botaserver/bota/internal/auth"
)

// afterUpload wakes the background work that turns the recording.uploaded
// event into a transcription. The upload's response never waits for it.
func (s *Server) afterUpload(r *http.Request, p *auth.Principal, recordingID string) {
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent()
	}
}

// transcriptionStatusAfterUpload returns the transcription_status of a
// finalize response: queued when the project transcribes uploads
// automatically, null otherwise.
func (s *Server) transcriptionStatusAfterUpload(ctx context.Context, p *auth.Principal) any {
	pc, err := Processing(ctx, s.store, p.Tenant)
	if err != nil || !pc.AutoTranscription {
		return nil
	}
	return "queued"
}
