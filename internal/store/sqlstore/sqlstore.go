// Package sqlstore implements store.Store over database/sql for SQLite (the
// embedded default) and PostgreSQL. The two differ only in their Dialect:
// placeholders, how a claim locks its row, and their numbered migrations.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/backoff"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// Dialect is what differs between SQL databases.
type Dialect struct {
	Name string
	// Numbered placeholders ($1) instead of ?.
	Dollar bool
	// ClaimLock is appended to the claim's inner SELECT (FOR UPDATE SKIP LOCKED on PostgreSQL).
	ClaimLock string
	// RowLock is appended to the SELECT that reads a job before changing its
	// tasks (FOR UPDATE on PostgreSQL), so that two tasks of one job finishing
	// at once cannot both miss that the other is done. SQLite has one writer.
	RowLock string
}

// Store is a store.Store over a *sql.DB. On SQLite, writes go through w (one
// connection: a single writer) and reads through r; on PostgreSQL both are the same pool.
type Store struct {
	w, r *sql.DB
	d    Dialect
}

var _ store.Store = (*Store)(nil)

func (s *Store) q(query string) string {
	if !s.d.Dollar {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Close closes the pools.
func (s *Store) Close() error {
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func msPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.UnixMilli(v.Int64).UTC()
	return &t
}

// rawJSON is a nullable JSON column's value: nil for NULL.
func rawJSON(v sql.NullString) json.RawMessage {
	if !v.Valid {
		return nil
	}
	return json.RawMessage(v.String)
}

// unmarshalOr decodes a JSON column into v, leaving v as it is when the
// column is empty.
func unmarshalOr(col string, v any) error {
	if col == "" {
		return nil
	}
	return json.Unmarshal([]byte(col), v)
}

func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

const jobCols = `j.id, j.state, j.profile, j.profile_version, j.idempotency_key, j.source, j.plan, j.outputs,
 j.progress, j.speed, j.error, j.error_code, j.created_at, j.started_at, j.finished_at, a.blob_key, j.chunk_seconds, j.publish, j.labels, j.watch,
 j.replaces, j.replaced_by, j.replaced_at, j.outputs_removed_at,
 (SELECT COALESCE(MAX(t.attempt), 0) FROM tasks t WHERE t.job_id = j.id)`

type scanner interface{ Scan(dest ...any) error }

// collect runs a query and reads every row it returns with scan, closing
// the rows: the one loop over *sql.Rows in the store. The slice is nil
// when there are no rows.
func collect[T any](ctx context.Context, q querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// oneErr is the error of reading one row: job.ErrNotFound, naming what,
// when there is no row; any other error wrapped with op.
func oneErr(err error, what, op string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s: %w", what, job.ErrNotFound)
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

func scanJob(sc scanner) (job.Job, error) {
	var (
		j                 job.Job
		src               string
		plan, outputs     sql.NullString
		created           int64
		started, finished sql.NullInt64
		replaced, removed sql.NullInt64
		state             string
		chunkSeconds      sql.NullFloat64
		publish           string
		labels, watch     string
	)
	if err := sc.Scan(&j.ID, &state, &j.Profile, &j.ProfileVersion, &j.IdempotencyKey, &src, &plan, &outputs,
		&j.Progress, &j.Speed, &j.Error, &j.ErrorCode, &created, &started, &finished, &j.AssetKey, &chunkSeconds, &publish, &labels, &watch,
		&j.Replaces, &j.ReplacedBy, &replaced, &removed, &j.Attempts); err != nil {
		return j, err
	}
	j.Publish = splitList(publish)
	if err := unmarshalOr(labels, &j.Labels); err != nil {
		return j, fmt.Errorf("decode job labels: %w", err)
	}
	if err := unmarshalOr(watch, &j.Watch); err != nil {
		return j, fmt.Errorf("decode job watch folder: %w", err)
	}
	if chunkSeconds.Valid {
		j.ChunkSeconds = &chunkSeconds.Float64
	}
	j.State = job.State(state)
	if err := json.Unmarshal([]byte(src), &j.Source); err != nil {
		return j, fmt.Errorf("decode job source: %w", err)
	}
	j.Plan, j.Outputs = rawJSON(plan), rawJSON(outputs)
	j.CreatedAt = time.UnixMilli(created).UTC()
	j.StartedAt, j.FinishedAt = fromMS(started), fromMS(finished)
	j.ReplacedAt, j.OutputsRemovedAt = fromMS(replaced), fromMS(removed)
	return j, nil
}

func (s *Store) getJob(ctx context.Context, q querier, id string) (job.Job, error) {
	j, err := scanJob(q.QueryRowContext(ctx, s.q(`SELECT `+jobCols+` FROM jobs j JOIN assets a ON a.id = j.asset_id WHERE j.id = ?`), id))
	return j, jobErr(id, err)
}

// lockJob reads a job and, on PostgreSQL, locks its row until the transaction ends.
func (s *Store) lockJob(ctx context.Context, tx *sql.Tx, id string) (job.Job, error) {
	if s.d.RowLock != "" {
		var one int
		err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM jobs WHERE id = ? `+s.d.RowLock), id).Scan(&one)
		if err != nil {
			return job.Job{}, jobErr(id, err)
		}
	}
	return s.getJob(ctx, tx, id)
}

func jobErr(id string, err error) error { return oneErr(err, "job "+id, "get job") }

// GetJob returns one job.
func (s *Store) GetJob(ctx context.Context, id string) (job.Job, error) {
	return s.getJob(ctx, s.r, id)
}

// CreateJob inserts a job with its tasks, or returns the live job with the same idempotency key.
func (s *Store) CreateJob(ctx context.Context, j job.Job, tasks []job.Task, now time.Time) (job.Job, bool, error) {
	out, created, err := s.createJob(ctx, j, tasks, now)
	if errors.Is(err, errMaybeDuplicate) {
		// Lost a race with the same request: the winner's job is the answer.
		return s.createJob(ctx, j, tasks, now)
	}
	return out, created, err
}

var errMaybeDuplicate = errors.New("job insert failed")

func (s *Store) createJob(ctx context.Context, j job.Job, tasks []job.Task, now time.Time) (job.Job, bool, error) {
	var out job.Job
	created := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var existing string
		err := tx.QueryRowContext(ctx, s.q(`SELECT id FROM jobs WHERE idempotency_key = ? AND state NOT IN ('failed', 'canceled')`), j.IdempotencyKey).Scan(&existing)
		switch {
		case err == nil:
			out, err = s.getJob(ctx, tx, existing)
			return err
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("find job by key: %w", err)
		}
		src, _ := json.Marshal(j.Source)
		var chunkSeconds any
		if j.ChunkSeconds != nil {
			chunkSeconds = *j.ChunkSeconds
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO jobs (id, state, profile, profile_version, idempotency_key, asset_id, source, chunk_seconds, publish, labels, watch, replaces, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			j.ID, string(job.Queued), j.Profile, j.ProfileVersion, j.IdempotencyKey, j.Source.AssetID, string(src), chunkSeconds, strings.Join(j.Publish, ","),
			jsonOr(j.Labels, ""), jsonOr(j.Watch, ""), j.Replaces, ms(now), ms(now)); err != nil {
			// A concurrent submit of the same request won the unique index (PostgreSQL).
			return fmt.Errorf("insert job: %w: %w", errMaybeDuplicate, err)
		}
		for i, t := range tasks {
			if t.Seconds == 0 && t.Kind == job.KindEncode {
				t.Seconds = j.Source.Duration // 0 until a probe has measured it; Complete fills it in then
			}
			if err := s.insertTask(ctx, tx, j.ID, j.Profile, i, t, len(t.DependsOn) == 0, now); err != nil {
				return err
			}
		}
		created = true
		if err := s.emit(ctx, tx, j.ID, job.EventQueued, nil, now); err != nil {
			return err
		}
		out, err = s.getJob(ctx, tx, j.ID)
		return err
	})
	return out, created, err
}

// insertTask inserts t as its job's seq'th task, queued or pending.
func (s *Store) insertTask(ctx context.Context, tx *sql.Tx, jobID, profile string, seq int, t job.Task, queued bool, now time.Time) error {
	deps, _ := json.Marshal(t.DependsOn)
	if t.DependsOn == nil {
		deps = []byte("[]")
	}
	state := job.TaskPending
	if queued {
		state = job.TaskQueued
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO tasks (id, job_id, seq, kind, state, depends_on, max_attempts, profile, needs, weight, seconds, chunk, run_after, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		t.ID, jobID, seq, string(t.Kind), string(state), string(deps), t.MaxAttempts, profile, strings.Join(t.Needs, ","), t.Share(), t.Seconds, t.Chunk, ms(now), ms(now)); err != nil {
		return fmt.Errorf("insert task: %w", err)
	}
	return nil
}

// expand applies a finished task's Expansion inside its transaction: the
// job's pending task of kind x.Replace gives its place (and its dependents)
// to x.Tasks. The new tasks stay pending; Complete queues the ready ones.
func (s *Store) expand(ctx context.Context, tx *sql.Tx, jobID, profile string, x job.Expansion) error {
	all, err := s.tasks(ctx, tx, jobID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(all, func(t job.Task) bool { return t.Kind == x.Replace && t.State == job.TaskPending })
	if i < 0 || len(x.Tasks) == 0 {
		return fmt.Errorf("expand job %s: no pending %s task to replace", jobID, x.Replace)
	}
	old := all[i]
	// The new tasks take the replaced one's place in the job (seq) and in
	// the queue (created_at, which orders tasks queued at the same time):
	// a job's tasks ready together are claimed in their order, not the
	// ones the job was created with first.
	var seq int
	var created int64
	if err := tx.QueryRowContext(ctx, s.q(`SELECT seq, created_at FROM tasks WHERE id = ?`), old.ID).Scan(&seq, &created); err != nil {
		return fmt.Errorf("expand job %s: %w", jobID, err)
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM tasks WHERE id = ?`), old.ID); err != nil {
		return fmt.Errorf("expand job %s: %w", jobID, err)
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE tasks SET seq = seq + ? WHERE job_id = ? AND seq > ?`), len(x.Tasks)-1, jobID, seq); err != nil {
		return fmt.Errorf("expand job %s: %w", jobID, err)
	}
	for k, t := range x.Tasks {
		if t.MaxAttempts == 0 {
			t.MaxAttempts = old.MaxAttempts
		}
		if i := slices.Index(t.DependsOn, job.InheritDeps); i >= 0 {
			t.DependsOn = slices.Concat(t.DependsOn[:i], old.DependsOn, t.DependsOn[i+1:])
		}
		if err := s.insertTask(ctx, tx, jobID, profile, seq+k, t, false, time.UnixMilli(created)); err != nil {
			return err
		}
	}
	ends := x.Ends()
	for _, t := range all[i+1:] {
		k := slices.Index(t.DependsOn, old.ID)
		if k < 0 {
			continue
		}
		deps := slices.Replace(slices.Clone(t.DependsOn), k, k+1, ends...)
		b, _ := json.Marshal(deps)
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE tasks SET depends_on = ? WHERE id = ?`), string(b), t.ID); err != nil {
			return fmt.Errorf("expand job %s: %w", jobID, err)
		}
	}
	return nil
}

// ListJobs pages through jobs newest first. The cursor is the last id seen.
func (s *Store) ListJobs(ctx context.Context, opt store.ListOptions) ([]job.Job, string, error) {
	limit := opt.Limit
	if limit <= 0 || limit > 500 {
		limit = 50
	}
	where := []string{"1=1"}
	var args []any
	if opt.State != "" {
		where = append(where, "j.state = ?")
		args = append(args, string(opt.State))
	}
	if opt.Profile != "" {
		where = append(where, "j.profile = ?")
		args = append(args, opt.Profile)
	}
	if opt.Cursor != "" {
		where = append(where, "j.id < ?")
		args = append(args, opt.Cursor)
	}
	args = append(args, limit+1)
	jobs, err := collect(ctx, s.r, scanJob, s.q(`SELECT `+jobCols+` FROM jobs j JOIN assets a ON a.id = j.asset_id WHERE `+
		strings.Join(where, " AND ")+` ORDER BY j.id DESC LIMIT ?`), args...)
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	next := ""
	if len(jobs) > limit {
		jobs = jobs[:limit]
		next = jobs[limit-1].ID
	}
	return jobs, next, nil
}

const taskCols = `id, job_id, kind, state, depends_on, attempt, max_attempts, profile, needs, progress, speed, seconds, chunk, weight, worker,
 lease_owner, lease_expires, fence, run_after, error, started_at, finished_at, commands, result`

func scanTask(sc scanner) (job.Task, error) {
	var (
		t                        job.Task
		kind, state, deps, needs string
		cmds                     string
		result                   sql.NullString
		lease, started, finished sql.NullInt64
		runAfter                 int64
	)
	if err := sc.Scan(&t.ID, &t.JobID, &kind, &state, &deps, &t.Attempt, &t.MaxAttempts, &t.Profile, &needs, &t.Progress, &t.Speed,
		&t.Seconds, &t.Chunk, &t.Weight, &t.Worker, &t.LeaseOwner, &lease, &t.Fence, &runAfter, &t.Error, &started, &finished, &cmds, &result); err != nil {
		return t, err
	}
	t.Kind, t.State = job.Kind(kind), job.TaskState(state)
	if err := json.Unmarshal([]byte(deps), &t.DependsOn); err != nil {
		return t, fmt.Errorf("decode depends_on: %w", err)
	}
	if needs != "" {
		t.Needs = strings.Split(needs, ",")
	}
	if err := json.Unmarshal([]byte(cmds), &t.Commands); err != nil {
		return t, fmt.Errorf("decode commands: %w", err)
	}
	t.Result = rawJSON(result)
	t.LeaseExpiry, t.StartedAt, t.FinishedAt = fromMS(lease), fromMS(started), fromMS(finished)
	t.RunAfter = time.UnixMilli(runAfter).UTC()
	return t, nil
}

func (s *Store) tasks(ctx context.Context, q querier, jobID string) ([]job.Task, error) {
	ts, err := collect(ctx, q, scanTask, s.q(`SELECT `+taskCols+` FROM tasks WHERE job_id = ? ORDER BY seq`), jobID)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return ts, nil
}

// Tasks lists a job's tasks in pipeline order.
func (s *Store) Tasks(ctx context.Context, jobID string) ([]job.Task, error) {
	return s.tasks(ctx, s.r, jobID)
}

// refreshJob recomputes a job's progress and state from its tasks after any
// task change, inside the same transaction.
func (s *Store) refreshJob(ctx context.Context, tx *sql.Tx, jobID string, now time.Time) error {
	ts, err := s.tasks(ctx, tx, jobID)
	if err != nil {
		return err
	}
	var done, total, speed float64
	all, any := true, false
	for _, t := range ts {
		w := t.Share()
		total += w
		switch t.State {
		case job.TaskSucceeded:
			done += w
			any = true
		case job.TaskRunning:
			done += w * t.Progress
			any = true
			all = false
		default:
			all = false
		}
		if t.Kind.Encodes() && t.State == job.TaskRunning {
			speed += t.Speed // chunks encode side by side
		}
	}
	progress := 0.0
	if total > 0 {
		progress = done / total
	}
	if all {
		var res sql.Result
		res, err = tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = ?, progress = 1, speed = 0, finished_at = ?, updated_at = ? WHERE id = ? AND state IN ('queued', 'running')`),
			string(job.Succeeded), ms(now), ms(now), jobID)
		if n, _ := rowsAffected(res, err); n == 1 {
			if err = s.emit(ctx, tx, jobID, job.EventSucceeded, nil, now); err == nil {
				err = s.publishStream(ctx, tx, jobID, now)
			}
		}
	} else if any {
		var res sql.Result
		res, err = tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = 'running', progress = ?, speed = ?, started_at = COALESCE(started_at, ?), updated_at = ? WHERE id = ? AND state IN ('queued', 'running')`),
			progress, speed, ms(now), ms(now), jobID)
		if n, _ := rowsAffected(res, err); n == 1 {
			err = s.progressed(ctx, tx, jobID, progress, now)
		}
	} else {
		_, err = tx.ExecContext(ctx, s.q(`UPDATE jobs SET progress = ?, speed = 0, updated_at = ? WHERE id = ? AND state IN ('queued', 'running')`),
			progress, ms(now), jobID)
	}
	if err != nil {
		return fmt.Errorf("refresh job: %w", err)
	}
	return nil
}

