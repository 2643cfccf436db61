package kube

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// SecretKey is the key of the worker key in the dispatcher's Secret.
const SecretKey = "key"

// ensureKey makes sure task pods can authenticate: the dispatcher's worker
// (default "kube") is registered and active, and the Secret the pods read
// holds its current key. Only the key's hash is in the database, so the
// Secret is the one copy; when it is missing, or holds a key the database no
// longer accepts (revoked, another database), a new key replaces it.
func (d *Dispatcher) ensureKey(ctx context.Context) error {
	secrets := d.cs.CoreV1().Secrets(d.cfg.Namespace)
	sec, err := secrets.Get(ctx, d.cfg.KeySecret, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("read Secret %s/%s: %w (the server's service account needs get on it)", d.cfg.Namespace, d.cfg.KeySecret, err)
	}
	found := err == nil
	if found {
		if ok, err := d.keyValid(ctx, string(sec.Data[SecretKey])); err != nil || ok {
			return err
		}
	}
	secret := api.NewKey("herd_wor_")
	now := d.cfg.Now().UTC()
	k := store.Key{ID: job.NewID("k"), Kind: "worker", Name: d.cfg.WorkerName, Hash: api.HashKey(secret), CreatedAt: now}
	if err := d.st.CreateKey(ctx, k); err != nil {
		return err
	}
	if err := d.st.PutWorker(ctx, store.Worker{Name: d.cfg.WorkerName, KeyID: k.ID, State: store.WorkerActive, Slots: d.cfg.MaxJobs, CreatedAt: now}); err != nil {
		return err
	}
	data := map[string][]byte{SecretKey: []byte(secret)}
	if found {
		sec.Data = data
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
	} else {
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: d.cfg.KeySecret, Namespace: d.cfg.Namespace,
				Labels: map[string]string{LabelName: "herd", LabelManagedBy: "herd"}},
			Type: corev1.SecretTypeOpaque, Data: data,
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("save the task pods' key in Secret %s/%s: %w", d.cfg.Namespace, d.cfg.KeySecret, err)
	}
	d.log.Info("issued the task pods' worker key", "worker", d.cfg.WorkerName, "secret", d.cfg.KeySecret)
	return nil
}

// keyValid reports whether secret is the dispatcher worker's live key.
func (d *Dispatcher) keyValid(ctx context.Context, secret string) (bool, error) {
	if secret == "" {
		return false, nil
	}
	k, err := d.st.KeyByHash(ctx, api.HashKey(secret))
	if errors.Is(err, job.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if k.Kind != "worker" || k.Name != d.cfg.WorkerName || k.Revoked || (k.ExpiresAt != nil && time.Now().After(*k.ExpiresAt)) {
		return false, nil
	}
	w, err := d.st.GetWorker(ctx, d.cfg.WorkerName)
	if errors.Is(err, job.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return w.KeyID == k.ID && w.State != store.WorkerRevoked, nil
}
