package speech

import (
	"errors"
	"fmt"
	"slices"
)

// Providers are the hosted speech services a transcription may name. Only
// whisper, deepgram and assemblyai have adapters; elevenlabs is accepted
// by the API but always fails as not configured.
var Providers = []string{"whisper", "deepgram", "assemblyai", "elevenlabs"}

// LocalName is the provider name of the server's own offline engine.
const LocalName = "local"

// ErrUnknownProvider is wrapped by Lookup's error for a provider name that
// is neither local nor one of Providers.
var ErrUnknownProvider = errors.New("unknown speech provider")

// Registry maps provider names to configured engines.
type Registry struct {
	defaultEngine Engine
	engines       map[string]Engine
}

// NewRegistry returns a registry whose default engine serves "" and
// "local", and whose hosted engines serve the provider named by their
// Name(). Engines with a name outside Providers are not registered.
func NewRegistry(defaultEngine Engine, hosted ...Engine) *Registry {
	r := &Registry{defaultEngine: defaultEngine, engines: map[string]Engine{}}
	for _, e := range hosted {
		if e != nil && slices.Contains(Providers, e.Name()) {
			r.engines[e.Name()] = e
		}
	}
	return r
}

// Lookup returns the engine for provider. "" and "local" give the default
// engine. A known provider without a configured engine gives a
// non-retryable processing_error that names it; an unknown name gives an
// error wrapping ErrUnknownProvider.
func (r *Registry) Lookup(provider string) (Engine, error) {
	if provider == "" || provider == LocalName {
		if r.defaultEngine == nil {
			return nil, &Error{Code: CodeProcessingError,
				Message: "no default speech engine is configured on this server"}
		}
		return r.defaultEngine, nil
	}
	if e, ok := r.engines[provider]; ok {
		return e, nil
	}
	if slices.Contains(Providers, provider) {
		return nil, &Error{Code: CodeProcessingError,
			Message: fmt.Sprintf("provider %q is not configured on this server", provider)}
	}
	return nil, &Error{Code: CodeProcessingError,
		Message: fmt.Sprintf("unknown provider %q", provider),
		Err:     fmt.Errorf("%w: %q", ErrUnknownProvider, provider)}
}

// Configured returns the provider names Lookup serves: "local" (when a
// default engine is set) and each registered hosted provider.
func (r *Registry) Configured() []string {
	var names []string
	if r.defaultEngine != nil {
		names = append(names, LocalName)
	}
	for _, p := range Providers {
		if _, ok := r.engines[p]; ok {
			names = append(names, p)
		}
	}
	return names
}