// Claim leases the oldest runnable task whose needs the worker meets, of
// one of req.Kinds when that is not nil.
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) (*job.Claimed, error) {
	if req.Kinds != nil && len(req.Kinds) == 0 {
		return nil, nil // no kind allowed: nothing to claim ("IN ()" is not SQL)
	}
	var out *job.Claimed
	err := s.tx(ctx, func(tx *sql.Tx) error {
		needs := []string{"''"}
		args := []any{req.Owner, ms(req.Now.Add(req.TTL)), req.Worker, ms(req.Now), ms(req.Now)}
		for _, c := range req.Caps {
			needs = append(needs, "?")
			args = append(args, c)
		}
		kinds := ""
		if req.Kinds != nil {
			marks := make([]string, len(req.Kinds))
			for i, k := range req.Kinds {
				marks[i] = "?"
				args = append(args, string(k))
			}
			kinds = ` AND kind IN (` + strings.Join(marks, ", ") + `)`
		}
		row := tx.QueryRowContext(ctx, s.q(`UPDATE tasks SET state = 'running', lease_owner = ?, lease_expires = ?, worker = ?,
			fence = fence + 1, attempt = attempt + 1, started_at = ?, finished_at = NULL, progress = 0, speed = 0, error = ''
			WHERE id = (SELECT id FROM tasks WHERE state = 'queued' AND run_after <= ? AND needs IN (`+strings.Join(needs, ", ")+`)`+kinds+`
			ORDER BY run_after, created_at, seq LIMIT 1 `+s.d.ClaimLock+`)
			RETURNING `+taskCols), args...)
		t, err := scanTask(row)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("claim task: %w", err)
		}
		j, err := s.getJob(ctx, tx, t.JobID)
		if err != nil {
			return err
		}
		deps := map[job.Kind]json.RawMessage{}
		if len(t.DependsOn) > 0 {
			all, err := s.tasks(ctx, tx, t.JobID)
			if err != nil {
				return err
			}
			deps = job.DepResults(t, all)
		}
		// Only the first claim of a job changes the job row; claimers of the
		// job's other tasks then find nothing to update and take no row lock.
		// A job row locked by a concurrent cancel is skipped, not waited for
		// (the claim holds the task row, the cancel the job row: waiting
		// would deadlock); the next refresh marks the job running.
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = 'running', started_at = ?, updated_at = ?
			WHERE id IN (SELECT id FROM jobs WHERE id = ? AND state = 'queued' `+s.d.ClaimLock+`)`),
			ms(req.Now), ms(req.Now), t.JobID); err != nil {
			return fmt.Errorf("start job: %w", err)
		}
		if j.State == job.Queued {
			j.State, j.StartedAt = job.Running, &req.Now
		}
		out = &job.Claimed{Task: t, Job: j, Lease: job.Lease{TaskID: t.ID, Owner: req.Owner, Fence: t.Fence}, Deps: deps}
		return nil
	})
	return out, err
}

// leased checks, inside tx, that l still holds its task.
func (s *Store) leased(ctx context.Context, tx *sql.Tx, l job.Lease) (job.Task, error) {
	var jobID string
	err := tx.QueryRowContext(ctx, s.q(`SELECT job_id FROM tasks WHERE id = ?`), l.TaskID).Scan(&jobID)
	if err != nil {
		return job.Task{}, oneErr(err, "task "+l.TaskID, "load task")
	}
	if _, err := s.lockJob(ctx, tx, jobID); err != nil {
		return job.Task{}, err
	}
	t, err := scanTask(tx.QueryRowContext(ctx, s.q(`SELECT `+taskCols+` FROM tasks WHERE id = ?`), l.TaskID))
	if err != nil {
		return t, fmt.Errorf("load task: %w", err)
	}
	if t.State != job.TaskRunning || t.Fence != l.Fence || t.LeaseOwner != l.Owner {
		return t, fmt.Errorf("task %s fence %d: %w", l.TaskID, l.Fence, job.ErrLeaseLost)
	}
	return t, nil
}

// Heartbeat extends the lease and records progress.
func (s *Store) Heartbeat(ctx context.Context, l job.Lease, p job.Progress, now time.Time, ttl time.Duration) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		t, err := s.leased(ctx, tx, l)
		if err != nil {
			return err
		}
		prog := min(max(p.Progress, 0), 1)
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE tasks SET lease_expires = ?, progress = ?, speed = ? WHERE id = ? AND fence = ?`),
			ms(now.Add(ttl)), prog, p.Speed, l.TaskID, l.Fence); err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		return s.refreshJob(ctx, tx, t.JobID, now)
	})
}

