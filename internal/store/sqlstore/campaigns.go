package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// publishStream makes job jobID, which just succeeded, its stream's
// current job, unless a newer one is current already; whichever of the
// two is older is marked replaced by the other. It runs in the
// transaction that ends the job, so a stream's name never points at a job
// that has not been verified.
func (s *Store) publishStream(ctx context.Context, tx *sql.Tx, jobID string, now time.Time) error {
	var asset, profile string
	if err := tx.QueryRowContext(ctx, s.q(`SELECT asset_id, profile FROM jobs WHERE id = ?`), jobID).Scan(&asset, &profile); err != nil {
		return fmt.Errorf("read job's stream: %w", err)
	}
	if profile == "" {
		return nil // a health check makes no stream
	}
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO streams (asset_id, profile, job_id, switched_at) VALUES (?, ?, ?, ?) ON CONFLICT (asset_id, profile) DO NOTHING`),
		asset, profile, jobID, ms(now))
	if n, err := rowsAffected(res, err); err != nil {
		return fmt.Errorf("publish stream: %w", err)
	} else if n == 1 {
		return nil
	}
	var cur string
	if err := tx.QueryRowContext(ctx, s.q(`SELECT job_id FROM streams WHERE asset_id = ? AND profile = ? `+s.d.RowLock), asset, profile).Scan(&cur); err != nil {
		return fmt.Errorf("read stream: %w", err)
	}
	if cur == jobID {
		return nil
	}
	// The newer is the one with the higher profile version, then the one
	// created later: a retried old job does not displace a campaign's.
	var newer int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM jobs n, jobs c WHERE n.id = ? AND c.id = ?
		AND (n.profile_version > c.profile_version OR (n.profile_version = c.profile_version
		  AND (n.created_at > c.created_at OR (n.created_at = c.created_at AND n.id > c.id))))`), jobID, cur).Scan(&newer); err != nil {
		return fmt.Errorf("compare jobs: %w", err)
	}
	old, by := jobID, cur
	if newer == 1 {
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE streams SET job_id = ?, switched_at = ? WHERE asset_id = ? AND profile = ?`), jobID, ms(now), asset, profile); err != nil {
			return fmt.Errorf("switch stream: %w", err)
		}
		old, by = cur, jobID
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET replaced_by = ?, replaced_at = ? WHERE id = ?`), by, ms(now), old); err != nil {
		return fmt.Errorf("mark job replaced: %w", err)
	}
	return nil
}

// PublishedJobs lists the current job of each of profile's streams.
func (s *Store) PublishedJobs(ctx context.Context, profile string) ([]job.Job, error) {
	return collect(ctx, s.r, scanJob, s.q(`SELECT `+jobCols+` FROM streams st JOIN jobs j ON j.id = st.job_id JOIN assets a ON a.id = j.asset_id
		WHERE st.profile = ? ORDER BY j.created_at, j.id`), profile)
}

// StreamJob is the current job of a stream.
func (s *Store) StreamJob(ctx context.Context, assetID, profile string) (string, error) {
	var id string
	err := s.r.QueryRowContext(ctx, s.q(`SELECT job_id FROM streams WHERE asset_id = ? AND profile = ?`), assetID, profile).Scan(&id)
	return id, oneErr(err, "stream "+assetID+"/"+profile, "get stream")
}

// ReplacedBefore lists replaced jobs whose outputs are due to go.
func (s *Store) ReplacedBefore(ctx context.Context, before time.Time, limit int) ([]string, error) {
	return collect(ctx, s.r, func(sc scanner) (string, error) {
		var id string
		return id, sc.Scan(&id)
	}, s.q(`SELECT id FROM jobs WHERE replaced_at IS NOT NULL AND outputs_removed_at IS NULL AND replaced_at < ? ORDER BY replaced_at LIMIT ?`), ms(before), limit)
}

// OutputsRemoved records that a replaced job's outputs are gone.
func (s *Store) OutputsRemoved(ctx context.Context, id string, now time.Time) error {
	_, err := s.w.ExecContext(ctx, s.q(`UPDATE jobs SET outputs_removed_at = ? WHERE id = ? AND outputs_removed_at IS NULL`), ms(now), id)
	return err
}

