package speech_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/speech"
)

type namedEngine string

func (n namedEngine) Name() string { return string(n) }

func (n namedEngine) Transcribe(context.Context, speech.Request) (*speech.Result, error) {
	return &speech.Result{Text: string(n)}, nil
}

func TestRegistryLookup(t *testing.T) {
	r := speech.NewRegistry(namedEngine("local"), namedEngine("deepgram"))
	for _, name := range []string{"", "local"} {
		e, err := r.Lookup(name)
		if err != nil || e.Name() != "local" {
			t.Errorf("Lookup(%q) = %v, %v, want the local engine", name, e, err)
		}
	}
	if e, err := r.Lookup("deepgram"); err != nil || e.Name() != "deepgram" {
		t.Errorf("Lookup(deepgram) = %v, %v", e, err)
	}
	if got := r.Configured(); !slices.Equal(got, []string{"local", "deepgram"}) {
		t.Errorf("Configured = %q", got)
	}
}

func TestRegistryNotConfigured(t *testing.T) {
	r := speech.NewRegistry(namedEngine("local"))
	for _, name := range []string{"whisper", "deepgram", "assemblyai", "elevenlabs"} {
		_, err := r.Lookup(name)
		var se *speech.Error
		if !errors.As(err, &se) {
			t.Fatalf("Lookup(%q) error = %v, want *speech.Error", name, err)
		}
		want := `provider "` + name + `" is not configured on this server`
		if se.Code != speech.CodeProcessingError || se.Retryable || se.Message != want {
			t.Errorf("Lookup(%q) = %+v, want non-retryable %q", name, se, want)
		}
	}
}

func TestRegistryUnknownProvider(t *testing.T) {
	r := speech.NewRegistry(namedEngine("local"), namedEngine("gemini"))
	_, err := r.Lookup("gemini")
	if !errors.Is(err, speech.ErrUnknownProvider) {
		t.Errorf("Lookup(gemini) error = %v, want ErrUnknownProvider", err)
	}
	if speech.AsError(err).Retryable {
		t.Error("unknown provider error is retryable")
	}
}

func TestHTTPErrorRetryAfterDate(t *testing.T) {
	at := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	rec := httptest.NewRecorder()
	rec.Header().Set("Retry-After", at)
	rec.WriteHeader(http.StatusTooManyRequests)
	err := speech.HTTPError("deepgram", rec.Result(), "slow down")
	delay, ok := speech.RetryAfter(err)
	if !ok || delay < 80*time.Second || delay > 90*time.Second {
		t.Errorf("RetryAfter = %v, %v, want about 90 s", delay, ok)
	}
	if !err.Retryable || err.Message != "deepgram replied 429 Too Many Requests: slow down" {
		t.Errorf("error = %+v", err)
	}
}
