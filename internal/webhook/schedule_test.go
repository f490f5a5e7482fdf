package webhook_test

import (
	"testing"
	"time"

	"github.com/botaserver/bota/internal/webhook"
)

func TestNextAttempt(t *testing.T) {
	tests := []struct {
		done  int
		delay time.Duration
		ok    bool
	}{
		{-1, 0, true},
		{0, 0, true},
		{1, time.Minute, true},
		{2, 5 * time.Minute, true},
		{3, 30 * time.Minute, true},
		{4, 2 * time.Hour, true},
		{5, 8 * time.Hour, true},
		{6, 0, false},
		{7, 0, false},
	}
	for _, tt := range tests {
		delay, ok := webhook.NextAttempt(tt.done)
		if delay != tt.delay || ok != tt.ok {
			t.Errorf("NextAttempt(%d) = %s, %v; want %s, %v", tt.done, delay, ok, tt.delay, tt.ok)
		}
	}
}

func TestNextAttemptCountsSix(t *testing.T) {
	attempts := 1
	var total time.Duration
	for {
		delay, ok := webhook.NextAttempt(attempts)
		if !ok {
			break
		}
		total += delay
		attempts++
	}
	if webhook.MaxAttempts != 6 {
		t.Errorf("MaxAttempts = %d, want 6", webhook.MaxAttempts)
	}
	if attempts != 6 {
		t.Errorf("attempts = %d, want 6", attempts)
	}
	if want := 10*time.Hour + 36*time.Minute; total != want {
		t.Errorf("total delay = %s, want %s", total, want)
	}
}

func TestShouldDisable(t *testing.T) {
	first := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		first time.Time
		now   time.Time
		want  bool
	}{
		{"not failing", time.Time{}, first.Add(100 * 24 * time.Hour), false},
		{"just failed", first, first, false},
		{"two days", first, first.Add(48 * time.Hour), false},
		{"one second short", first, first.Add(72*time.Hour - time.Second), false},
		{"exactly three days", first, first.Add(72 * time.Hour), true},
		{"four days", first, first.Add(96 * time.Hour), true},
		{"clock behind", first, first.Add(-time.Hour), false},
	}
	for _, tt := range tests {
		if got := webhook.ShouldDisable(tt.first, tt.now); got != tt.want {
			t.Errorf("ShouldDisable %s = %v, want %v", tt.name, got, tt.want)
		}
	}
}
