package kube

import "time"

// FastElection shortens the Lease timings for tests and returns a restore.
func FastElection() func() {
	d, r, p := leaseDuration, renewDeadline, retryPeriod
	leaseDuration, renewDeadline, retryPeriod = 3*time.Second, 2*time.Second, 200*time.Millisecond
	return func() { leaseDuration, renewDeadline, retryPeriod = d, r, p }
}