// CreateCampaign stores a campaign and its items.
func (s *Store) CreateCampaign(ctx context.Context, c store.Campaign, jobIDs []string) error {
	filter, _ := json.Marshal(c.Filter)
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO campaigns (id, profile, from_version, to_version, state, filter, run_window, max_running, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), c.ID, c.Profile, c.FromVersion, c.ToVersion, c.State, string(filter), c.Window, c.MaxRunning,
			ms(c.CreatedAt), ms(c.CreatedAt)); err != nil {
			return fmt.Errorf("insert campaign: %w", err)
		}
		for i, id := range jobIDs {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO campaign_items (campaign_id, job_id, seq) VALUES (?, ?, ?)`), c.ID, id, i); err != nil {
				return fmt.Errorf("insert campaign item: %w", err)
			}
		}
		return nil
	})
}

const campaignCols = `c.id, c.profile, c.from_version, c.to_version, c.state, c.filter, c.run_window, c.max_running, c.created_at, c.updated_at, c.finished_at,
 COUNT(i.job_id),
 COALESCE(SUM(CASE WHEN i.job_id IS NOT NULL AND i.new_job_id = '' AND i.note = '' THEN 1 ELSE 0 END), 0),
 COALESCE(SUM(CASE WHEN n.state IN ('queued', 'running') THEN 1 ELSE 0 END), 0),
 COALESCE(SUM(CASE WHEN n.state = 'succeeded' THEN 1 ELSE 0 END), 0),
 COALESCE(SUM(CASE WHEN n.state IN ('failed', 'canceled') THEN 1 ELSE 0 END), 0),
 COALESCE(SUM(CASE WHEN i.new_job_id = '' AND i.note <> '' THEN 1 ELSE 0 END), 0)
 FROM campaigns c LEFT JOIN campaign_items i ON i.campaign_id = c.id LEFT JOIN jobs n ON n.id = i.new_job_id AND i.new_job_id <> ''`

func scanCampaign(sc scanner) (store.Campaign, error) {
	var (
		c                store.Campaign
		filter           string
		created, updated int64
		finished         sql.NullInt64
		n                = &c.Counts
	)
	if err := sc.Scan(&c.ID, &c.Profile, &c.FromVersion, &c.ToVersion, &c.State, &filter, &c.Window, &c.MaxRunning, &created, &updated, &finished,
		&n.Total, &n.Pending, &n.Running, &n.Succeeded, &n.Failed, &n.Skipped); err != nil {
		return c, err
	}
	if err := unmarshalOr(filter, &c.Filter); err != nil {
		return c, fmt.Errorf("decode campaign filter: %w", err)
	}
	c.CreatedAt, c.UpdatedAt, c.FinishedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC(), fromMS(finished)
	return c, nil
}

// GetCampaign returns one campaign.
func (s *Store) GetCampaign(ctx context.Context, id string) (store.Campaign, error) {
	return s.getCampaign(ctx, s.r, id)
}

func (s *Store) getCampaign(ctx context.Context, q querier, id string) (store.Campaign, error) {
	c, err := scanCampaign(q.QueryRowContext(ctx, s.q(`SELECT `+campaignCols+` WHERE c.id = ? GROUP BY c.id`), id))
	return c, oneErr(err, "campaign "+id, "get campaign")
}

// ListCampaigns lists the campaigns in state ("": all), newest first.
func (s *Store) ListCampaigns(ctx context.Context, state string) ([]store.Campaign, error) {
	cs, err := collect(ctx, s.r, scanCampaign, s.q(`SELECT `+campaignCols+` WHERE ? = '' OR c.state = ? GROUP BY c.id ORDER BY c.created_at DESC, c.id DESC`), state, state)
	return nonNil(cs), err
}

// CampaignItems lists a campaign's items in order.
func (s *Store) CampaignItems(ctx context.Context, id string) ([]store.CampaignItem, error) {
	items, err := collect(ctx, s.r, func(sc scanner) (store.CampaignItem, error) {
		var (
			it    store.CampaignItem
			src   sql.NullString
			state sql.NullString
		)
		if err := sc.Scan(&it.JobID, &it.NewJobID, &it.Note, &src, &state); err != nil {
			return it, err
		}
		var source job.Source
		if src.Valid && json.Unmarshal([]byte(src.String), &source) == nil {
			it.Name = source.Name
		}
		switch {
		case state.Valid:
			it.State = state.String
		case it.Note != "":
			it.State = store.ItemSkipped
		default:
			it.State = store.ItemPending
		}
		return it, nil
	}, s.q(`SELECT i.job_id, i.new_job_id, i.note, o.source, n.state FROM campaign_items i
		LEFT JOIN jobs o ON o.id = i.job_id LEFT JOIN jobs n ON n.id = i.new_job_id AND i.new_job_id <> ''
		WHERE i.campaign_id = ? ORDER BY i.seq`), id)
	return nonNil(items), err
}

// SetCampaignState moves a campaign from one of from into state.
func (s *Store) SetCampaignState(ctx context.Context, id string, from []string, state string, now time.Time) (store.Campaign, error) {
	var out store.Campaign
	err := s.tx(ctx, func(tx *sql.Tx) error {
		c, err := s.getCampaign(ctx, tx, id)
		if err != nil {
			return err
		}
		if c.State == state {
			out = c
			return nil
		}
		if !slices.Contains(from, c.State) {
			return fmt.Errorf("campaign %s is %s, not %s: %w", id, c.State, strings.Join(from, " or "), job.ErrConflict)
		}
		var finished any
		if state == store.CampaignDone || state == store.CampaignCanceled {
			finished = ms(now)
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE campaigns SET state = ?, updated_at = ?, finished_at = ? WHERE id = ?`), state, ms(now), finished, id); err != nil {
			return fmt.Errorf("set campaign state: %w", err)
		}
		out, err = s.getCampaign(ctx, tx, id)
		return err
	})
	return out, err
}

// AssignCampaignItem records an item's new job, or why it was skipped.
func (s *Store) AssignCampaignItem(ctx context.Context, id, jobID, newJobID, note string) (bool, error) {
	if (newJobID == "") == (note == "") {
		return false, errors.New("assign campaign item: give a new job or a note, not both")
	}
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE campaign_items SET new_job_id = ?, note = ? WHERE campaign_id = ? AND job_id = ? AND new_job_id = '' AND note = ''`),
		newJobID, note, id, jobID)
	n, err := rowsAffected(res, err)
	return n == 1, err
}
