package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// The outbox: every event of a job, for every target that hears of it,
// written in the transaction that changed the job, and leased to the
// delivery service like a task to a worker.

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func rowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// emit writes event of job jobID to the outbox, once for each publisher
// the job names (life-cycle events only) and each subscription that wants
// it; data is the event's own (nil: none). A job without a profile (a
// health check) sends none.
func (s *Store) emit(ctx context.Context, tx *sql.Tx, jobID, event string, data any, now time.Time) error {
	var profile, publish, labels string
	if err := tx.QueryRowContext(ctx, s.q(`SELECT profile, publish, labels FROM jobs WHERE id = ?`), jobID).Scan(&profile, &publish, &labels); err != nil {
		return fmt.Errorf("read job for its events: %w", err)
	}
	if profile == "" {
		// A library's health check (a job a file, no profile): nobody
		// subscribed to encodes wants a webhook per file checked; the
		// library's status has the results.
		return nil
	}
	var jl map[string]string
	if err := unmarshalOr(labels, &jl); err != nil {
		return fmt.Errorf("decode job labels: %w", err)
	}
	subs, err := collect(ctx, tx, scanSubscription, s.q(`SELECT `+subCols+` FROM subscriptions WHERE paused_at IS NULL`))
	if err != nil {
		return fmt.Errorf("read subscriptions: %w", err)
	}
	eventID, body := job.NewID("evt"), jsonOr(data, "")
	for _, name := range splitList(publish) {
		if !slices.Contains(job.LifeCycle, event) {
			break
		}
		if err := s.insertOutbound(ctx, tx, job.NewID("dlv"), eventID, event, jobID, name, false, body, now); err != nil {
			return err
		}
	}
	for _, sub := range subs {
		if sub.Wants(event, profile, jl) {
			if err := s.insertOutbound(ctx, tx, job.NewID("dlv"), eventID, event, jobID, sub.ID, true, body, now); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Store) insertOutbound(ctx context.Context, q querier, id, eventID, event, jobID, target string, sub bool, data string, now time.Time) error {
	_, err := q.ExecContext(ctx, s.q(`INSERT INTO outbox (id, event_id, event, job_id, target, subscription, data, created_at, next_try)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`), id, eventID, event, jobID, target, boolInt(sub), data, ms(now), ms(now))
	if err != nil {
		return fmt.Errorf("write job event: %w", err)
	}
	return nil
}

// HandOffFiles queues, as event eventID of a job, a notice to publishers
// (media servers) that files were written (library name → path), under
// delivery ids made from the event and each publisher: a second call adds
// nothing.
func (s *Store) HandOffFiles(ctx context.Context, eventID, jobID string, publishers []string, files map[string]string, now time.Time) error {
	data, err := json.Marshal(store.FilesNotice{Files: files})
	if err != nil {
		return err
	}
	for _, name := range publishers {
		if err := s.insertOutbound(ctx, s.w, job.DerivedID("dlv", eventID, name), eventID, job.EventSucceeded, jobID, name, false, string(data), now); err != nil {
			return err
		}
	}
	return nil
}

// HandOff queues event of a job for publishers as event eventID, under
// delivery ids made from it and each publisher, so a second call adds
// nothing.
func (s *Store) HandOff(ctx context.Context, eventID, jobID, event string, publishers []string, now time.Time) error {
	for _, name := range publishers {
		if err := s.insertOutbound(ctx, s.w, job.DerivedID("dlv", eventID, name), eventID, event, jobID, name, false, "", now); err != nil {
			return err
		}
	}
	return nil
}

// progressed emits job.progress when a job's progress reaches a tenth it
// had not reached (short of the end: success says that). The step is
// claimed on the job's row, so each is written once: a retry that sets
// progress back, or two heartbeats at once, do not write it again.
func (s *Store) progressed(ctx context.Context, tx *sql.Tx, jobID string, progress float64, now time.Time) error {
	step := int(math.Floor(progress * job.ProgressSteps))
	if step <= 0 || step >= job.ProgressSteps {
		return nil
	}
	res, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET progress_step = ? WHERE id = ? AND progress_step < ?`), step, jobID, step)
	if n, err := rowsAffected(res, err); err != nil || n != 1 {
		return err
	}
	return s.emit(ctx, tx, jobID, job.EventProgress, map[string]float64{"progress": float64(step) / job.ProgressSteps}, now)
}

const outCols = `id, event_id, event, job_id, target, subscription, created_at, attempt, data`

func scanOutbound(sc scanner) (store.Outbound, error) {
	var (
		o       store.Outbound
		sub     int
		created int64
		data    string
	)
	if err := sc.Scan(&o.ID, &o.EventID, &o.Event, &o.JobID, &o.Target, &sub, &created, &o.Attempt, &data); err != nil {
		return o, err
	}
	o.Subscription, o.CreatedAt = sub == 1, time.UnixMilli(created).UTC()
	if data != "" {
		o.Data = json.RawMessage(data)
	}
	return o, nil
}

// ClaimOutbound leases due deliveries.
func (s *Store) ClaimOutbound(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]store.Outbound, error) {
	var out []store.Outbound
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = collect(ctx, tx, scanOutbound, s.q(`UPDATE outbox SET lease_owner = ?, lease_until = ?
			WHERE id IN (SELECT id FROM outbox WHERE done = 0 AND next_try <= ? AND (lease_until IS NULL OR lease_until <= ?)
			ORDER BY next_try, created_at, id LIMIT ? `+s.d.ClaimLock+`)
			RETURNING `+outCols), owner, ms(now.Add(lease)), ms(now), ms(now), limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return out, nil
}

// ReleaseOutbound gives back owner's leases.
func (s *Store) ReleaseOutbound(ctx context.Context, owner string) (int, error) {
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE outbox SET lease_until = NULL, lease_owner = '' WHERE lease_owner = ? AND done = 0`), owner)
	n, err := rowsAffected(res, err)
	if err != nil {
		return 0, fmt.Errorf("release deliveries: %w", err)
	}
	return int(n), nil
}