// Complete marks a task done, applies its result to the job and queues the tasks that waited on it.
func (s *Store) Complete(ctx context.Context, l job.Lease, r job.Result, now time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		t, err := s.leased(ctx, tx, l)
		if err != nil {
			return err
		}
		cmds := jsonOr(r.Commands, "[]")
		var result any
		if r.Data != nil {
			result = string(r.Data)
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE tasks SET state = 'succeeded', progress = 1, speed = 0, lease_owner = '', lease_expires = NULL,
			finished_at = ?, commands = ?, result = ? WHERE id = ?`), ms(now), cmds, result, t.ID); err != nil {
			return fmt.Errorf("complete task: %w", err)
		}
		if r.Source != nil {
			src, _ := json.Marshal(r.Source)
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET source = ? WHERE id = ?`), string(src), t.JobID); err != nil {
				return fmt.Errorf("update job source: %w", err)
			}
			// The duration is known now: encode tasks made without their
			// own length encode all of it (the queue's backlog counts it).
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE tasks SET seconds = ? WHERE job_id = ? AND kind = 'encode' AND seconds = 0`),
				max(r.Source.Duration, 0), t.JobID); err != nil {
				return fmt.Errorf("record encode seconds: %w", err)
			}
		}
		if r.Plan != nil {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET plan = ? WHERE id = ?`), string(r.Plan), t.JobID); err != nil {
				return fmt.Errorf("update job plan: %w", err)
			}
		}
		if r.Outputs != nil {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET outputs = ? WHERE id = ?`), string(r.Outputs), t.JobID); err != nil {
				return fmt.Errorf("update job outputs: %w", err)
			}
		}
		if r.Expand != nil {
			if err := s.expand(ctx, tx, t.JobID, t.Profile, *r.Expand); err != nil {
				return err
			}
		}
		// Queue every pending task whose dependencies have all succeeded.
		all, err := s.tasks(ctx, tx, t.JobID)
		if err != nil {
			return err
		}
		done := map[string]bool{}
		for _, x := range all {
			done[x.ID] = x.State == job.TaskSucceeded || x.ID == t.ID
		}
		for _, x := range all {
			if x.State != job.TaskPending {
				continue
			}
			ready := true
			for _, d := range x.DependsOn {
				ready = ready && done[d]
			}
			if ready {
				if _, err := tx.ExecContext(ctx, s.q(`UPDATE tasks SET state = 'queued', run_after = ? WHERE id = ?`), ms(now), x.ID); err != nil {
					return fmt.Errorf("queue task: %w", err)
				}
			}
		}
		if t.Kind == job.KindChunk {
			if err := s.emit(ctx, tx, t.JobID, job.EventChunkSucceeded, chunkDone(t, all), now); err != nil {
				return err
			}
		}
		return s.refreshJob(ctx, tx, t.JobID, now)
	})
}

// chunkDone is a chunk.succeeded event's data: which chunk of how many,
// how many have succeeded, the seconds of source it encoded and where.
func chunkDone(t job.Task, all []job.Task) map[string]any {
	chunks, done := 0, 0
	for _, x := range all {
		if x.Kind == job.KindChunk {
			chunks++
			if x.State == job.TaskSucceeded || x.ID == t.ID {
				done++
			}
		}
	}
	return map[string]any{"chunk": t.Chunk, "chunks": chunks, "succeeded": done, "seconds": t.Seconds, "worker": t.Worker}
}

func jsonOr(v any, empty string) string {
	b, err := json.Marshal(v)
	if err != nil || string(b) == "null" {
		return empty
	}
	return string(b)
}

// Fail records a failed attempt: retried with backoff, or, when permanent or
// past the attempt cap, the task and its job fail and every other task stops.
func (s *Store) Fail(ctx context.Context, l job.Lease, f job.Failure, now time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		t, err := s.leased(ctx, tx, l)
		if err != nil {
			return err
		}
		return s.failTask(ctx, tx, t, f, now)
	})
}

func (s *Store) failTask(ctx context.Context, tx *sql.Tx, t job.Task, f job.Failure, now time.Time) error {
	cmds := jsonOr(f.Commands, "[]")
	if !f.Permanent && t.Attempt < t.MaxAttempts {
		runAfter := now.Add(backoff.Delay(cmp(f.Backoff, 2*time.Second), job.MaxRetryDelay, t.Attempt))
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE tasks SET state = 'queued', lease_owner = '', lease_expires = NULL, progress = 0, speed = 0,
			error = ?, run_after = ?, commands = ? WHERE id = ?`), f.Message, ms(runAfter), cmds, t.ID); err != nil {
			return fmt.Errorf("requeue task: %w", err)
		}
		return s.refreshJob(ctx, tx, t.JobID, now)
	}
	msg := f.Message
	if !f.Permanent {
		msg = fmt.Sprintf("%s (gave up after %d attempts)", f.Message, t.Attempt)
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE tasks SET state = 'failed', lease_owner = '', lease_expires = NULL, speed = 0,
		error = ?, finished_at = ?, commands = ? WHERE id = ?`), msg, ms(now), cmds, t.ID); err != nil {
		return fmt.Errorf("fail task: %w", err)
	}
	return s.endJob(ctx, tx, t.JobID, job.Failed, msg, f.Code, now)
}

func cmp(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// endJob moves a job to a final state and stops every task that has not finished:
// nothing waits forever on a task that will never run.
func (s *Store) endJob(ctx context.Context, tx *sql.Tx, jobID string, state job.State, msg, code string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE tasks SET state = 'canceled', lease_owner = '', lease_expires = NULL, speed = 0, finished_at = ?
		WHERE job_id = ? AND state IN ('pending', 'queued', 'running')`), ms(now), jobID); err != nil {
		return fmt.Errorf("stop tasks: %w", err)
	}
	res, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = ?, error = ?, error_code = ?, speed = 0, finished_at = ?, updated_at = ?
		WHERE id = ? AND state IN ('queued', 'running')`), string(state), msg, code, ms(now), ms(now), jobID)
	n, err := rowsAffected(res, err)
	if err != nil {
		return fmt.Errorf("end job: %w", err)
	}
	if n == 0 {
		return nil // it had ended already: no second event
	}
	event := job.EventFailed
	if state == job.Canceled {
		event = job.EventCanceled
	}
	return s.emit(ctx, tx, jobID, event, nil, now)
}

// Release gives a task back to the queue without counting the attempt.
func (s *Store) Release(ctx context.Context, l job.Lease, now time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		t, err := s.leased(ctx, tx, l)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE tasks SET state = 'queued', lease_owner = '', lease_expires = NULL, progress = 0, speed = 0,
			attempt = attempt - 1, run_after = ? WHERE id = ?`), ms(now), t.ID); err != nil {
			return fmt.Errorf("release task: %w", err)
		}
		return s.refreshJob(ctx, tx, t.JobID, now)
	})
}

