package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// AddLiveSegment records a segment its task's attempt handed over, in the
// transaction that checks the lease: an attempt that lost its task lists
// nothing, however late its request arrives.
func (s *Store) AddLiveSegment(ctx context.Context, l job.Lease, seg store.LiveSegment, now time.Time) (bool, error) {
	added := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		t, err := s.leased(ctx, tx, l)
		if err != nil {
			return err
		}
		if t.JobID != seg.JobID {
			return fmt.Errorf("add live segment: task %s is not job %s's", t.ID, seg.JobID)
		}
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO live_segments (job_id, rendition, part, seq, attempt, codec, timescale, start, duration, size, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, rendition, part, seq) DO NOTHING`),
			seg.JobID, seg.Rendition, seg.Part, seg.Seq, seg.Attempt, seg.Codec, seg.Timescale, seg.Start, seg.Duration, seg.Size, ms(now))
		if err != nil {
			return fmt.Errorf("add live segment: %w", err)
		}
		n, err := res.RowsAffected()
		added = n == 1
		return err
	})
	return added, err
}

// LiveSegments lists a job's live segments by rendition, part and number.
func (s *Store) LiveSegments(ctx context.Context, jobID string) ([]store.LiveSegment, error) {
	segs, err := collect(ctx, s.r, func(sc scanner) (store.LiveSegment, error) {
		var (
			seg     store.LiveSegment
			created int64
		)
		err := sc.Scan(&seg.JobID, &seg.Rendition, &seg.Part, &seg.Seq, &seg.Attempt, &seg.Codec, &seg.Timescale, &seg.Start, &seg.Duration, &seg.Size, &created)
		seg.CreatedAt = time.UnixMilli(created).UTC()
		return seg, err
	}, s.q(`SELECT job_id, rendition, part, seq, attempt, codec, timescale, start, duration, size, created_at
		FROM live_segments WHERE job_id = ? ORDER BY rendition, part, seq`), jobID)
	if err != nil {
		return nil, fmt.Errorf("live segments: %w", err)
	}
	return segs, nil
}

// endedBefore is the condition on job j (and one argument, a time in ms)
// of a job that ended (succeeded, failed or was canceled) before then.
const endedBefore = `j.finished_at IS NOT NULL AND j.finished_at < ? AND j.state IN ('succeeded', 'failed', 'canceled')`

// EndedLive lists up to limit jobs that have live segments and ended
// before before.
func (s *Store) EndedLive(ctx context.Context, before time.Time, limit int) ([]string, error) {
	ids, err := collect(ctx, s.r, func(sc scanner) (string, error) {
		var id string
		return id, sc.Scan(&id)
	}, s.q(`SELECT DISTINCT l.job_id FROM live_segments l JOIN jobs j ON j.id = l.job_id
		WHERE `+endedBefore+` ORDER BY l.job_id LIMIT ?`), ms(before), limit)
	if err != nil {
		return nil, fmt.Errorf("ended live jobs: %w", err)
	}
	return ids, nil
}

// DeleteLive forgets a job's live segments if it still ended before
// before (not retried since it was listed by EndedLive); false when not.
func (s *Store) DeleteLive(ctx context.Context, jobID string, before time.Time) (bool, error) {
	res, err := s.w.ExecContext(ctx, s.q(`DELETE FROM live_segments WHERE job_id = ? AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = ?
		AND `+endedBefore+`)`), jobID, jobID, ms(before))
	if err != nil {
		return false, fmt.Errorf("delete live segments: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
