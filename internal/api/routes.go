package api

import "net/http"

// routes is the one table of every endpoint.
func (s *Server) routes() {
	m := s.mux
	read := func(scope string) access { return access{scope: scope} }
	write := read

	// Operations.
	m.HandleFunc("GET /health", s.health)
	m.Handle("GET /metrics", s.metricsHandler())

	// Admin API, guarded by the admin token.
	m.HandleFunc("GET /admin/v1/projects", s.admin(s.adminListProjects))
	m.HandleFunc("POST /admin/v1/projects", s.admin(s.adminCreateProject))
	m.HandleFunc("GET /admin/v1/projects/{id}", s.admin(s.adminGetProject))
	m.HandleFunc("GET /admin/v1/projects/{id}/keys", s.admin(s.adminListKeys))
	m.HandleFunc("POST /admin/v1/projects/{id}/keys", s.admin(s.adminCreateKey))
	m.HandleFunc("DELETE /admin/v1/keys/{id}", s.admin(s.adminRevokeKey))

	// End users.
	m.HandleFunc("POST /v1/end-users", s.guard(write("end_users:write"), s.createEndUser))
	m.HandleFunc("GET /v1/end-users", s.guard(read("end_users:read"), s.listEndUsers))
	m.HandleFunc("GET /v1/end-users/{id}", s.guard(read("end_users:read"), s.getEndUser))
	m.HandleFunc("PATCH /v1/end-users/{id}", s.guard(write("end_users:write"), s.updateEndUser))
	m.HandleFunc("DELETE /v1/end-users/{id}", s.guard(write("end_users:write"), s.deleteEndUser))

	// Devices.
	m.HandleFunc("POST /v1/devices", s.guard(write("devices:write"), s.registerDevice))
	m.HandleFunc("GET /v1/devices", s.guard(read("devices:read"), s.listDevices))
	m.HandleFunc("GET /v1/devices/stats", s.guard(read("devices:read"), s.deviceStats))
	m.HandleFunc("GET /v1/devices/{id}", s.guard(read("devices:read"), s.getDevice))
	m.HandleFunc("PATCH /v1/devices/{id}", s.guard(write("devices:write"), s.updateDevice))
	m.HandleFunc("DELETE /v1/devices/{id}", s.guard(write("devices:write"), s.deleteDevice))
	m.HandleFunc("POST /v1/devices/{id}/bind",
		s.guard(access{scope: "devices:write", reissue: "device_token"}, s.bindDevice))
	m.HandleFunc("POST /v1/devices/{id}/unbind", s.guard(write("devices:write"), s.unbindDevice))
	m.HandleFunc("POST /v1/devices/{id}/heartbeat",
		s.guard(access{scope: "devices:write", device: true}, s.heartbeat))
	m.HandleFunc("POST /v1/devices/{id}/token/refresh",
		s.guard(access{device: true, noKey: true, reissue: "device_token"}, s.refreshDeviceToken))
	m.HandleFunc("GET /v1/devices/{id}/state", s.guard(read("devices:read"), s.deviceState))

	// Recordings and uploads.
	rw := access{scope: "recordings:write", device: true, upload: true}
	m.HandleFunc("POST /v1/recordings", s.guard(access{scope: "recordings:write", device: true}, s.createRecording))
	m.HandleFunc("GET /v1/recordings", s.guard(read("recordings:read"), s.listRecordings))
	m.HandleFunc("GET /v1/recordings/{id}", s.guard(read("recordings:read"), s.getRecording))
	m.HandleFunc("PATCH /v1/recordings/{id}", s.guard(write("recordings:write"), s.updateRecording))
	m.HandleFunc("DELETE /v1/recordings/{id}", s.guard(write("recordings:write"), s.deleteRecording))
	m.HandleFunc("POST /v1/recordings/{id}/upload-url",
		s.guard(access{scope: "recordings:write", device: true, upload: true, reissue: "upload_token"}, s.createUploadURL))
	m.HandleFunc("POST /v1/recordings/{id}/upload-complete", s.guard(rw, s.completeUpload))
	m.HandleFunc("POST /v1/recordings/{id}/upload-token",
		s.guard(access{scope: "recordings:write", reissue: "upload_token"}, s.createUploadToken))
	m.HandleFunc("GET /v1/recordings/{id}/download-url", s.guard(read("recordings:read"), s.downloadURL))
	m.HandleFunc("POST /v1/recordings/{id}/download-url", s.guard(read("recordings:read"), s.downloadURL))
	m.HandleFunc("POST /v1/recordings/{id}/chunk-url", s.guard(rw, s.chunkURL))
	m.HandleFunc("POST /v1/recordings/{id}/finalize", s.guard(rw, s.finalize))

	// Transcriptions and processing config.
	tw := access{scope: "transcriptions:write", limit: "transcriptions"}
	m.HandleFunc("POST /v1/recordings/{id}/transcribe", s.guard(tw, s.transcribeRecording))
	m.HandleFunc("POST /v1/transcriptions", s.guard(tw, s.transcribeRecording))
	m.HandleFunc("GET /v1/transcriptions", s.guard(read("transcriptions:read"), s.listTranscriptions))
	m.HandleFunc("GET /v1/transcriptions/{id}", s.guard(read("transcriptions:read"), s.getTranscription))
	m.HandleFunc("GET /v1/config/processing", s.guard(read("config:read"), s.getProcessingConfig))
	m.HandleFunc("GET /v1/projects/{id}/config/processing", s.guard(read("config:read"), s.getProcessingConfig))
	m.HandleFunc("PUT /v1/projects/{id}/config/processing", s.guard(write("config:write"), s.setProcessingConfig))
	m.HandleFunc("PATCH /v1/projects/{id}/config/processing", s.guard(write("config:write"), s.setProcessingConfig))

	// Anything else under /v1 is a JSON 404, not the mux's plain text.
	m.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, errNotFound("Endpoint "+r.Method+" "+r.URL.Path, ""))
	})
}
