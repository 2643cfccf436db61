package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/pgtest"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

// BenchmarkQueue measures claiming: 16 claimers drain HERD_BENCH_TASKS
// queued tasks (default 100,000) from each database, reporting claims per
// second, p50/p99 claim latency and the number of double claims (must be 0).
//
//	go test -run '^$' -bench BenchmarkQueue -benchtime 1x ./internal/store/sqlstore/
func BenchmarkQueue(b *testing.B) {
	tasks := 100_000
	if v, err := strconv.Atoi(os.Getenv("HERD_BENCH_TASKS")); err == nil && v > 0 {
		tasks = v
	}
	opens := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"sqlite", func(b *testing.B) store.Store {
			s, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "herd.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"postgres", func(b *testing.B) store.Store {
			s, err := sqlstore.Open(context.Background(), pgtest.DSN(b))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, o := range opens {
		b.Run(fmt.Sprintf("%s/claimers=16/tasks=%d", o.name, tasks), func(b *testing.B) {
			for range b.N {
				s := o.open(b)
				fill(b, s, tasks)
				// As autovacuum would soon after a burst of submissions.
				if err := s.(*sqlstore.Store).Optimize(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				claims, lat, dups, elapsed := drain(b, s, 16)
				b.StopTimer()
				_ = s.Close()
				if claims != tasks {
					b.Fatalf("claimed %d of %d tasks", claims, tasks)
				}
				slices.Sort(lat)
				b.ReportMetric(float64(claims)/elapsed.Seconds(), "claims/s")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
				b.ReportMetric(float64(dups), "double_claims")
				if dups > 0 {
					b.Fatalf("%d tasks were claimed twice", dups)
				}
			}
		})
	}
}

// fill queues n runnable tasks, ten per job.
func fill(b *testing.B, s store.Store, n int) {
	ctx := context.Background()
	now := time.Now().Add(-time.Minute)
	for i := 0; i < n; i += 10 {
		sha := fmt.Sprintf("bench%08d", i)
		a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "x", Size: 1, SHA256: sha, Key: "sources/" + sha, CreatedAt: now})
		if err != nil {
			b.Fatal(err)
		}
		var ts []job.Task
		for range min(10, n-i) {
			ts = append(ts, job.Task{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 3})
		}
		j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: sha, Source: job.Source{AssetID: a.ID}}
		if _, _, err := s.CreateJob(ctx, j, ts, now); err != nil {
			b.Fatal(err)
		}
	}
}

func drain(b *testing.B, s store.Store, claimers int) (int, []time.Duration, int, time.Duration) {
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
		lat  []time.Duration
		dups int
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
				c, err := s.Claim(context.Background(), store.ClaimRequest{Owner: owner, Worker: owner, Now: time.Now(), TTL: time.Hour})
				d := time.Since(t0)
				if err != nil {
					b.Error(err)
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
	return len(seen), lat, dups, time.Since(start)
}
