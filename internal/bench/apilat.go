package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

// apiLatency measures what a dashboard or a script sees with 100,000 jobs
// stored (quick: 2,000): GET /api/v1/jobs and GET /api/v1/jobs/{id} at a
// fixed rate, open loop, against GET /healthz (which touches nothing) at
// the same rate in the same run.
func apiLatency(ctx context.Context, e *env, s *Section) error {
	jobs, rps, dur := 100_000, 500, 10*time.Second
	if e.Quick {
		jobs, rps, dur = 2_000, 200, time.Second
	}
	work, err := e.dir("api")
	if err != nil {
		return err
	}
	data := filepath.Join(work, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	t0 := time.Now()
	ids, err := fillJobs(ctx, filepath.Join(data, "herd.db"), jobs)
	if err != nil {
		return err
	}
	e.logf("api: %d jobs stored in %s", jobs, secs(time.Since(t0)))
	h, err := e.startHerd(ctx, data, nil, "--local-workers", "0")
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
		{"GET /api/v1/jobs/{id}", func(r *rand.Rand) string { return "/api/v1/jobs/" + ids[r.IntN(len(ids))] }},
	}
	// A short warm-up at the same rate: connections, caches.
	if _, _, err := openLoop(rps, min(dur, 2*time.Second), func(r *rand.Rand) error { return get(routes[1].path(r)) }); err != nil {
		return err
	}
	t := s.table(fmt.Sprintf("%d jobs stored (SQLite), %d requests/s for %s per route, open loop", jobs, rps, dur), "route", "requests", "p50", "p99", "max", "p99 ÷ baseline p99")
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
		e.logf("api: %s: p50 %s, p99 %s", rt.name, ms(percentile(lat, 50)), ms(p99))
		if i > 0 {
			s.target("p99 < 25 ms: "+rt.name, ms(p99), p99 < 25*time.Millisecond)
		}
	}
	s.About = append(s.About,
		fmt.Sprintf("%d jobs of five tasks each written into a fresh SQLite database before `herd serve --local-workers 0` opens it. Requests go over loopback HTTP with the admin key; each latency is counted from the moment its request was due, not when it was sent, so a stall is not hidden by the requests it held back. GET /api/v1/jobs is the first page (50, newest first); GET /api/v1/jobs/{id} picks a stored job at random.", jobs))
	s.Ran = append(s.Ran, "make bench (or: go run ./cmd/herd-bench -only api)")
	return nil
}

// fillJobs stores n jobs of five tasks each in a new SQLite database.
func fillJobs(ctx context.Context, path string, n int) ([]string, error) {
	st, err := sqlstore.OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	now := time.Now().Add(-time.Hour)
	ids := make([]string, 0, n)
	for i := range n {
		sha := fmt.Sprintf("bench%08d", i)
		a, err := st.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: fmt.Sprintf("clip %d.mp4", i), Size: 1 << 20, SHA256: sha, Key: "sources/" + sha, CreatedAt: now})
		if err != nil {
			return nil, err
		}
		var ts []job.Task
		for _, k := range []job.Kind{job.KindProbe, job.KindEncode, job.KindThumbnails, job.KindVerify, job.KindFinalize} {
			ts = append(ts, job.Task{ID: job.NewID("t"), Kind: k, MaxAttempts: 3})
		}
		j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: sha, Source: job.Source{AssetID: a.ID, Name: a.Name}}
		if _, _, err := st.CreateJob(ctx, j, ts, now); err != nil {
			return nil, err
		}
		ids = append(ids, j.ID)
	}
	return ids, st.Optimize(ctx)
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
