package kube

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/herdhq/herd/internal/job"
)

// LeaseName is the coordination.k8s.io Lease that herd servers in a
// namespace take turns holding: the holder alone dispatches Jobs and
// keeps the worker keys' Secrets.
const LeaseName = "herd-dispatcher"

// Election timings: a new leader takes over at most leaseDuration after
// the old one vanished without a word (at once when it stops cleanly).
var (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// Identity names this server in the Lease: its pod's name (POD_NAME, from
// the downward API; else the host name, which a pod on the host's network
// shares with its node) and a random suffix, so two processes never share it.
func Identity() string {
	h := os.Getenv("POD_NAME")
	if h == "" {
		h, _ = os.Hostname()
	}
	return fmt.Sprintf("%s_%s", h, job.NewID(""))
}

// Lead runs fn while this process holds the Lease, so that of several herd
// servers (PostgreSQL lets them run side by side) exactly one dispatches
// and rewrites keys. fn's context ends when the lease is lost; Lead then
// campaigns again, until ctx ends. An error from fn ends Lead with it.
func Lead(ctx context.Context, cs kubernetes.Interface, ns, identity string, log *slog.Logger, fn func(context.Context) error) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: LeaseName, Namespace: ns},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	for ctx.Err() == nil {
		leading := make(chan context.Context, 1)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: LeaseName, ReleaseOnCancel: true,
			LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(c context.Context) { leading <- c },
				OnStoppedLeading: func() {},
				OnNewLeader: func(id string) {
					if id != identity {
						log.Info("another herd server leads: it dispatches and keeps the keys", "leader", id, "lease", ns+"/"+LeaseName)
					}
				},
			},
		})
		if err != nil {
			return err
		}
		lctx, cancel := context.WithCancel(ctx)
		ran := make(chan struct{})
		go func() { le.Run(lctx); close(ran) }()
		var fnErr error
		select {
		case c := <-leading:
			log.Info("leading: this server dispatches and keeps the keys", "lease", ns+"/"+LeaseName, "identity", identity)
			fnErr = fn(c)
		case <-ran:
		}
		cancel() // give the lease up (at once: ReleaseOnCancel) if fn ended by itself
		<-ran
		if fnErr != nil {
			return fnErr
		}
		if ctx.Err() == nil {
			log.Warn("lost the lead; campaigning again", "lease", ns+"/"+LeaseName)
		}
	}
	return nil
}
