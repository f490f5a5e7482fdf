package api

import (
	"net/http"
	"strings"
)

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
	m.HandleFunc("/admin/v1/", s.admin(func(w http.ResponseWriter, r *http.Request) error {
		return errNotFound("Endpoint "+r.Method+" "+r.URL.Path, "")
	}))

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
	m.HandleFunc("POST /v1/devices/{id}/heartbeat", s.heartbeatRoute())
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

	// Webhooks: endpoints at /v1/webhook-endpoints, with /v1/webhooks as an
	// alias of the same resource, and the events they deliver.
	for _, base := range []string{"/v1/webhook-endpoints", "/v1/webhooks"} {
		secret := access{scope: "webhooks:write", reissue: "webhook_secret"}
		m.HandleFunc("POST "+base, s.guard(secret, s.createWebhookEndpoint))
		m.HandleFunc("GET "+base, s.guard(read("webhooks:read"), s.listWebhookEndpoints))
		m.HandleFunc("GET "+base+"/{id}", s.guard(read("webhooks:read"), s.getWebhookEndpoint))
		m.HandleFunc("PATCH "+base+"/{id}", s.guard(write("webhooks:write"), s.updateWebhookEndpoint))
		m.HandleFunc("POST "+base+"/{id}", s.guard(write("webhooks:write"), s.updateWebhookEndpoint))
		m.HandleFunc("DELETE "+base+"/{id}", s.guard(write("webhooks:write"), s.deleteWebhookEndpoint))
		m.HandleFunc("POST "+base+"/{id}/rotate-secret", s.guard(secret, s.rotateWebhookSecret))
		m.HandleFunc("POST "+base+"/{id}/test", s.guard(write("webhooks:write"), s.testWebhookEndpoint))
		m.HandleFunc("GET "+base+"/{id}/deliveries",
			s.guard(read("webhooks:read"), s.listWebhookDeliveries))
		m.HandleFunc("POST "+base+"/{id}/deliveries/{delivery_id}/retry",
			s.guard(write("webhooks:write"), s.retryWebhookDelivery))
	}
	m.HandleFunc("GET /v1/events", s.guard(read("webhooks:read"), s.listEvents))
	m.HandleFunc("GET /v1/events/{id}", s.guard(read("webhooks:read"), s.getEvent))

	// Anything else under /v1 gets a JSON 404 or 405, not the mux's plain text.
	m.HandleFunc("/v1/", s.unmatched)
}

// unmatched handles requests that no route takes. It returns 405 with an
// Allow header when the path exists for other methods and 404 otherwise,
// both as the error object.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, method := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		probe := r.Clone(r.Context())
		probe.Method = method
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/v1/" {
			allowed = append(allowed, method)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, r, errMethod(r.Method, r.URL.Path, allowed))
		return
	}
	writeError(w, r, errNotFound("Endpoint "+r.Method+" "+r.URL.Path, ""))
}