// stillLeased locks t's job and re-reads t: the copy found before the lock
// may be stale (PostgreSQL). ok is false when t no longer runs under the same lease.
func (s *Store) stillLeased(ctx context.Context, tx *sql.Tx, t job.Task) (job.Task, bool, error) {
	if _, err := s.lockJob(ctx, tx, t.JobID); err != nil {
		return t, false, err
	}
	cur, err := scanTask(tx.QueryRowContext(ctx, s.q(`SELECT `+taskCols+` FROM tasks WHERE id = ?`), t.ID))
	if err != nil {
		return t, false, fmt.Errorf("reload task: %w", err)
	}
	return cur, cur.State == job.TaskRunning && cur.Fence == t.Fence && cur.LeaseOwner == t.LeaseOwner, nil
}

// ReapExpired treats every expired lease as a lost worker: a retryable failure.
func (s *Store) ReapExpired(ctx context.Context, now time.Time, backoff time.Duration) (int, error) {
	return s.failLost(ctx, now, "lease_expires < ?", ms(now), func(t job.Task) (job.Failure, bool) {
		if t.LeaseExpiry == nil || !t.LeaseExpiry.Before(now) {
			return job.Failure{}, false // a heartbeat came while we waited for the job's lock
		}
		return job.Failure{Message: fmt.Sprintf("worker %s stopped answering (lease expired)", t.Worker), Code: "worker_lost", Backoff: backoff}, true
	})
}

