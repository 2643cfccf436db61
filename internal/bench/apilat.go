package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

// apiLatency measures what a dashboard or a script sees with 100,000 jobs
// stored (quick: 500), on SQLite and on PostgreSQL: GET /api/v1/jobs
// (plain and filtered by state) and GET /api/v1/jobs/{id} at a fixed
// rate, open loop, against GET /healthz (which touches nothing) at the
// same rate in the same run.
func apiLatency(ctx context.Context, e *env, s *Section) error {
	jobs, rps, dur := 100_000, 500, 10*time.Second
	if e.Quick {
		jobs, rps, dur = 500, 200, time.Second
	}
	work, err := e.dir("api")
	if err != nil {
		return err
	}
	dbs := []struct{ name, dsn string }{{"SQLite", ""}}
	if e.Postgres != nil {
		dsn, err := e.Postgres()
		if err != nil {
			return err
		}
		dbs = append(dbs, struct{ name, dsn string }{"PostgreSQL", dsn})
	} else {
		s.Notes = append(s.Notes, "PostgreSQL was left out: no PostgreSQL server could be started here (install Debian's postgresql package).")
	}
	for _, db := range dbs {
		data := filepath.Join(work, strings.ToLower(db.name))
		if err := os.MkdirAll(data, 0o755); err != nil {
			return err
		}
		if err := apiLatencyOn(ctx, e, s, db.name, db.dsn, data, jobs, rps, dur); err != nil {
			return fmt.Errorf("%s: %w", db.name, err)
		}
	}
	s.About = append(s.About,
		fmt.Sprintf("%d jobs of five tasks each written straight into a fresh database (a bulk insert in the benchmark's setup) before `herd serve --local-workers 0` opens it, once on SQLite and once on PostgreSQL. Requests go over loopback HTTP with the admin key; each latency is counted from the moment its request was due, not when it was sent, so a stall is not hidden by the requests it held back. GET /api/v1/jobs is the first page (50, newest first); GET /api/v1/jobs?state=queued the same through the state filter; GET /api/v1/jobs/{id} picks a stored job at random.", jobs))
	s.Ran = append(s.Ran, "make bench (or: go run ./cmd/herd-bench -herd bin/herd -only api)")
	return nil
}

// apiLatencyOn runs the routes against one database (dsn empty: SQLite in data).
func apiLatencyOn(ctx context.Context, e *env, s *Section, dbName, dsn, data string, jobs, rps int, dur time.Duration) error {
	var args []string
	if dsn == "" {
		dsn = filepath.Join(data, "herd.db")
	} else {
		args = append(args, "--database", dsn)
	}
	t0 := time.Now()
	ids, err := fillJobs(ctx, dsn, jobs)
	if err != nil {
		return err
	}
	e.logf("api: %d jobs stored in %s (%s)", jobs, dbName, secs(time.Since(t0)))
	h, err := e.startHerd(ctx, data, nil, append([]string{"--local-workers", "0"}, args...)...)
	if err != nil {
		return err
	}
	defer func() { _ = h.stop() }() // as before: this scenario reports latencies, not how herd serve exits
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxIdleConns: 512}, Timeout: 30 * time.Second}
	get := func(path string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+h.Token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return nil
	}
	routes := []struct {
		name string
		path func(r *rand.Rand) string
	}{
		{"GET /healthz (baseline)", func(*rand.Rand) string { return "/healthz" }},
		{"GET /api/v1/jobs", func(*rand.Rand) string { return "/api/v1/jobs" }},
		{"GET /api/v1/jobs?state=queued", func(*rand.Rand) string { return "/api/v1/jobs?state=queued" }},
		{"GET /api/v1/jobs/{id}", func(r *rand.Rand) string { return "/api/v1/jobs/" + ids[r.IntN(len(ids))] }},
	}
	// A short warm-up at the same rate: connections, caches.
	if _, _, err := openLoop(rps, min(dur, 2*time.Second), func(r *rand.Rand) error { return get(routes[1].path(r)) }); err != nil {
		return err
	}
	t := s.table(fmt.Sprintf("%d jobs stored (%s), %d requests/s for %s per route, open loop", jobs, dbName, rps, dur), "route", "requests", "p50", "p99", "max", "p99 ÷ baseline p99")
	var base time.Duration
	for i, rt := range routes {
		lat, n, err := openLoop(rps, dur, func(r *rand.Rand) error { return get(rt.path(r)) })
		if err != nil {
			return fmt.Errorf("%s: %w", rt.name, err)
		}
		slices.Sort(lat)
		p99 := percentile(lat, 99)
		if i == 0 {
			base = p99
		}
		t.add(rt.name, fmt.Sprint(n), ms(percentile(lat, 50)), ms(p99), ms(lat[len(lat)-1]), ratio(p99.Seconds(), base.Seconds()))
		e.logf("api (%s): %s: p50 %s, p99 %s", dbName, rt.name, ms(percentile(lat, 50)), ms(p99))
		if i > 0 {
			s.target(fmt.Sprintf("p99 < 25 ms: %s (%s)", rt.name, dbName), ms(p99), p99 < 25*time.Millisecond)
		}
	}
	return nil
}

