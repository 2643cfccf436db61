package kube

import (
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// FastElection shortens the Lease timings for tests and returns a restore.
func FastElection() func() {
	d, r, p := leaseDuration, renewDeadline, retryPeriod
	leaseDuration, renewDeadline, retryPeriod = 8*time.Second, 6*time.Second, 250*time.Millisecond
	return func() { leaseDuration, renewDeadline, retryPeriod = d, r, p }
}

// GiveUp is giveUp.
var GiveUp = giveUp

// SeesPod reports whether the dispatcher's pod cache has this version of a pod.
func (d *Dispatcher) SeesPod(name, version string) bool {
	pods, _ := d.pods.List(labels.Everything())
	for _, p := range pods {
		if p.Name == name && p.ResourceVersion == version {
			return true
		}
	}
	return false
}