// ReleaseOwners gives back the leases of executors that cannot be alive.
func (s *Store) ReleaseOwners(ctx context.Context, prefix string, now time.Time) (int, error) {
	return s.releaseOwners(ctx, prefix, now, "the server restarted while this task ran")
}

func (s *Store) releaseOwners(ctx context.Context, prefix string, now time.Time, why string) (int, error) {
	return s.failLost(ctx, now, `lease_owner LIKE ? ESCAPE '\'`, likePrefix(prefix), func(job.Task) (job.Failure, bool) {
		// The attempt did run (and may have crashed the process), so it counts.
		return job.Failure{Message: why, Code: "worker_lost", Backoff: time.Millisecond}, true
	})
}

// failLost fails, in one transaction, the running tasks that where (with
// its one argument) selects and whose worker lost says is gone, and says
// how many. lost sees each task as it is once its job is locked; a task
// that finished or changed hands meanwhile is left alone.
func (s *Store) failLost(ctx context.Context, now time.Time, where string, arg any, lost func(job.Task) (job.Failure, bool)) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		ts, err := collect(ctx, tx, scanTask, s.q(`SELECT `+taskCols+` FROM tasks WHERE state = 'running' AND `+where), arg)
		if err != nil {
			return fmt.Errorf("find leases: %w", err)
		}
		for _, t := range ts {
			t, ok, err := s.stillLeased(ctx, tx, t)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			f, ok := lost(t)
			if !ok {
				continue
			}
			if err := s.failTask(ctx, tx, t, f, now); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// likePrefix is a LIKE pattern (with ESCAPE '\\') matching strings that start with p.
func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(p) + "%"
}

