package api

import (
	"net/http"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/processing"
)

// afterUpload wakes the background work that turns the recording.uploaded
// event into a transcription. The upload's response never waits for it.
func (s *Server) afterUpload(r *http.Request, p *auth.Principal, recordingID string) {
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent()
	}
}

// transcriptionStatusAfterUpload returns the transcription_status of a
// finalize response: queued when the upload is transcribed automatically,
// null otherwise or when that is not decided yet.
func transcriptionStatusAfterUpload(work *processing.UploadWork) any {
	if work == nil || !work.Transcribe {
		return nil
	}
	return "queued"
}
