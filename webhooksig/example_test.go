package webhooksig_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/botaserver/bota/webhooksig"
)

// Example signs a delivery the way a Bota server does and verifies it the
// way a receiver does.
func Example() {
	secret := "whsec_5pXwq3T9bK7mZr2LdYc8vNfA"
	body := []byte(`{"id":"evt_1a2b3c","type":"webhook.test",` +
		`"created_at":"2026-01-01T00:00:00.000Z","data":{}}`)
	sent := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	header := http.Header{}
	header.Set(webhooksig.TimestampHeader, fmt.Sprint(sent.Unix()))
	header.Set(webhooksig.SignatureHeader, webhooksig.Header([]string{secret}, sent, body))
	fmt.Println(webhooksig.TimestampHeader+":", header.Get(webhooksig.TimestampHeader))
	fmt.Println(webhooksig.SignatureHeader+":", header.Get(webhooksig.SignatureHeader))

	received := sent.Add(2 * time.Second)
	err := webhooksig.Verify(secret, header, body, received, webhooksig.DefaultTolerance)
	fmt.Println("verified:", err == nil)

	tampered := []byte(strings.Replace(string(body), "webhook.test", "webhook.fake", 1))
	err = webhooksig.Verify(secret, header, tampered, received, webhooksig.DefaultTolerance)
	fmt.Println("tampered:", err)
	// Output:
	// X-Bota-Timestamp: 1767225600
	// X-Bota-Signature: v1=09f2475272f2ee195ef25028a3469928bd1b1d956c15aceb855cc711d805fccb
	// verified: true
	// tampered: webhooksig: no matching signature
}

// ExampleVerifyRequest shows a receiver's HTTP handler.
func ExampleVerifyRequest() {
	secret := "whsec_5pXwq3T9bK7mZr2LdYc8vNfA" // in practice read from configuration
	handler := func(w http.ResponseWriter, r *http.Request) {
		body, err := webhooksig.VerifyRequest(secret, r, webhooksig.DefaultTolerance)
		if err != nil {
			slog.Warn("webhook rejected", "err", err)
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		var event struct {
			ID   string          `json:"id"`
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &event); err != nil {
			http.Error(w, "invalid event", http.StatusBadRequest)
			return
		}
		// Delivery is at least once, so skip event.ID if it was seen before.
		// Respond quickly and do slow work in the background.
		w.WriteHeader(http.StatusOK)
	}
	http.HandleFunc("POST /webhooks/bota", handler)
}
