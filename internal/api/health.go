package api

import (
	"context"
	"net/http"
	"time"
)

// health reports whether the database answers, with exactly the keys
// status, database and billing.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		loggerFrom(ctx).Error("HealthCheckFailed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{
			"status": "unhealthy", "database": "disconnected", "billing": "disabled"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"status": "healthy", "database": "connected", "billing": "disabled"})
}