// NextWake is when the earliest queued task becomes runnable.
func (s *Store) NextWake(ctx context.Context) (time.Time, error) {
	var v sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT MIN(run_after) FROM tasks WHERE state = 'queued'`).Scan(&v); err != nil {
		return time.Time{}, fmt.Errorf("next wake: %w", err)
	}
	if !v.Valid {
		return time.Time{}, nil
	}
	return time.UnixMilli(v.Int64), nil
}

// CancelJob cancels a job that has not finished.
func (s *Store) CancelJob(ctx context.Context, id string, now time.Time) (job.Job, error) {
	return s.changeJob(ctx, id, func(tx *sql.Tx, j job.Job) error {
		if j.State.Final() {
			return fmt.Errorf("job %s is already %s: %w", id, j.State, job.ErrConflict)
		}
		return s.endJob(ctx, tx, id, job.Canceled, "canceled by request", "canceled", now)
	})
}

// RetryJob queues a failed or canceled job again. Tasks that succeeded keep their results.
func (s *Store) RetryJob(ctx context.Context, id string, now time.Time) (job.Job, error) {
	return s.changeJob(ctx, id, func(tx *sql.Tx, j job.Job) error {
		if j.State != job.Failed && j.State != job.Canceled {
			return fmt.Errorf("job %s is %s; only failed or canceled jobs can be retried: %w", id, j.State, job.ErrConflict)
		}
		var live string
		err := tx.QueryRowContext(ctx, s.q(`SELECT id FROM jobs WHERE idempotency_key = ? AND state NOT IN ('failed', 'canceled')`), j.IdempotencyKey).Scan(&live)
		if err == nil {
			return fmt.Errorf("job %s already makes the same outputs from the same source: %w", live, job.ErrConflict)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("find live job: %w", err)
		}
		ts, err := s.tasks(ctx, tx, id)
		if err != nil {
			return err
		}
		done := map[string]bool{}
		for _, t := range ts {
			done[t.ID] = t.State == job.TaskSucceeded
		}
		for _, t := range ts {
			if done[t.ID] {
				continue
			}
			state := job.TaskQueued
			for _, d := range t.DependsOn {
				if !done[d] {
					state = job.TaskPending
				}
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE tasks SET state = ?, attempt = 0, progress = 0, error = '', run_after = ?,
				started_at = NULL, finished_at = NULL WHERE id = ?`), string(state), ms(now), t.ID); err != nil {
				return fmt.Errorf("reset task: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = 'queued', error = '', error_code = '', finished_at = NULL, updated_at = ? WHERE id = ?`),
			ms(now), id); err != nil {
			return fmt.Errorf("requeue job: %w", err)
		}
		// The run that ended ended its live playlists (EXT-X-ENDLIST): the
		// new run's start afresh rather than grow them again.
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM live_segments WHERE job_id = ?`), id); err != nil {
			return fmt.Errorf("forget live segments: %w", err)
		}
		if err := s.emit(ctx, tx, id, job.EventQueued, nil, now); err != nil {
			return err
		}
		return s.refreshJob(ctx, tx, id, now)
	})
}

// changeJob runs change on job id in one transaction, with the job's row
// locked, and returns the job as change left it.
func (s *Store) changeJob(ctx context.Context, id string, change func(tx *sql.Tx, j job.Job) error) (job.Job, error) {
	var out job.Job
	err := s.tx(ctx, func(tx *sql.Tx) error {
		j, err := s.lockJob(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := change(tx, j); err != nil {
			return err
		}
		out, err = s.getJob(ctx, tx, id)
		return err
	})
	return out, err
}

// Stats counts jobs by state and queued tasks by profile.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	st := store.Stats{JobsByState: map[job.State]int{}, QueueByProfile: map[string]int{}}
	type count struct {
		profile, state string
		n              int
	}
	jobs, err := collect(ctx, s.r, func(sc scanner) (count, error) {
		var c count
		err := sc.Scan(&c.state, &c.n)
		return c, err
	}, `SELECT state, COUNT(*) FROM jobs GROUP BY state`)
	if err != nil {
		return st, fmt.Errorf("count jobs: %w", err)
	}
	for _, c := range jobs {
		st.JobsByState[job.State(c.state)] = c.n
	}
	tasks, err := collect(ctx, s.r, func(sc scanner) (count, error) {
		var c count
		err := sc.Scan(&c.profile, &c.state, &c.n)
		return c, err
	}, `SELECT profile, state, COUNT(*) FROM tasks WHERE state IN ('queued', 'running') GROUP BY profile, state`)
	if err != nil {
		return st, fmt.Errorf("count tasks: %w", err)
	}
	for _, c := range tasks {
		if c.state == string(job.TaskQueued) {
			st.QueueByProfile[c.profile] += c.n
		} else {
			st.RunningTasks += c.n
		}
	}
	d, err := s.Depth(ctx) // the one home of the backlog's formula
	if err != nil {
		return st, err
	}
	st.EncodeBacklog = d.EncodeBacklog
	return st, nil
}

// Depth measures the open work in one aggregate over the open tasks (the
// tasks_claim index) and the open jobs (jobs_state_created): its cost grows
// with the work waiting, not with the history kept.
func (s *Store) Depth(ctx context.Context) (store.Depth, error) {
	var d store.Depth
	err := s.r.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM jobs WHERE state = 'queued'),
		(SELECT COUNT(*) FROM jobs WHERE state = 'running'),
		COUNT(CASE WHEN state = 'queued' THEN 1 END),
		COUNT(CASE WHEN state = 'running' THEN 1 END),
		COALESCE(SUM(CASE WHEN kind IN ('encode', 'chunk') THEN seconds * (1 - progress) ELSE 0 END), 0)
		FROM tasks WHERE state IN ('pending', 'queued', 'running')`).Scan(&d.JobsQueued, &d.JobsRunning, &d.QueuedTasks, &d.RunningTasks, &d.EncodeBacklog)
	if err != nil {
		return d, fmt.Errorf("queue depth: %w", err)
	}
	return d, nil
}

// Throughput counts ended jobs per clock hour (finished_at is in ms).
func (s *Store) Throughput(ctx context.Context, since time.Time) ([]store.HourCount, error) {
	type count struct {
		h     int64
		state string
		n     int
		speed sql.NullFloat64
	}
	counts, err := collect(ctx, s.r, func(sc scanner) (count, error) {
		var c count
		err := sc.Scan(&c.h, &c.state, &c.n, &c.speed)
		return c, err
	}, s.q(`SELECT finished_at / 3600000 AS h, state, COUNT(*), AVG(CASE WHEN speed > 0 THEN speed END)
		FROM jobs WHERE finished_at >= ? AND state IN ('succeeded', 'failed') GROUP BY h, state ORDER BY h`), ms(since))
	if err != nil {
		return nil, fmt.Errorf("throughput: %w", err)
	}
	var out []store.HourCount
	for _, n := range counts {
		hour := time.UnixMilli(n.h * 3600000).UTC()
		if len(out) == 0 || !out[len(out)-1].Hour.Equal(hour) {
			out = append(out, store.HourCount{Hour: hour})
		}
		c := &out[len(out)-1]
		if n.state == string(job.Succeeded) {
			c.Succeeded, c.Speed = n.n, n.speed.Float64
		} else {
			c.Failed = n.n
		}
	}
	return out, nil
}

// PutAsset stores an asset, or returns the one with the same sha256.
func (s *Store) PutAsset(ctx context.Context, a job.Asset) (job.Asset, error) {
	out, err := s.putAsset(ctx, a)
	if errors.Is(err, errMaybeDuplicate) {
		// The same bytes were stored by a concurrent upload (PostgreSQL).
		return s.AssetBySHA(ctx, a.SHA256)
	}
	return out, err
}