// RenewOutbound extends owner's lease.
func (s *Store) RenewOutbound(ctx context.Context, id, owner string, until time.Time) (bool, error) {
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE outbox SET lease_until = ? WHERE id = ? AND lease_owner = ? AND done = 0`), ms(until), id, owner)
	n, err := rowsAffected(res, err)
	if err != nil {
		return false, fmt.Errorf("renew delivery: %w", err)
	}
	return n == 1, nil
}

// SettleOutbound ends a delivery or sets its next try, if owner holds it.
func (s *Store) SettleOutbound(ctx context.Context, id, owner string, attempt int, next time.Time) (bool, error) {
	done, at := 1, int64(0)
	if !next.IsZero() {
		done, at = 0, ms(next)
	}
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE outbox SET done = ?, attempt = ?, next_try = CASE WHEN ? = 1 THEN next_try ELSE ? END, lease_until = NULL, lease_owner = ''
		WHERE id = ? AND lease_owner = ?`), done, attempt, done, at, id, owner)
	n, err := rowsAffected(res, err)
	if err != nil {
		return false, fmt.Errorf("settle delivery: %w", err)
	}
	return n == 1, nil
}

// PruneOutbound deletes ended deliveries written before before.
func (s *Store) PruneOutbound(ctx context.Context, before time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, s.q(`DELETE FROM outbox WHERE done = 1 AND created_at < ?`), ms(before))
	n, err := rowsAffected(res, err)
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	return int(n), nil
}

// PendingOutbound lists an event's deliveries not settled yet.
func (s *Store) PendingOutbound(ctx context.Context, eventID string) ([]store.Outbound, error) {
	out, err := collect(ctx, s.r, scanOutbound, s.q(`SELECT `+outCols+` FROM outbox WHERE event_id = ? AND done = 0 ORDER BY id`), eventID)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return out, nil
}

