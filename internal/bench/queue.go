package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

// queue measures claiming on each database: 16 claimers drain 100,000
// queued tasks (quick: 500), counting claims per second, the latency of
// each claim and any task claimed twice.
func queue(ctx context.Context, e *env, s *Section) error {
	tasks, claimers := 100_000, 16
	if e.Quick {
		tasks = 500
	}
	work, err := e.dir("queue")
	if err != nil {
		return err
	}
	type database struct {
		name string
		open func() (*sqlstore.Store, error)
	}
	dbs := []database{
		{"SQLite", func() (*sqlstore.Store, error) { return sqlstore.OpenSQLite(ctx, filepath.Join(work, "herd.db")) }},
	}
	if e.Postgres != nil {
		dbs = append(dbs, database{"PostgreSQL", func() (*sqlstore.Store, error) {
			dsn, err := e.Postgres()
			if err != nil {
				return nil, err
			}
			return sqlstore.Open(ctx, dsn)
		}})
	} else {
		s.Notes = append(s.Notes, "PostgreSQL was left out: no PostgreSQL server could be started here (install Debian's postgresql package).")
	}
	t := s.table(fmt.Sprintf("%d claimers, %d tasks", claimers, tasks), "database", "claims/s", "p50 claim", "p99 claim", "double claims", "fill (jobs of 10 tasks)")
	for _, db := range dbs {
		st, err := db.open()
		if err != nil {
			return fmt.Errorf("%s: %w", db.name, err)
		}
		t0 := time.Now()
		if err := fillTasks(ctx, st, tasks); err != nil {
			_ = st.Close()
			return err
		}
		fill := time.Since(t0)
		// As autovacuum would soon after a burst of submissions.
		if err := st.Optimize(ctx); err != nil {
			_ = st.Close()
			return err
		}
		claims, lat, dups, took, err := drain(ctx, st, claimers)
		_ = st.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", db.name, err)
		}
		if claims != tasks {
			return fmt.Errorf("%s: claimed %d of %d tasks", db.name, claims, tasks)
		}
		slices.Sort(lat)
		rate := float64(claims) / took.Seconds()
		t.add(db.name, fmt.Sprintf("%.0f", rate), ms(percentile(lat, 50)), ms(percentile(lat, 99)), fmt.Sprint(dups), secs(fill))
		e.logf("queue: %s: %.0f claims/s, p99 %s, %d double", db.name, rate, ms(percentile(lat, 99)), dups)
		want := 1000.0
		if db.name == "PostgreSQL" {
			want = 2000
		}
		s.target(fmt.Sprintf("≥ %.0f claims/s on %s", want, db.name), fmt.Sprintf("%.0f/s", rate), rate >= want)
		s.target("0 double claims on "+db.name, fmt.Sprint(dups), dups == 0)
	}
	s.About = append(s.About,
		"The store herd's server and workers share, called directly (no HTTP): tasks queued as jobs of ten, the tables optimized as autovacuum would after a burst, then each claimer claims in a loop until nothing is left. Latency is each Claim call's; every claimed task id is checked against all the others.",
		"SQLite: a file on local disk, WAL, as `herd serve` opens it. PostgreSQL: a throwaway local cluster (Debian's package), default settings.")
	s.Ran = append(s.Ran, "make bench (or: go run ./cmd/herd-bench -only queue)")
	return nil
}

// fillTasks queues n runnable tasks, ten per job.
func fillTasks(ctx context.Context, s store.Store, n int) error {
	now := time.Now().Add(-time.Minute)
	for i := 0; i < n; i += 10 {
		sha := fmt.Sprintf("bench%08d", i)
		a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "x", Size: 1, SHA256: sha, Key: "sources/" + sha, CreatedAt: now})
		if err != nil {
			return err
		}
		var ts []job.Task
		for range min(10, n-i) {
			ts = append(ts, job.Task{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 3})
		}
		j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: sha, Source: job.Source{AssetID: a.ID}}
		if _, _, err := s.CreateJob(ctx, j, ts, now); err != nil {
			return err
		}
	}
	return nil
}

// drain claims until nothing is left, with claimers goroutines.
func drain(ctx context.Context, s store.Store, claimers int) (claimed int, lat []time.Duration, dups int, took time.Duration, err error) {
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
		errs []error
		wg   sync.WaitGroup
	)
	start := time.Now()
	for w := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("bench/%d", w)
			var mine []time.Duration
			for {
				t0 := time.Now()
				c, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Worker: owner, Now: time.Now(), TTL: time.Hour})
				d := time.Since(t0)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					break
				}
				if c == nil {
					break
				}
				mine = append(mine, d)
				mu.Lock()
				if seen[c.Task.ID] {
					dups++
				}
				seen[c.Task.ID] = true
				mu.Unlock()
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return 0, nil, 0, 0, errs[0]
	}
	return len(seen), lat, dups, time.Since(start), nil
}