func (s *Store) putAsset(ctx context.Context, a job.Asset) (job.Asset, error) {
	var out job.Asset
	err := s.tx(ctx, func(tx *sql.Tx) error {
		got, err := s.assetBySHA(ctx, tx, a.SHA256)
		if err == nil {
			out = got
			return nil
		}
		if !errors.Is(err, job.ErrNotFound) {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO assets (id, name, size, sha256, blob_key, created_at) VALUES (?, ?, ?, ?, ?, ?)`),
			a.ID, a.Name, a.Size, a.SHA256, a.Key, ms(a.CreatedAt)); err != nil {
			return fmt.Errorf("insert asset: %w: %w", errMaybeDuplicate, err)
		}
		out = a
		return nil
	})
	return out, err
}

// AssetBySHA finds an asset by content.
func (s *Store) AssetBySHA(ctx context.Context, sha string) (job.Asset, error) {
	return s.assetBySHA(ctx, s.r, sha)
}

func (s *Store) assetBySHA(ctx context.Context, q querier, sha string) (job.Asset, error) {
	var a job.Asset
	var created int64
	err := q.QueryRowContext(ctx, s.q(`SELECT id, name, size, sha256, blob_key, created_at FROM assets WHERE sha256 = ?`), sha).
		Scan(&a.ID, &a.Name, &a.Size, &a.SHA256, &a.Key, &created)
	if err != nil {
		return a, oneErr(err, "asset "+sha, "get asset")
	}
	a.CreatedAt = time.UnixMilli(created).UTC()
	return a, nil
}

// CreateKey stores a credential's hash.
func (s *Store) CreateKey(ctx context.Context, k store.Key) error {
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO keys (id, kind, name, hash, created_at, expires_at, revoked, parent_id, last_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		k.ID, k.Kind, k.Name, k.Hash, ms(k.CreatedAt), msPtr(k.ExpiresAt), boolInt(k.Revoked), k.Parent, msPtr(k.LastUsed))
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	return nil
}

// keyCols reads a key with whether the key that made it still lives (a
// parent that is gone, swept or deleted, has ended too).
const keyCols = `k.id, k.kind, k.name, k.hash, k.created_at, k.expires_at, k.revoked, k.parent_id, k.last_used,
 CASE WHEN k.parent_id = '' THEN 0 WHEN p.id IS NULL THEN 1 ELSE p.revoked END
 FROM keys k LEFT JOIN keys p ON p.id = k.parent_id`

func scanKey(sc scanner) (store.Key, error) {
	var (
		k              store.Key
		created        int64
		expires, used  sql.NullInt64
		revoked, ended int
	)
	if err := sc.Scan(&k.ID, &k.Kind, &k.Name, &k.Hash, &created, &expires, &revoked, &k.Parent, &used, &ended); err != nil {
		return k, err
	}
	k.CreatedAt = time.UnixMilli(created).UTC()
	k.ExpiresAt, k.LastUsed = fromMS(expires), fromMS(used)
	k.Revoked, k.ParentEnded = revoked != 0, ended != 0
	return k, nil
}

// KeyByHash finds a credential by its hash.
func (s *Store) KeyByHash(ctx context.Context, hash string) (store.Key, error) {
	return s.keyWhere(ctx, s.r, `k.hash = ?`, hash)
}

func (s *Store) keyWhere(ctx context.Context, q querier, where string, arg any) (store.Key, error) {
	k, err := scanKey(q.QueryRowContext(ctx, s.q(`SELECT `+keyCols+` WHERE `+where), arg))
	return k, oneErr(err, "key", "get key")
}

// ListKeys lists every key, oldest first.
func (s *Store) ListKeys(ctx context.Context) ([]store.Key, error) {
	keys, err := collect(ctx, s.r, scanKey, `SELECT `+keyCols+` ORDER BY k.created_at, k.id`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return nonNil(keys), nil
}

// CountKeys counts live keys of a kind.
func (s *Store) CountKeys(ctx context.Context, kind string) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM keys WHERE kind = ? AND revoked = 0`), kind).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count keys: %w", err)
	}
	return n, nil
}

// ConsumeKey revokes a key once.
func (s *Store) ConsumeKey(ctx context.Context, id string) (bool, error) {
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE keys SET revoked = 1 WHERE id = ? AND revoked = 0`), id)
	if err != nil {
		return false, fmt.Errorf("consume key: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// RevokeKey revokes a key and returns it.
func (s *Store) RevokeKey(ctx context.Context, id string) (store.Key, error) {
	var k store.Key
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE keys SET revoked = 1 WHERE id = ?`), id); err != nil {
			return fmt.Errorf("revoke key: %w", err)
		}
		var err error
		k, err = s.keyWhere(ctx, tx, `k.id = ?`, id)
		return err
	})
	return k, err
}

// Secret returns the secret named name, storing mint first when there is
// none (the insert loses quietly to another replica's).
func (s *Store) Secret(ctx context.Context, name string, mint []byte, now time.Time) ([]byte, error) {
	if _, err := s.w.ExecContext(ctx, s.q(`INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`),
		name, hex.EncodeToString(mint), ms(now)); err != nil {
		return nil, fmt.Errorf("store secret %s: %w", name, err)
	}
	var v string
	if err := s.w.QueryRowContext(ctx, s.q(`SELECT value FROM secrets WHERE name = ?`), name).Scan(&v); err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	return b, nil
}

// RecordProfile stores a profile version unless the newest stored one has
// the same digest (and atLeast does not ask for a higher number). Servers
// that record at once race for the next number: the loser reads again.
func (s *Store) RecordProfile(ctx context.Context, name, digest string, atLeast int, body []byte) (int, error) {
	for range 5 {
		var (
			latest int
			was    string
		)
		err := s.w.QueryRowContext(ctx, s.q(`SELECT version, digest FROM profile_versions WHERE name = ? ORDER BY version DESC LIMIT 1`), name).Scan(&latest, &was)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("read profile %s versions: %w", name, err)
		}
		if latest > 0 && was == digest && atLeast <= latest {
			return latest, nil
		}
		next := max(latest+1, atLeast)
		res, err := s.w.ExecContext(ctx, s.q(`INSERT INTO profile_versions (name, version, digest, body, created_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (name, version) DO NOTHING`), name, next, digest, string(body), ms(time.Now()))
		if err != nil {
			return 0, fmt.Errorf("store profile %s version %d: %w", name, next, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			return next, nil
		}
	}
	return 0, fmt.Errorf("store profile %s: other servers keep adding versions; try again", name)
}

// ProfileVersion returns the body of one stored profile version.
func (s *Store) ProfileVersion(ctx context.Context, name string, version int) ([]byte, error) {
	var body string
	err := s.r.QueryRowContext(ctx, s.q(`SELECT body FROM profile_versions WHERE name = ? AND version = ?`), name, version).Scan(&body)
	if err != nil {
		return nil, oneErr(err, fmt.Sprintf("profile %s version %d", name, version), "read profile version")
	}
	return []byte(body), nil
}

