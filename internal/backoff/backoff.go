// Package backoff computes how long a retry loop waits before its next try.
// Every loop in herd that backs off doubles its wait from a first delay up
// to a cap; each passes its own first delay and cap, and adds jitter itself
// where it wants some. It does not sleep or count tries for the caller.
package backoff

import "time"

// Delay is the wait after the n-th failed try in a row (n counts from 1):
// first doubled n-1 times, at most maxWait. An n below 1 counts as 1.
func Delay(first, maxWait time.Duration, n int) time.Duration {
	d := min(first, maxWait)
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	return min(d, maxWait)
}