// fillJobs stores n jobs of five tasks each, as CreateJob would, in the
// database at dsn (a postgres:// URL or a SQLite file) after migrating it.
// It writes rows in batches of multi-row INSERTs in one transaction: a
// setup for the benchmark, not a path herd takes (100,000 CreateJob calls
// take minutes).
func fillJobs(ctx context.Context, dsn string, n int) ([]string, error) {
	st, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	driver, name := "sqlite", "file:"+dsn+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
	pg := strings.HasPrefix(dsn, "postgres://")
	if pg {
		driver, name = "pgx", dsn
	}
	db, err := sql.Open(driver, name)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	// insert writes rows (each len(cols) values) into table, 500 rows a statement.
	insert := func(table string, cols []string, rows [][]any) error {
		for len(rows) > 0 {
			batch := rows[:min(500, len(rows))]
			rows = rows[len(batch):]
			var q strings.Builder
			fmt.Fprintf(&q, "INSERT INTO %s (%s) VALUES ", table, strings.Join(cols, ", "))
			var args []any
			for i, r := range batch {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(")
				for k := range r {
					if k > 0 {
						q.WriteString(", ")
					}
					args = append(args, r[k])
					if pg {
						fmt.Fprintf(&q, "$%d", len(args))
					} else {
						q.WriteString("?")
					}
				}
				q.WriteString(")")
			}
			if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
				return fmt.Errorf("fill %s: %w", table, err)
			}
		}
		return nil
	}
	now := time.Now().Add(-time.Hour).UnixMilli()
	ids := make([]string, 0, n)
	var assets, jobs, tasks [][]any
	for i := range n {
		sha := fmt.Sprintf("bench%08d", i)
		a := job.Asset{ID: job.NewID("a"), Name: fmt.Sprintf("clip %d.mp4", i)}
		assets = append(assets, []any{a.ID, a.Name, 1 << 20, sha, "sources/" + sha, now})
		j := job.Job{ID: job.NewID("j"), Source: job.Source{AssetID: a.ID, Name: a.Name}}
		src, _ := json.Marshal(j.Source)
		jobs = append(jobs, []any{j.ID, string(job.Queued), "web-hls", 1, sha, a.ID, string(src), now, now})
		for seq, k := range []job.Kind{job.KindProbe, job.KindEncode, job.KindThumbnails, job.KindVerify, job.KindFinalize} {
			tasks = append(tasks, []any{job.NewID("t"), j.ID, seq, string(k), string(job.TaskQueued), "[]", 3, "web-hls", "", k.Weight(), 0.0, now, now})
		}
		ids = append(ids, j.ID)
	}
	if err := insert("assets", []string{"id", "name", "size", "sha256", "blob_key", "created_at"}, assets); err != nil {
		return nil, err
	}
	if err := insert("jobs", []string{"id", "state", "profile", "profile_version", "idempotency_key", "asset_id", "source", "created_at", "updated_at"}, jobs); err != nil {
		return nil, err
	}
	if err := insert("tasks", []string{"id", "job_id", "seq", "kind", "state", "depends_on", "max_attempts", "profile", "needs", "weight", "seconds", "run_after", "created_at"}, tasks); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	if st, err = sqlstore.Open(ctx, dsn); err != nil {
		return nil, err
	}
	defer st.Close()
	return ids, st.Optimize(ctx) // as autovacuum or herd's own optimize would after a burst of submissions
}

// openLoop calls do rate times a second for d, each call in its own
// goroutine; each latency runs from the moment the call was due. It
// returns the latencies, the number of calls and the first error.
func openLoop(rate int, d time.Duration, do func(r *rand.Rand) error) ([]time.Duration, int, error) {
	var (
		mu    sync.Mutex
		lat   []time.Duration
		first error
		wg    sync.WaitGroup
	)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	n := 0
	for ; ; n++ {
		due := start.Add(time.Duration(n) * interval)
		if due.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(due))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			err := do(rand.New(rand.NewPCG(uint64(i), 7))) //nolint:gosec // G404: a seeded load pattern, repeatable on purpose
			took := time.Since(due)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			lat = append(lat, took)
		}(n)
	}
	wg.Wait()
	return lat, n, first
}