// RotateSecret replaces the secret named name.
func (s *Store) RotateSecret(ctx context.Context, name string, value []byte, now time.Time) error {
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at`),
		name, hex.EncodeToString(value), ms(now))
	if err != nil {
		return fmt.Errorf("rotate secret %s: %w", name, err)
	}
	return nil
}

// TouchKey records a key's use, at most once per every.
func (s *Store) TouchKey(ctx context.Context, id string, now time.Time, every time.Duration) error {
	_, err := s.w.ExecContext(ctx, s.q(`UPDATE keys SET last_used = ? WHERE id = ? AND (last_used IS NULL OR last_used <= ?)`),
		ms(now), id, ms(now.Add(-every)))
	if err != nil {
		return fmt.Errorf("record key use: %w", err)
	}
	return nil
}

// SweepExpiredKeys deletes keys that expired before before.
func (s *Store) SweepExpiredKeys(ctx context.Context, before time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, s.q(`DELETE FROM keys WHERE expires_at IS NOT NULL AND expires_at < ?`), ms(before))
	if err != nil {
		return 0, fmt.Errorf("sweep expired keys: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// GetTask returns one task.
func (s *Store) GetTask(ctx context.Context, id string) (job.Task, error) {
	t, err := scanTask(s.r.QueryRowContext(ctx, s.q(`SELECT `+taskCols+` FROM tasks WHERE id = ?`), id))
	return t, oneErr(err, "task "+id, "get task")
}

// PutWorker registers or re-registers a worker.
func (s *Store) PutWorker(ctx context.Context, w store.Worker) error {
	caps := jsonOr(w.Caps, "[]")
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO workers (name, key_id, state, caps, slots, version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, state = excluded.state, caps = excluded.caps, slots = excluded.slots, version = excluded.version`),
		w.Name, w.KeyID, w.State, caps, w.Slots, w.Version, ms(w.CreatedAt))
	if err != nil {
		return fmt.Errorf("put worker: %w", err)
	}
	return nil
}

const workerCols = `name, key_id, state, caps, slots, version, last_seen, created_at`

func scanWorker(sc scanner) (store.Worker, error) {
	var (
		w       store.Worker
		caps    string
		seen    sql.NullInt64
		created int64
	)
	if err := sc.Scan(&w.Name, &w.KeyID, &w.State, &caps, &w.Slots, &w.Version, &seen, &created); err != nil {
		return w, err
	}
	if err := json.Unmarshal([]byte(caps), &w.Caps); err != nil {
		return w, fmt.Errorf("decode caps: %w", err)
	}
	w.LastSeen, w.CreatedAt = fromMS(seen), time.UnixMilli(created).UTC()
	return w, nil
}

// GetWorker returns one worker.
func (s *Store) GetWorker(ctx context.Context, name string) (store.Worker, error) {
	w, err := scanWorker(s.r.QueryRowContext(ctx, s.q(`SELECT `+workerCols+` FROM workers WHERE name = ?`), name))
	return w, oneErr(err, "worker "+name, "get worker")
}

// ListWorkers lists every worker by name.
func (s *Store) ListWorkers(ctx context.Context) ([]store.Worker, error) {
	ws, err := collect(ctx, s.r, scanWorker, `SELECT `+workerCols+` FROM workers ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return ws, nil
}

// SeenWorker records a contact; with nil caps only the time.
func (s *Store) SeenWorker(ctx context.Context, name string, caps []string, slots int, version string, now time.Time) error {
	var err error
	if caps == nil {
		_, err = s.w.ExecContext(ctx, s.q(`UPDATE workers SET last_seen = ? WHERE name = ?`), ms(now), name)
	} else {
		_, err = s.w.ExecContext(ctx, s.q(`UPDATE workers SET last_seen = ?, caps = ?, slots = ?, version = ? WHERE name = ?`),
			ms(now), jsonOr(caps, "[]"), slots, version, name)
	}
	if err != nil {
		return fmt.Errorf("record worker contact: %w", err)
	}
	return nil
}

// SetWorkerState changes a worker's state; revoking revokes its key and gives back its leases.
func (s *Store) SetWorkerState(ctx context.Context, name, state string, now time.Time) error {
	w, err := s.GetWorker(ctx, name)
	if err != nil {
		return err
	}
	if w.State == store.WorkerRevoked {
		return fmt.Errorf("worker %s is revoked; register it again: %w", name, job.ErrConflict)
	}
	if _, err := s.w.ExecContext(ctx, s.q(`UPDATE workers SET state = ? WHERE name = ?`), state, name); err != nil {
		return fmt.Errorf("set worker state: %w", err)
	}
	if state != store.WorkerRevoked {
		return nil
	}
	if _, err := s.ConsumeKey(ctx, w.KeyID); err != nil {
		return err
	}
	_, err = s.releaseOwners(ctx, store.WorkerOwnerPrefix(name), now, "worker "+name+" was revoked while running this task")
	return err
}

// RunningTasks lists every task being run now.
func (s *Store) RunningTasks(ctx context.Context) ([]job.Task, error) {
	ts, err := collect(ctx, s.r, scanTask, `SELECT `+taskCols+` FROM tasks WHERE state = 'running' ORDER BY started_at`)
	if err != nil {
		return nil, fmt.Errorf("list running tasks: %w", err)
	}
	return ts, nil
}

// AddDelivery records one delivery attempt.
func (s *Store) AddDelivery(ctx context.Context, d store.Delivery) error {
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO deliveries (job_id, publisher, type, event, attempt, ok, final, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		d.JobID, d.Publisher, d.Type, d.Event, d.Attempt, boolInt(d.OK), boolInt(d.Final), d.Detail, ms(d.At))
	if err != nil {
		return fmt.Errorf("record delivery: %w", err)
	}
	return nil
}

// Deliveries lists a job's delivery attempts, oldest first.
func (s *Store) Deliveries(ctx context.Context, jobID string) ([]store.Delivery, error) {
	ds, err := collect(ctx, s.r, func(sc scanner) (store.Delivery, error) {
		d := store.Delivery{JobID: jobID}
		var ok, final int
		var at int64
		err := sc.Scan(&d.Publisher, &d.Type, &d.Event, &d.Attempt, &ok, &final, &d.Detail, &at)
		d.OK, d.Final, d.At = ok == 1, final == 1, time.UnixMilli(at).UTC()
		return d, err
	}, s.q(`SELECT publisher, type, event, attempt, ok, final, detail, at FROM deliveries WHERE job_id = ? ORDER BY id`), jobID)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return nonNil(ds), nil
}

// nonNil makes an empty list an empty slice, not nil: lists the API
// shows as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
