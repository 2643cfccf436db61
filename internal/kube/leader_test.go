package kube_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/herdhq/herd/internal/kube"
	"github.com/herdhq/herd/internal/kube/kubetest"
)

// TestLead: of two servers only the Lease holder runs its work; when it
// stops, the other takes over; an error from the work ends Lead with it.
func TestLead(t *testing.T) {
	defer kube.FastElection()()
	ctx, cs, ns := leaseNamespace(t, "lead")
	log := kubetest.Logger(t)

	var leaders atomic.Int32 // running at once
	var ranA, ranB atomic.Bool
	work := func(ran *atomic.Bool) func(context.Context) error {
		return func(c context.Context) error {
			ran.Store(true)
			if leaders.Add(1) > 1 {
				t.Error("two servers lead at once")
			}
			<-c.Done()
			leaders.Add(-1)
			return nil
		}
	}
	ctxA, stopA := context.WithCancel(ctx)
	doneA := make(chan error, 1)
	go func() { doneA <- kube.Lead(ctxA, cs, ns, "a", log, work(&ranA)) }()
	require.Eventually(t, ranA.Load, 10*time.Second, 20*time.Millisecond, "the first server leads")

	ctxB, stopB := context.WithCancel(ctx)
	defer stopB()
	doneB := make(chan error, 1)
	go func() { doneB <- kube.Lead(ctxB, cs, ns, "b", log, work(&ranB)) }()
	time.Sleep(9 * time.Second) // past a whole lease: b keeps waiting while a renews
	require.False(t, ranB.Load(), "the second server waits")

	stopA()
	require.NoError(t, <-doneA)
	require.Eventually(t, ranB.Load, 10*time.Second, 20*time.Millisecond, "the second server takes over at once (the first gave the Lease up)")
	l, err := cs.CoordinationV1().Leases(ns).Get(ctx, kube.LeaseName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "b", *l.Spec.HolderIdentity)

	stopB()
	require.NoError(t, <-doneB)
	l, err = cs.CoordinationV1().Leases(ns).Get(ctx, kube.LeaseName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Empty(t, *l.Spec.HolderIdentity, "given up on the way out")

	// Work that fails gives the lead up for a while and tries again; it
	// never ends the server.
	var tries atomic.Int32
	ctxC, stopC := context.WithCancel(ctx)
	doneC := make(chan error, 1)
	go func() {
		doneC <- kube.Lead(ctxC, cs, ns, "c", log, func(context.Context) error {
			tries.Add(1)
			return errors.New("boom")
		})
	}()
	require.Eventually(t, func() bool { return tries.Load() >= 2 }, 20*time.Second, 20*time.Millisecond)
	stopC()
	require.NoError(t, <-doneC)
}

// TestGiveUp: the Lease is given up from a fresh read when it still names
// this server (the elector's own release can lose a race with its last
// renewal and leave it held), and left alone when another server holds it.
func TestGiveUp(t *testing.T) {
	ctx, cs, ns := leaseNamespace(t, "giveup")
	holder, duration := "other", int32(15)
	_, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: kube.LeaseName},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &duration}}, metav1.CreateOptions{})
	require.NoError(t, err)
	holderOf := func() string {
		l, err := cs.CoordinationV1().Leases(ns).Get(ctx, kube.LeaseName, metav1.GetOptions{})
		require.NoError(t, err)
		return *l.Spec.HolderIdentity
	}
	require.NoError(t, kube.GiveUp(ctx, cs, ns, "me"))
	require.Equal(t, "other", holderOf(), "another server's Lease is left alone")

	l, err := cs.CoordinationV1().Leases(ns).Get(ctx, kube.LeaseName, metav1.GetOptions{})
	require.NoError(t, err)
	me := "me"
	l.Spec.HolderIdentity = &me
	_, err = cs.CoordinationV1().Leases(ns).Update(ctx, l, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, kube.GiveUp(ctx, cs, ns, "me"))
	require.Empty(t, holderOf(), "this server's Lease is given up")
}

// leaseNamespace is a client of the test cluster, a fresh namespace named
// from prefix, and a minute to use them in.
func leaseNamespace(t *testing.T, prefix string) (context.Context, kubernetes.Interface, string) {
	t.Helper()
	env := kubetest.Need(t)
	cs, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	ns := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%100000)
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	return ctx, cs, ns
}