const subCols = `id, name, url, secret, events, profiles, labels, origin, created_at, failing_since, paused_at, note`

func scanSubscription(sc scanner) (store.Subscription, error) {
	var (
		sub             store.Subscription
		events, profs   string
		labels          string
		created         int64
		failing, paused sql.NullInt64
	)
	if err := sc.Scan(&sub.ID, &sub.Name, &sub.URL, &sub.Secret, &events, &profs, &labels, &sub.Origin, &created, &failing, &paused, &sub.Note); err != nil {
		return sub, err
	}
	if err := unmarshalOr(labels, &sub.Labels); err != nil {
		return sub, fmt.Errorf("decode subscription labels: %w", err)
	}
	sub.Events, sub.Profiles = splitList(events), splitList(profs)
	sub.CreatedAt = time.UnixMilli(created).UTC()
	sub.FailingSince, sub.PausedAt = fromMS(failing), fromMS(paused)
	return sub, nil
}

// PutSubscription creates or replaces a subscription.
func (s *Store) PutSubscription(ctx context.Context, sub store.Subscription) error {
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO subscriptions (`+subCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, url = excluded.url, secret = excluded.secret, events = excluded.events,
		profiles = excluded.profiles, labels = excluded.labels, origin = excluded.origin`),
		sub.ID, sub.Name, sub.URL, sub.Secret, strings.Join(sub.Events, ","), strings.Join(sub.Profiles, ","), jsonOr(sub.Labels, ""), sub.Origin,
		ms(sub.CreatedAt), msPtr(sub.FailingSince), msPtr(sub.PausedAt), sub.Note)
	if err != nil {
		return fmt.Errorf("store subscription: %w", err)
	}
	return nil
}

// GetSubscription returns one subscription.
func (s *Store) GetSubscription(ctx context.Context, id string) (store.Subscription, error) {
	sub, err := scanSubscription(s.r.QueryRowContext(ctx, s.q(`SELECT `+subCols+` FROM subscriptions WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return sub, fmt.Errorf("subscription %s: %w", id, job.ErrNotFound)
	}
	return sub, err
}

// ListSubscriptions lists every subscription, oldest first.
func (s *Store) ListSubscriptions(ctx context.Context) ([]store.Subscription, error) {
	return collect(ctx, s.r, scanSubscription, s.q(`SELECT `+subCols+` FROM subscriptions ORDER BY created_at, id`))
}

// DeleteSubscription removes a subscription and what it has not been sent.
func (s *Store) DeleteSubscription(ctx context.Context, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM subscriptions WHERE id = ?`), id)
		n, err := rowsAffected(res, err)
		if err != nil {
			return fmt.Errorf("delete subscription: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("subscription %s: %w", id, job.ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM outbox WHERE subscription = 1 AND target = ? AND done = 0`), id); err != nil {
			return fmt.Errorf("drop a deleted subscription's events: %w", err)
		}
		return nil
	})
}

// SubscriptionHealth records a subscription's failures and pause.
func (s *Store) SubscriptionHealth(ctx context.Context, id string, failingSince, pausedAt *time.Time, note string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE subscriptions SET failing_since = ?, paused_at = ?, note = ? WHERE id = ?`),
			msPtr(failingSince), msPtr(pausedAt), note, id)
		n, err := rowsAffected(res, err)
		if err != nil {
			return fmt.Errorf("record subscription health: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("subscription %s: %w", id, job.ErrNotFound)
		}
		if pausedAt != nil { // a paused subscription is sent nothing more until resumed
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE outbox SET done = 1, lease_until = NULL WHERE subscription = 1 AND target = ? AND done = 0`), id); err != nil {
				return fmt.Errorf("drop a paused subscription's events: %w", err)
			}
		}
		return nil
	})
}
