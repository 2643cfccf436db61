package kube

import "time"

// FastElection shortens the Lease timings for tests and returns a restore.
func FastElection() func() {
	d, r, p := leaseDuration, renewDeadline, retryPeriod
	leaseDuration, renewDeadline, retryPeriod = 8*time.Second, 6*time.Second, 250*time.Millisecond
	return func() { leaseDuration, renewDeadline, retryPeriod = d, r, p }
}
