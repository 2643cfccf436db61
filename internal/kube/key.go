package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// SecretKey is the key of the worker key in the dispatcher's Secret.
const SecretKey = "key"

// KeyStore is what keeping a worker key needs from the store: the key, and
// the worker it belongs to.
type KeyStore interface {
	CreateKey(ctx context.Context, k store.Key) error
	KeyByHash(ctx context.Context, hash string) (store.Key, error)
	GetWorker(ctx context.Context, name string) (store.Worker, error)
	PutWorker(ctx context.Context, w store.Worker) error
}

func (d *Dispatcher) ensureKey(ctx context.Context) error {
	return EnsureWorkerKey(ctx, d.cs, d.st, d.cfg.Namespace, d.cfg.KeySecret, d.cfg.WorkerName, d.cfg.MaxJobs, d.log)
}

// EnsureWorkerKey makes sure pods that read a worker key from Secret
// name can authenticate as worker: the worker is registered and active and
// the Secret holds its current key. Only the key's hash is in the database,
// so the Secret is the one copy; when it is missing, or holds a key the
// database no longer accepts (revoked, another database), a new key
// replaces it. The dispatcher's Job pods use one (worker "kube"); so may a
// Deployment of pull workers (--kube-worker-secret, worker "pool"), whose
// replicas then share that worker's name.
func EnsureWorkerKey(ctx context.Context, cs kubernetes.Interface, st KeyStore, ns, name, worker string, slots int, log *slog.Logger) error {
	secrets := cs.CoreV1().Secrets(ns)
	sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("read Secret %s/%s: %w (the server's service account needs get on it)", ns, name, err)
	}
	found := err == nil
	if found {
		if ok, err := keyValid(ctx, st, string(sec.Data[SecretKey]), worker); err != nil || ok {
			return err
		}
	}
	secret := apikey.New("herd_wor_")
	now := time.Now().UTC()
	k := store.Key{ID: job.NewID("k"), Kind: "worker", Name: worker, Hash: apikey.Hash(secret), CreatedAt: now}
	if err := st.CreateKey(ctx, k); err != nil {
		return err
	}
	state := store.WorkerActive // a new key; a drained worker stays drained
	if w, err := st.GetWorker(ctx, worker); err == nil && w.State == store.WorkerDraining {
		state = w.State
	}
	if err := st.PutWorker(ctx, store.Worker{Name: worker, KeyID: k.ID, State: state, Slots: max(slots, 1), CreatedAt: now}); err != nil {
		return err
	}
	data := map[string][]byte{SecretKey: []byte(secret)}
	if found {
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		sec.Data[SecretKey] = data[SecretKey] // other entries stay
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
	} else {
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
				Labels: map[string]string{LabelName: "herd", LabelManagedBy: "herd"}},
			Type: corev1.SecretTypeOpaque, Data: data,
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("save worker %s's key in Secret %s/%s: %w", worker, ns, name, err)
	}
	log.Info("issued a worker key into a Secret", "worker", worker, "secret", name)
	return nil
}

// KeepWorkerKey runs EnsureWorkerKey now and then every keyCheck until ctx
// ends, so a key revoked by an admin (the server's workers' keys are
// rotated that way) or a Secret deleted by hand is replaced within a minute.
func KeepWorkerKey(ctx context.Context, cs kubernetes.Interface, st KeyStore, ns, name, worker string, slots int, log *slog.Logger) error {
	ensure := func(ctx context.Context) error { return EnsureWorkerKey(ctx, cs, st, ns, name, worker, slots, log) }
	if err := ensure(ctx); err != nil {
		return err
	}
	recheckKey(ctx, ensure, name, log)
	return nil
}

// recheckKey runs ensure every keyCheck until ctx ends; a failure is
// logged and tried again at the next check.
func recheckKey(ctx context.Context, ensure func(context.Context) error, secret string, log *slog.Logger) {
	t := time.NewTicker(keyCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := ensure(ctx); err != nil && ctx.Err() == nil {
				log.Error("check a worker key's Secret", "secret", secret, "err", err)
			}
		}
	}
}

// keyCheck is how often the leader checks the keys in its Secrets.
var keyCheck = time.Minute

// keyValid reports whether secret is worker's live key.
func keyValid(ctx context.Context, st KeyStore, secret, worker string) (bool, error) {
	if secret == "" {
		return false, nil
	}
	k, err := st.KeyByHash(ctx, apikey.Hash(secret))
	if errors.Is(err, job.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if k.Kind != "worker" || k.Name != worker || !k.Usable(time.Now()) {
		return false, nil
	}
	w, err := st.GetWorker(ctx, worker)
	if errors.Is(err, job.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return w.KeyID == k.ID && w.State != store.WorkerRevoked, nil
}
