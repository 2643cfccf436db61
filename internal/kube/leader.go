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
	"k8s.io/client-go/util/retry"

	"github.com/herdhq/herd/internal/backoff"
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

// After a failure in a row of them (a Job the API would not create, the
// leader's work returning an error) the dispatcher waits firstRetry,
// doubling with each further failure up to maxRetry, before it tries again.
const (
	firstRetry = time.Second
	maxRetry   = time.Minute
)

// Identity names this server in the Lease: its pod's name (pod, POD_NAME
// from the downward API; else the host name, which a pod on the host's
// network shares with its node) and a random suffix, so two processes never
// share it.
func Identity(pod string) string {
	h := pod
	if h == "" {
		h, _ = os.Hostname()
	}
	return fmt.Sprintf("%s_%s", h, job.NewID(""))
}

// Lead runs fn while this process holds the Lease, so that of several herd
// servers (PostgreSQL lets them run side by side) exactly one dispatches
// and rewrites keys. fn's context ends when the lease is lost or ctx ends;
// only once fn has returned is the Lease given up, so two servers never
// lead at once. An error from fn is logged and the lead given up for a
// while (an API hiccup, a Role without a permission); Lead campaigns again
// until ctx ends.
func Lead(ctx context.Context, cs kubernetes.Interface, ns, identity string, log *slog.Logger, fn func(context.Context) error) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: LeaseName, Namespace: ns},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	where := ns + "/" + LeaseName
	failures := 0 // fn's failures in a row
	for ctx.Err() == nil {
		leading := make(chan context.Context, 1)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: LeaseName,
			LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
			// The elector's context ends only after fn has returned (below),
			// so giving the Lease up then is safe: another server takes
			// over at once rather than after the lease runs out.
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(c context.Context) { leading <- c },
				OnStoppedLeading: func() {},
				OnNewLeader: func(id string) {
					if id != identity {
						log.Info("another herd server leads: it dispatches and keeps the keys", "leader", id, "lease", where)
					}
				},
			},
		})
		if err != nil {
			return err
		}
		// The elector outlives ctx until fn has returned: it must not let
		// the Lease go while fn still works.
		ectx, stopElector := context.WithCancel(context.WithoutCancel(ctx))
		ran := make(chan struct{})
		go func() { le.Run(ectx); close(ran) }()
		stopCampaign := context.AfterFunc(ctx, stopElector) // not leading yet: stop campaigning
		var fnErr error
		select {
		case c := <-leading:
			stopCampaign()
			log.Info("leading: this server dispatches and keeps the keys", "lease", where, "identity", identity)
			fctx, cancel := context.WithCancel(c) // c ends when the lease is lost
			stop := context.AfterFunc(ctx, cancel)
			fnErr = fn(fctx)
			stop()
			if fctx.Err() != nil {
				fnErr = nil // stopped because it lost the lead or the server stops: not a failure
			}
			cancel()
		case <-ran:
		}
		stopCampaign()
		stopElector()
		<-ran
		// The elector gives the Lease up with the copy it read last; when
		// its last renewal reached the API server but its answer did not
		// (cancelled in flight), that copy is stale and the release is
		// refused as a conflict, leaving the Lease held until it runs
		// out. Give it up again from a fresh read.
		if err := giveUp(context.WithoutCancel(ctx), cs, ns, identity); err != nil {
			log.Warn("could not give the Lease up; another server takes over when it runs out", "err", err, "lease", where)
		}
		if ctx.Err() != nil {
			break
		}
		if fnErr != nil {
			failures++
			wait := backoff.Delay(firstRetry, maxRetry, failures)
			log.Error("the leader's work failed; giving up the lead for a while", "err", fnErr, "retry_in", wait, "lease", where)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			continue
		}
		failures = 0
		log.Warn("lost the lead; campaigning again", "lease", where)
	}
	return nil
}

// giveUp clears the Lease's holder if it still names identity, as the
// elector's release does: a holder of "" and a duration of one second,
// so that another server takes it at once.
func giveUp(ctx context.Context, cs kubernetes.Interface, ns, identity string) error {
	ctx, cancel := context.WithTimeout(ctx, renewDeadline)
	defer cancel()
	leases := cs.CoordinationV1().Leases(ns)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Get(ctx, LeaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != identity {
			return nil // given up already, or another server's
		}
		none, second, now := "", int32(1), metav1.NowMicro()
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime, l.Spec.AcquireTime = &none, &second, &now, &now
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
}
