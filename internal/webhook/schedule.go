package webhook

import "time"

// MaxAttempts is the number of attempts made for one event on one endpoint:
// the first, then one after each delay in retryDelays.
const MaxAttempts = 6

// DisableAfter is how long an endpoint may fail every delivery before it is
// disabled.
const DisableAfter = 72 * time.Hour

// retryDelays are the waits after each failed attempt, counted from that
// failure.
var retryDelays = [MaxAttempts - 1]time.Duration{
	time.Minute,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	8 * time.Hour,
}

// NextAttempt returns how long to wait after a failure before the next
// attempt, given the number of attempts already made (1-based). It returns
// ok=false once MaxAttempts have been made, when the delivery is failed for
// good. With no attempt made yet the delay is zero.
func NextAttempt(attempt int) (delay time.Duration, ok bool) {
	if attempt < 1 {
		return 0, true
	}
	if attempt >= MaxAttempts {
		return 0, false
	}
	return retryDelays[attempt-1], true
}

// ShouldDisable reports whether an endpoint whose deliveries have all
// failed since firstFailureAt has failed long enough, DisableAfter, to be
// disabled at now. A zero firstFailureAt means the endpoint is not failing.
func ShouldDisable(firstFailureAt, now time.Time) bool {
	if firstFailureAt.IsZero() {
		return false
	}
	return now.Sub(firstFailureAt) >= DisableAfter
}
