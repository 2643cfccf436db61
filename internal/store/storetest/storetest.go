// Package storetest is the conformance suite every store.Store implementation
// must pass. Each dialect's test calls Run with a function that opens a fresh,
// empty store.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// Open returns a fresh, empty store for one test.
type Open func(t *testing.T) store.Store

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const ttl = 30 * time.Second

// Run runs the whole suite.
func Run(t *testing.T, open Open) {
	t.Run("CreateIdempotent", func(t *testing.T) { t.Parallel(); testCreateIdempotent(t, open(t)) })
	t.Run("PipelineOrder", func(t *testing.T) { t.Parallel(); testPipelineOrder(t, open(t)) })
	t.Run("ConcurrentClaims", func(t *testing.T) { t.Parallel(); testConcurrentClaims(t, open(t)) })
	t.Run("LeaseExpiry", func(t *testing.T) { t.Parallel(); testLeaseExpiry(t, open(t)) })
	t.Run("Fencing", func(t *testing.T) { t.Parallel(); testFencing(t, open(t)) })
	t.Run("LiveSegments", func(t *testing.T) { t.Parallel(); testLiveSegments(t, open(t)) })
	t.Run("AttemptsAndBackoff", func(t *testing.T) { t.Parallel(); testAttempts(t, open(t)) })
	t.Run("PermanentFailure", func(t *testing.T) { t.Parallel(); testPermanent(t, open(t)) })
	t.Run("CancelRunning", func(t *testing.T) { t.Parallel(); testCancelRunning(t, open(t)) })
	t.Run("Retry", func(t *testing.T) { t.Parallel(); testRetry(t, open(t)) })
	t.Run("Release", func(t *testing.T) { t.Parallel(); testRelease(t, open(t)) })
	t.Run("ReleaseOwners", func(t *testing.T) { t.Parallel(); testReleaseOwners(t, open(t)) })
	t.Run("ListPaging", func(t *testing.T) { t.Parallel(); testList(t, open(t)) })
	t.Run("Keys", func(t *testing.T) { t.Parallel(); testKeys(t, open(t)) })
	t.Run("KeyLifecycle", func(t *testing.T) { t.Parallel(); testKeyLifecycle(t, open(t)) })
	t.Run("Needs", func(t *testing.T) { t.Parallel(); testNeeds(t, open(t)) })
	t.Run("ClaimKinds", func(t *testing.T) { t.Parallel(); testClaimKinds(t, open(t)) })
	t.Run("Workers", func(t *testing.T) { t.Parallel(); testWorkers(t, open(t)) })
	t.Run("Outbox", func(t *testing.T) { t.Parallel(); testOutbox(t, open(t)) })
	t.Run("OutboxOptIn", func(t *testing.T) { t.Parallel(); testOutboxOptIn(t, open(t)) })
	t.Run("Secrets", func(t *testing.T) { t.Parallel(); testSecrets(t, open(t)) })
	t.Run("ProfileVersions", func(t *testing.T) { t.Parallel(); testProfileVersions(t, open(t)) })
	t.Run("Streams", func(t *testing.T) { t.Parallel(); testStreams(t, open(t)) })
	t.Run("HealthChecksMakeNoStream", func(t *testing.T) { t.Parallel(); testHealthChecksMakeNoStream(t, open(t)) })
	t.Run("Campaigns", func(t *testing.T) { t.Parallel(); testCampaigns(t, open(t)) })
	t.Run("Deliveries", func(t *testing.T) { t.Parallel(); testDeliveries(t, open(t)) })
	t.Run("Throughput", func(t *testing.T) { t.Parallel(); testThroughput(t, open(t)) })
	t.Run("EncodeBacklog", func(t *testing.T) { t.Parallel(); testEncodeBacklog(t, open(t)) })
	t.Run("EncodeSeconds", func(t *testing.T) { t.Parallel(); testEncodeSeconds(t, open(t)) })
	t.Run("Expand", func(t *testing.T) { t.Parallel(); testExpand(t, open(t)) })
	t.Run("ExpandSideBySide", func(t *testing.T) { t.Parallel(); testExpandSideBySide(t, open(t)) })
	t.Run("ConcurrentCompletes", func(t *testing.T) { t.Parallel(); testConcurrentCompletes(t, open(t)) })
	t.Run("Libraries", func(t *testing.T) { t.Parallel(); testLibraries(t, open(t)) })
}

// newJob creates a job whose tasks form probe -> encode -> publish.
func newJob(t *testing.T, s store.Store, sha string, maxAttempts int) job.Job {
	t.Helper()
	p := job.Task{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: maxAttempts}
	e := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: maxAttempts, DependsOn: []string{p.ID}}
	u := job.Task{ID: job.NewID("t"), Kind: job.KindFinalize, MaxAttempts: maxAttempts, DependsOn: []string{e.ID}}
	return newJobOf(t, s, sha, []job.Task{p, e, u})
}

// newJobOf creates a web-hls job of a new asset sha with tasks.
func newJobOf(t *testing.T, s store.Store, sha string, tasks []job.Task) job.Job {
	t.Helper()
	ctx := context.Background()
	a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "clip.mp4", Size: 10, SHA256: sha, Key: "sources/" + sha, CreatedAt: t0})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: job.IdempotencyKey(sha, "web-hls", 1, ""),
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: sha}}
	out, created, err := s.CreateJob(ctx, j, tasks, t0)
	require.NoError(t, err)
	require.True(t, created)
	return out
}

func claim(t *testing.T, s store.Store, owner string, now time.Time) *job.Claimed {
	t.Helper()
	c, err := s.Claim(context.Background(), store.ClaimRequest{Owner: owner, Worker: owner, Now: now, TTL: ttl})
	require.NoError(t, err)
	return c
}

func testCreateIdempotent(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob(t, s, "aaa", 3)
	require.Equal(t, job.Queued, j.State)
	again := j
	again.ID = job.NewID("j")
	got, created, err := s.CreateJob(ctx, again, []job.Task{{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 3}}, t0)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, j.ID, got.ID)

	// Once the first one failed, the same request makes a new job.
	_, err = s.CancelJob(ctx, j.ID, t0)
	require.NoError(t, err)
	got, created, err = s.CreateJob(ctx, again, []job.Task{{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 3}}, t0)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, again.ID, got.ID)
}

func testPipelineOrder(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob(t, s, "bbb", 3)
	c := claim(t, s, "w1", t0)
	require.NotNil(t, c)
	require.Equal(t, job.KindProbe, c.Task.Kind)
	require.Nil(t, claim(t, s, "w2", t0), "encode must wait for probe")

	plan := json.RawMessage(`{"rungs":2}`)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Data: json.RawMessage(`{"probed":true}`), Plan: plan,
		Source: &job.Source{AssetID: j.Source.AssetID, Name: "clip.mp4", Width: 640, Height: 360}, Commands: [][]string{{"ffprobe", "x"}}}, t0))
	got, err := s.GetJob(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.Running, got.State)
	require.Equal(t, 640, got.Source.Width)
	require.JSONEq(t, string(plan), string(got.Plan))

	c = claim(t, s, "w2", t0)
	require.NotNil(t, c)
	require.Equal(t, job.KindEncode, c.Task.Kind)
	require.JSONEq(t, `{"probed":true}`, string(c.Deps[job.KindProbe]))
	require.NoError(t, s.Heartbeat(ctx, c.Lease, job.Progress{Progress: 0.5, Speed: 2.5}, t0, ttl))
	got, err = s.GetJob(ctx, j.ID)
	require.NoError(t, err)
	require.InDelta(t, (0.05+0.75*0.5)/0.85, got.Progress, 1e-9)
	require.InDelta(t, 2.5, got.Speed, 1e-9)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{}, t0))

	c = claim(t, s, "w1", t0)
	require.Equal(t, job.KindFinalize, c.Task.Kind)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Outputs: json.RawMessage(`[{"name":"master"}]`)}, t0.Add(time.Minute)))
	got, err = s.GetJob(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.Succeeded, got.State)
	require.InDelta(t, 1.0, got.Progress, 1e-9)
	require.NotNil(t, got.FinishedAt)
	require.JSONEq(t, `[{"name":"master"}]`, string(got.Outputs))

	ts, err := s.Tasks(ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, ts, 3)
	require.Equal(t, [][]string{{"ffprobe", "x"}}, ts[0].Commands)
	for _, x := range ts {
		require.Equal(t, job.TaskSucceeded, x.State)
		require.Equal(t, 1, x.Attempt)
	}
}

func testConcurrentClaims(t *testing.T, s store.Store) {
	const jobs, claimers = 40, 16
	for i := range jobs {
		newJob(t, s, fmt.Sprintf("c%03d", i), 3)
	}
	var (
		mu   sync.Mutex
		seen = map[string]string{}
		dups []string
		wg   sync.WaitGroup
	)
	for w := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("w%d", w)
			for {
				c, err := s.Claim(context.Background(), store.ClaimRequest{Owner: owner, Worker: owner, Now: t0, TTL: ttl})
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				if c == nil {
					return
				}
				mu.Lock()
				if prev, ok := seen[c.Task.ID]; ok {
					dups = append(dups, c.Task.ID+" by "+prev+" and "+owner)
				}
				seen[c.Task.ID] = owner
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Empty(t, dups)
	require.Len(t, seen, jobs, "every probe task claimed once")
}

func testLeaseExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob(t, s, "ddd", 3)
	c := claim(t, s, "w1", t0)
	require.NotNil(t, c)
	n, err := s.ReapExpired(ctx, t0.Add(ttl-time.Second), time.Second)
	require.NoError(t, err)
	require.Zero(t, n, "lease still valid")
	require.NoError(t, s.Heartbeat(ctx, c.Lease, job.Progress{Progress: 0.1}, t0.Add(20*time.Second), ttl))
	n, err = s.ReapExpired(ctx, t0.Add(ttl+time.Second), time.Second)
	require.NoError(t, err)
	require.Zero(t, n, "heartbeat extended the lease")
	n, err = s.ReapExpired(ctx, t0.Add(20*time.Second+ttl+time.Second), time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	ts, err := s.Tasks(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.TaskQueued, ts[0].State)
	require.Contains(t, ts[0].Error, "lease expired")
	later := t0.Add(time.Hour)
	c2 := claim(t, s, "w2", later)
	require.NotNil(t, c2)
	require.Equal(t, c.Task.ID, c2.Task.ID)
	require.Greater(t, c2.Lease.Fence, c.Lease.Fence)
	require.Equal(t, 2, c2.Task.Attempt)
}

func testFencing(t *testing.T, s store.Store) {
	ctx := context.Background()
	newJob(t, s, "eee", 3)
	old := claim(t, s, "w1", t0)
	_, err := s.ReapExpired(ctx, t0.Add(time.Hour), time.Second)
	require.NoError(t, err)
	cur := claim(t, s, "w2", t0.Add(2*time.Hour))
	require.NotNil(t, cur)
	// The zombie's reports are refused.
	require.ErrorIs(t, s.Heartbeat(ctx, old.Lease, job.Progress{}, t0, ttl), job.ErrLeaseLost)
	require.ErrorIs(t, s.Complete(ctx, old.Lease, job.Result{}, t0), job.ErrLeaseLost)
	require.ErrorIs(t, s.Fail(ctx, old.Lease, job.Failure{Message: "x"}, t0), job.ErrLeaseLost)
	require.ErrorIs(t, s.Release(ctx, old.Lease, t0), job.ErrLeaseLost)
	// A forged owner with the right fence is refused too.
	forged := cur.Lease
	forged.Owner = "w1"
	require.ErrorIs(t, s.Complete(ctx, forged, job.Result{}, t0), job.ErrLeaseLost)
	require.NoError(t, s.Complete(ctx, cur.Lease, job.Result{}, t0.Add(2*time.Hour)))
}

// testLiveSegments: a segment is listed only while its attempt holds the
// task, and the first one listed at a place stays there.
func testLiveSegments(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob(t, s, "live", 3)
	old := claim(t, s, "w1", t0)
	seg := func(seq int, attempt string) store.LiveSegment {
		return store.LiveSegment{JobID: j.ID, Rendition: 1, Seq: seq, Attempt: attempt, Codec: "avc1.64001f", Timescale: 12800, Start: int64(seq-1) * 25600, Duration: 25600, Size: 1000}
	}
	oldName := fmt.Sprintf("%s-%d", old.Task.ID, old.Lease.Fence)
	added, err := s.AddLiveSegment(ctx, old.Lease, seg(1, oldName), t0)
	require.NoError(t, err)
	require.True(t, added)
	added, err = s.AddLiveSegment(ctx, old.Lease, seg(1, "other"), t0)
	require.NoError(t, err)
	require.False(t, added, "a listed segment is never replaced")
	_, err = s.ReapExpired(ctx, t0.Add(time.Hour), time.Second)
	require.NoError(t, err)
	cur := claim(t, s, "w2", t0.Add(2*time.Hour))
	require.Equal(t, old.Task.ID, cur.Task.ID)
	_, err = s.AddLiveSegment(ctx, old.Lease, seg(2, oldName), t0)
	require.ErrorIs(t, err, job.ErrLeaseLost, "a zombie lists nothing")
	curName := fmt.Sprintf("%s-%d", cur.Task.ID, cur.Lease.Fence)
	other := seg(3, curName)
	other.JobID = newJob(t, s, "live2", 3).ID
	_, err = s.AddLiveSegment(ctx, cur.Lease, other, t0)
	require.Error(t, err, "a lease reaches its own job only")
	for _, n := range []int{1, 2} {
		_, err = s.AddLiveSegment(ctx, cur.Lease, seg(n, curName), t0.Add(2*time.Hour))
		require.NoError(t, err)
	}
	got, err := s.LiveSegments(ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, []string{oldName, curName}, []string{got[0].Attempt, got[1].Attempt})
	require.Equal(t, int64(25600), got[1].Start)
	require.Equal(t, "avc1.64001f", got[0].Codec)

	ended, err := s.EndedLive(ctx, t0.Add(4*time.Hour), 10)
	require.NoError(t, err)
	require.NotContains(t, ended, j.ID, "a running job keeps its live segments")
	_, err = s.CancelJob(ctx, j.ID, t0.Add(3*time.Hour))
	require.NoError(t, err)
	ended, err = s.EndedLive(ctx, t0.Add(3*time.Hour), 10)
	require.NoError(t, err)
	require.NotContains(t, ended, j.ID, "not before it ended")
	ended, err = s.EndedLive(ctx, t0.Add(4*time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{j.ID}, ended)
	deleted, err := s.DeleteLive(ctx, j.ID, t0.Add(3*time.Hour))
	require.NoError(t, err)
	require.False(t, deleted, "not before it ended")

	// A retried job's live playlists start afresh: the run that ended
	// ended them, and its rows cannot be swept from under the new run.
	_, err = s.RetryJob(ctx, j.ID, t0.Add(4*time.Hour))
	require.NoError(t, err)
	got, err = s.LiveSegments(ctx, j.ID)
	require.NoError(t, err)
	require.Empty(t, got, "a retry forgets the ended run's live segments")
	again := claim(t, s, "w3", t0.Add(5*time.Hour))
	if again.Task.JobID != j.ID { // the other job's probe, queued as long
		again = claim(t, s, "w4", t0.Add(5*time.Hour))
	}
	require.Equal(t, j.ID, again.Task.JobID)
	_, err = s.AddLiveSegment(ctx, again.Lease, store.LiveSegment{JobID: j.ID, Rendition: 1, Seq: 1, Attempt: "new", Codec: "avc1.64001f", Timescale: 12800, Duration: 25600, Size: 1}, t0.Add(5*time.Hour))
	require.NoError(t, err)
	deleted, err = s.DeleteLive(ctx, j.ID, t0.Add(6*time.Hour))
	require.NoError(t, err)
	require.False(t, deleted, "a job running again keeps its live segments")
	got, err = s.LiveSegments(ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, got, 1)
	_, err = s.CancelJob(ctx, j.ID, t0.Add(7*time.Hour))
	require.NoError(t, err)
	deleted, err = s.DeleteLive(ctx, j.ID, t0.Add(8*time.Hour))
	require.NoError(t, err)
	require.True(t, deleted)
	got, err = s.LiveSegments(ctx, j.ID)
	require.NoError(t, err)
	require.Empty(t, got)
}

func testAttempts(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob(t, s, "fff", 2)
	c := claim(t, s, "w1", t0)
	require.NoError(t, s.Fail(ctx, c.Lease, job.Failure{Message: "ffmpeg was killed", Backoff: 10 * time.Second}, t0))
	require.Nil(t, claim(t, s, "w1", t0.Add(9*time.Second)), "backoff not over")
	c = claim(t, s, "w1", t0.Add(11*time.Second))
	require.NotNil(t, c)
	require.Equal(t, 2, c.Task.Attempt)
	require.NoError(t, s.Fail(ctx, c.Lease, job.Failure{Message: "ffmpeg was killed", Backoff: 10 * time.Second}, t0.Add(12*time.Second)))
	got, err := s.GetJob(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.Failed, got.State)
	require.Contains(t, got.Error, "gave up after 2 attempts")
	ts, err := s.Tasks(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.TaskFailed, ts[0].State)
	require.Equal(t, job.TaskCanceled, ts[1].State, "dependents stop at once")
	require.Nil(t, claim(t, s, "w1", t0.Add(time.Hour)))
}

func testPermanent(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob(t, s, "ggg", 3)
	c := claim(t, s, "w1", t0)
	require.NoError(t, s.Fail(ctx, c.Lease, job.Failure{Message: "the file has no video stream", Code: "no_video", Permanent: true}, t0))
	got, err := s.GetJob(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.Failed, got.State)
	require.Equal(t, "no_video", got.ErrorCode)
	require.Equal(t, "the file has no video stream", got.Error)
	require.Equal(t, 1, got.Attempts, "a permanent error burns no retries")
}

func testCancelRunning(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob(t, s, "hhh", 3)
	c := claim(t, s, "w1", t0)
	got, err := s.CancelJob(ctx, j.ID, t0)
	require.NoError(t, err)
	require.Equal(t, job.Canceled, got.State)
	require.ErrorIs(t, s.Heartbeat(ctx, c.Lease, job.Progress{}, t0, ttl), job.ErrLeaseLost, "the worker learns at its next heartbeat")
	_, err = s.CancelJob(ctx, j.ID, t0)
	require.ErrorIs(t, err, job.ErrConflict)
	_, err = s.CancelJob(ctx, "nope", t0)
	require.ErrorIs(t, err, job.ErrNotFound)
}

func testRetry(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob(t, s, "iii", 1)
	c := claim(t, s, "w1", t0)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Data: json.RawMessage(`{"p":1}`)}, t0))
	c = claim(t, s, "w1", t0)
	require.Equal(t, job.KindEncode, c.Task.Kind)
	require.NoError(t, s.Fail(ctx, c.Lease, job.Failure{Message: "disk full"}, t0))
	_, err := s.RetryJob(ctx, j.ID, t0)
	require.NoError(t, err)
	got, err := s.GetJob(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.Running, got.State)
	require.Empty(t, got.Error)
	c = claim(t, s, "w1", t0)
	require.Equal(t, job.KindEncode, c.Task.Kind, "probe kept its result")
	require.JSONEq(t, `{"p":1}`, string(c.Deps[job.KindProbe]))
	_, err = s.RetryJob(ctx, j.ID, t0)
	require.ErrorIs(t, err, job.ErrConflict)
}

func testRelease(t *testing.T, s store.Store) {
	ctx := context.Background()
	newJob(t, s, "jjj", 3)
	c := claim(t, s, "w1", t0)
	require.NoError(t, s.Release(ctx, c.Lease, t0))
	c2 := claim(t, s, "w2", t0)
	require.Equal(t, c.Task.ID, c2.Task.ID)
	require.Equal(t, 1, c2.Task.Attempt, "a release burns no attempt")
}

func testReleaseOwners(t *testing.T, s store.Store) {
	ctx := context.Background()
	newJob(t, s, "kkk", 3)
	newJob(t, s, "kkl", 3)
	a := claim(t, s, "local/host1/0", t0)
	b := claim(t, s, "remote_1", t0)
	n, err := s.ReleaseOwners(ctx, "local/host1/", t0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.ErrorIs(t, s.Heartbeat(ctx, a.Lease, job.Progress{}, t0, ttl), job.ErrLeaseLost)
	require.NoError(t, s.Heartbeat(ctx, b.Lease, job.Progress{}, t0, ttl))
}

func testList(t *testing.T, s store.Store) {
	ctx := context.Background()
	var ids []string
	for i := range 7 {
		ids = append(ids, newJob(t, s, fmt.Sprintf("l%02d", i), 3).ID)
		time.Sleep(2 * time.Millisecond) // ids sort by creation time
	}
	_, err := s.CancelJob(ctx, ids[0], t0)
	require.NoError(t, err)
	var got []string
	cursor := ""
	for {
		page, next, err := s.ListJobs(ctx, store.ListOptions{Limit: 3, Cursor: cursor})
		require.NoError(t, err)
		for _, j := range page {
			got = append(got, j.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	require.Len(t, got, 7)
	for i := range got {
		require.Equal(t, ids[len(ids)-1-i], got[i], "newest first")
	}
	canceled, _, err := s.ListJobs(ctx, store.ListOptions{State: job.Canceled})
	require.NoError(t, err)
	require.Len(t, canceled, 1)
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 6, st.JobsByState[job.Queued])
	require.Equal(t, 1, st.JobsByState[job.Canceled])
	require.Equal(t, 6, st.QueueByProfile["web-hls"])
}

// testEncodeBacklog: the seconds of video still to encode count whole for
// encode tasks not started and in part for running ones.
func testEncodeBacklog(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i, d := range []float64{100, 40} {
		sha := fmt.Sprintf("backlog%d", i)
		a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "clip.mp4", Size: 10, SHA256: sha, Key: "sources/" + sha, CreatedAt: t0})
		require.NoError(t, err)
		j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: job.IdempotencyKey(sha, "web-hls", 1, ""),
			Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: sha, Duration: d}}
		_, _, err = s.CreateJob(ctx, j, []job.Task{{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 3}}, t0)
		require.NoError(t, err)
	}
	backlog := func(want float64) {
		t.Helper()
		st, err := s.Stats(ctx)
		require.NoError(t, err)
		require.InDelta(t, want, st.EncodeBacklog, 1e-9)
		d, err := s.Depth(ctx)
		require.NoError(t, err)
		require.InDelta(t, want, d.EncodeBacklog, 1e-9, "Depth agrees with Stats")
	}
	backlog(140)
	c := claim(t, s, "w/0", t0)
	require.NoError(t, s.Heartbeat(ctx, c.Lease, job.Progress{Progress: 0.25}, t0, ttl))
	backlog(140 - 0.25*c.Job.Source.Duration)
	d, err := s.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, store.Depth{JobsQueued: 1, JobsRunning: 1, QueuedTasks: 1, RunningTasks: 1, EncodeBacklog: d.EncodeBacklog}, d)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{}, t0))
	backlog(140 - c.Job.Source.Duration)
}

// testEncodeSeconds: an encode task learns its length when the probe
// measures the source, unless it was made with its own (a chunk), and the
// backlog and queue depth are counted from those lengths.
func testEncodeSeconds(t *testing.T, s store.Store) {
	ctx := context.Background()
	depth := func() store.Depth {
		t.Helper()
		d, err := s.Depth(ctx)
		require.NoError(t, err)
		return d
	}
	seconds := func(jobID string) map[job.Kind][]float64 {
		t.Helper()
		ts, err := s.Tasks(ctx, jobID)
		require.NoError(t, err)
		out := map[job.Kind][]float64{}
		for _, x := range ts {
			out[x.Kind] = append(out[x.Kind], x.Seconds)
		}
		return out
	}
	require.Equal(t, store.Depth{}, depth(), "an empty queue")

	// Not probed yet: the encode task's length is unknown and counts 0.
	whole := newJob(t, s, "seconds-whole", 3)
	require.Equal(t, map[job.Kind][]float64{job.KindProbe: {0}, job.KindEncode: {0}, job.KindFinalize: {0}}, seconds(whole.ID))
	require.Equal(t, store.Depth{JobsQueued: 1, QueuedTasks: 1}, depth())

	// A job split into chunks: each chunk task carries its own length.
	a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "long.mp4", Size: 10, SHA256: "seconds-chunks", Key: "sources/seconds-chunks", CreatedAt: t0})
	require.NoError(t, err)
	p := job.Task{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 3}
	c1 := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 3, DependsOn: []string{p.ID}, Seconds: 70}
	c2 := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 3, DependsOn: []string{p.ID}, Seconds: 50}
	chunked, _, err := s.CreateJob(ctx, job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: job.IdempotencyKey(a.SHA256, "web-hls", 1, ""),
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: a.SHA256}}, []job.Task{p, c1, c2}, t0)
	require.NoError(t, err)
	require.Equal(t, store.Depth{JobsQueued: 2, QueuedTasks: 2, EncodeBacklog: 120}, depth(), "pending chunks count")

	// Both probes finish; only the task without a length of its own takes the duration.
	for range 2 {
		c := claim(t, s, "w/0", t0)
		require.NotNil(t, c)
		require.Equal(t, job.KindProbe, c.Task.Kind)
		src := c.Job.Source
		src.Duration = 120
		require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Source: &src}, t0))
	}
	require.Equal(t, []float64{120}, seconds(whole.ID)[job.KindEncode])
	require.ElementsMatch(t, []float64{70, 50}, seconds(chunked.ID)[job.KindEncode])
	require.Equal(t, store.Depth{JobsRunning: 2, QueuedTasks: 3, EncodeBacklog: 240}, depth())

	// A running encode counts what is left of it; a finished one nothing.
	c := claim(t, s, "w/1", t0)
	require.NotNil(t, c)
	require.Equal(t, job.KindEncode, c.Task.Kind)
	require.Positive(t, c.Task.Seconds, "a claimed task carries its length")
	require.NoError(t, s.Heartbeat(ctx, c.Lease, job.Progress{Progress: 0.5}, t0, ttl))
	d := depth()
	require.Equal(t, 2, d.QueuedTasks)
	require.Equal(t, 1, d.RunningTasks)
	require.InDelta(t, 240-0.5*c.Task.Seconds, d.EncodeBacklog, 1e-9)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{}, t0))
	require.InDelta(t, 240-c.Task.Seconds, depth().EncodeBacklog, 1e-9)
}

func testKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	n, err := s.CountKeys(ctx, "admin")
	require.NoError(t, err)
	require.Zero(t, n)
	require.NoError(t, s.CreateKey(ctx, store.Key{ID: "k1", Kind: "admin", Name: "first", Hash: "h1", CreatedAt: t0}))
	k, err := s.KeyByHash(ctx, "h1")
	require.NoError(t, err)
	require.Equal(t, "admin", k.Kind)
	_, err = s.KeyByHash(ctx, "h2")
	require.ErrorIs(t, err, job.ErrNotFound)
	n, err = s.CountKeys(ctx, "admin")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Nil(t, k.LastUsed, "a key not used yet")
	require.Empty(t, k.Parent)
	require.True(t, k.Usable(t0))
}

// testKeyLifecycle: keys are listed, revoked, marked as used (about once per
// interval, not on every request), end with the key that made them, and are
// swept once expired.
func testKeyLifecycle(t *testing.T, s store.Store) {
	ctx := context.Background()
	soon, later := t0.Add(time.Hour), t0.Add(48*time.Hour)
	require.NoError(t, s.CreateKey(ctx, store.Key{ID: "adm", Kind: "admin", Name: "ops", Hash: "ha", CreatedAt: t0}))
	require.NoError(t, s.CreateKey(ctx, store.Key{ID: "ses", Kind: "session", Name: "signed in with ops", Hash: "hs", CreatedAt: t0.Add(time.Second), ExpiresAt: &later, Parent: "adm"}))
	require.NoError(t, s.CreateKey(ctx, store.Key{ID: "reg", Kind: "registration", Name: "registration", Hash: "hr", CreatedAt: t0.Add(2 * time.Second), ExpiresAt: &soon}))
	require.NoError(t, s.CreateKey(ctx, store.Key{ID: "wrk", Kind: "worker", Name: "box", Hash: "hw", CreatedAt: t0.Add(3 * time.Second)}))

	keys, err := s.ListKeys(ctx)
	require.NoError(t, err)
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	require.Equal(t, []string{"adm", "ses", "reg", "wrk"}, ids, "oldest first")
	require.Equal(t, "adm", keys[1].Parent)
	require.Equal(t, soon, *keys[2].ExpiresAt)

	// Last use: recorded, then left alone within the interval, then moved on.
	require.NoError(t, s.TouchKey(ctx, "wrk", t0, time.Minute))
	k, err := s.KeyByHash(ctx, "hw")
	require.NoError(t, err)
	require.Equal(t, t0, *k.LastUsed)
	require.NoError(t, s.TouchKey(ctx, "wrk", t0.Add(30*time.Second), time.Minute))
	k, _ = s.KeyByHash(ctx, "hw")
	require.Equal(t, t0, *k.LastUsed, "a second use within the minute writes nothing")
	require.NoError(t, s.TouchKey(ctx, "wrk", t0.Add(61*time.Second), time.Minute))
	k, _ = s.KeyByHash(ctx, "hw")
	require.Equal(t, t0.Add(61*time.Second), *k.LastUsed)
	require.NoError(t, s.TouchKey(ctx, "ghost", t0, time.Minute), "touching a key that is gone is no error")

	// A session lives while the admin key that made it does.
	ses, err := s.KeyByHash(ctx, "hs")
	require.NoError(t, err)
	require.True(t, ses.Usable(t0))
	_, err = s.RevokeKey(ctx, "ghost")
	require.ErrorIs(t, err, job.ErrNotFound)
	adm, err := s.RevokeKey(ctx, "adm")
	require.NoError(t, err)
	require.True(t, adm.Revoked)
	require.False(t, adm.Usable(t0))
	_, err = s.RevokeKey(ctx, "adm")
	require.NoError(t, err, "revoking twice is no error")
	ses, err = s.KeyByHash(ctx, "hs")
	require.NoError(t, err)
	require.False(t, ses.Revoked, "the session itself was not touched")
	require.True(t, ses.ParentEnded)
	require.False(t, ses.Usable(t0), "a session ends with the key that made it")
	keys, err = s.ListKeys(ctx)
	require.NoError(t, err)
	require.True(t, keys[1].ParentEnded, "the list shows the session ended too")
	require.False(t, keys[3].ParentEnded, "a key made by no other key has no parent to end with")
	n, err := s.CountKeys(ctx, "admin")
	require.NoError(t, err)
	require.Zero(t, n)

	// The sweep deletes what expired before the given time, and only that.
	swept, err := s.SweepExpiredKeys(ctx, soon)
	require.NoError(t, err)
	require.Zero(t, swept, "a key expiring at the sweep's time is kept")
	swept, err = s.SweepExpiredKeys(ctx, soon.Add(time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, 1, swept)
	_, err = s.KeyByHash(ctx, "hr")
	require.ErrorIs(t, err, job.ErrNotFound)
	swept, err = s.SweepExpiredKeys(ctx, later.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, swept, "the session goes; keys without an expiry stay")
	keys, err = s.ListKeys(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 2)

	// A key whose parent is gone altogether has ended too.
	require.NoError(t, s.CreateKey(ctx, store.Key{ID: "orphan", Kind: "session", Hash: "ho", CreatedAt: t0, ExpiresAt: &later, Parent: "deleted"}))
	k, err = s.KeyByHash(ctx, "ho")
	require.NoError(t, err)
	require.True(t, k.ParentEnded)
	require.False(t, k.Usable(t0))
}

// testConcurrentCompletes finishes two parallel branches of a job at the same
// moment: the task that waits on both must be queued exactly once.
func testConcurrentCompletes(t *testing.T, s store.Store) {
	ctx := context.Background()
	const jobs = 10
	for i := range jobs {
		sha := fmt.Sprintf("cc%02d", i)
		a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "x", Size: 1, SHA256: sha, Key: "sources/" + sha, CreatedAt: t0})
		require.NoError(t, err)
		j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: sha, Source: job.Source{AssetID: a.ID}}
		p := job.Task{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 3}
		e := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 3, DependsOn: []string{p.ID}}
		th := job.Task{ID: job.NewID("t"), Kind: job.KindThumbnails, MaxAttempts: 3, DependsOn: []string{p.ID}}
		v := job.Task{ID: job.NewID("t"), Kind: job.KindVerify, MaxAttempts: 3, DependsOn: []string{e.ID, th.ID}}
		_, _, err = s.CreateJob(ctx, j, []job.Task{p, e, th, v}, t0)
		require.NoError(t, err)
	}
	for range jobs {
		c := claim(t, s, "w", t0)
		require.Equal(t, job.KindProbe, c.Task.Kind)
		require.NoError(t, s.Complete(ctx, c.Lease, job.Result{}, t0))
	}
	byJob := map[string][]job.Lease{}
	for range 2 * jobs {
		c := claim(t, s, "w", t0)
		require.NotNil(t, c)
		byJob[c.Job.ID] = append(byJob[c.Job.ID], c.Lease)
	}
	var wg sync.WaitGroup
	for _, leases := range byJob {
		require.Len(t, leases, 2)
		for _, l := range leases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Complete(ctx, l, job.Result{}, t0); err != nil {
					t.Errorf("complete: %v", err)
				}
			}()
		}
	}
	wg.Wait()
	verifies := 0
	for c := claim(t, s, "w", t0); c != nil; c = claim(t, s, "w", t0) {
		require.Equal(t, job.KindVerify, c.Task.Kind)
		verifies++
	}
	require.Equal(t, jobs, verifies, "every job's verify was queued once")
}

func testWorkers(t *testing.T, s store.Store) {
	ctx := context.Background()
	require.NoError(t, s.CreateKey(ctx, store.Key{ID: "wk", Kind: "worker", Name: "gpu_box-1", Hash: "wh", CreatedAt: t0}))
	require.NoError(t, s.PutWorker(ctx, store.Worker{Name: "gpu_box-1", KeyID: "wk", State: store.WorkerActive, Slots: 2, CreatedAt: t0}))
	require.NoError(t, s.PutWorker(ctx, store.Worker{Name: "gpu%box", KeyID: "wk2", State: store.WorkerActive, Slots: 1, CreatedAt: t0}))
	require.NoError(t, s.SeenWorker(ctx, "gpu_box-1", []string{"h264", "nvenc"}, 3, "v1", t0))
	w, err := s.GetWorker(ctx, "gpu_box-1")
	require.NoError(t, err)
	require.Equal(t, []string{"h264", "nvenc"}, w.Caps)
	require.Equal(t, 3, w.Slots)
	require.Equal(t, t0, *w.LastSeen)
	ws, err := s.ListWorkers(ctx)
	require.NoError(t, err)
	require.Len(t, ws, 2)

	newJob(t, s, "wrk1", 3)
	newJob(t, s, "wrk2", 3)
	mine := claim(t, s, store.WorkerOwnerPrefix("gpu_box-1")+"0", t0)
	other := claim(t, s, store.WorkerOwnerPrefix("gpu%box")+"0", t0)
	task, err := s.GetTask(ctx, mine.Task.ID)
	require.NoError(t, err)
	require.Equal(t, mine.Lease.Fence, task.Fence)
	_, err = s.GetTask(ctx, "nope")
	require.ErrorIs(t, err, job.ErrNotFound)

	require.NoError(t, s.SetWorkerState(ctx, "gpu_box-1", store.WorkerDraining, t0))
	w, _ = s.GetWorker(ctx, "gpu_box-1")
	require.Equal(t, store.WorkerDraining, w.State)
	require.NoError(t, s.Heartbeat(ctx, mine.Lease, job.Progress{}, t0, ttl), "draining keeps running tasks")

	require.NoError(t, s.SetWorkerState(ctx, "gpu_box-1", store.WorkerRevoked, t0))
	require.ErrorIs(t, s.Heartbeat(ctx, mine.Lease, job.Progress{}, t0, ttl), job.ErrLeaseLost, "revoking gives its leases back")
	require.NoError(t, s.Heartbeat(ctx, other.Lease, job.Progress{}, t0, ttl), "another worker (whose name has LIKE wildcards) keeps its lease")
	k, err := s.KeyByHash(ctx, "wh")
	require.NoError(t, err)
	require.True(t, k.Revoked)
	require.ErrorIs(t, s.SetWorkerState(ctx, "gpu_box-1", store.WorkerActive, t0), job.ErrConflict)
	require.ErrorIs(t, s.SetWorkerState(ctx, "ghost", store.WorkerDraining, t0), job.ErrNotFound)

	require.NoError(t, s.CreateKey(ctx, store.Key{ID: "wk2", Kind: "registration", Hash: "wh2", CreatedAt: t0}))
	ok, err := s.ConsumeKey(ctx, "wk2")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.ConsumeKey(ctx, "wk2")
	require.NoError(t, err)
	require.False(t, ok, "a one-time key is consumed once")
}

// testNeeds: a task that needs an encoder goes only to a worker that proved it.
func testNeeds(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "x", Size: 1, SHA256: "needs", Key: "sources/needs", CreatedAt: t0})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: "gpu", ProfileVersion: 1, IdempotencyKey: "needs", Source: job.Source{AssetID: a.ID}}
	_, _, err = s.CreateJob(ctx, j, []job.Task{{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 3, Needs: []string{"nvenc:h264"}}}, t0)
	require.NoError(t, err)
	c, err := s.Claim(ctx, store.ClaimRequest{Owner: "cpu/0", Worker: "cpu", Caps: []string{"h264", "hevc"}, Now: t0, TTL: ttl})
	require.NoError(t, err)
	require.Nil(t, c, "a CPU worker never gets a GPU-only task")
	c, err = s.Claim(ctx, store.ClaimRequest{Owner: "gpu/0", Worker: "gpu", Caps: []string{"h264", "nvenc:h264"}, Now: t0, TTL: ttl})
	require.NoError(t, err)
	require.NotNil(t, c)
	require.Equal(t, []string{"nvenc:h264"}, c.Task.Needs)
}

// testClaimKinds: a claim limited to some kinds (a worker of an older
// protocol version) skips older queued tasks of other kinds; an empty list
// claims nothing; nil claims any kind.
func testClaimKinds(t *testing.T, s store.Store) {
	ctx := context.Background()
	one := func(sha string, k job.Kind, at time.Time) string {
		a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "x", Size: 1, SHA256: sha, Key: "sources/" + sha, CreatedAt: at})
		require.NoError(t, err)
		j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: sha, Source: job.Source{AssetID: a.ID}}
		id := job.NewID("t")
		_, _, err = s.CreateJob(ctx, j, []job.Task{{ID: id, Kind: k, MaxAttempts: 3}}, at)
		require.NoError(t, err)
		return id
	}
	enc := one("kinds-encode", job.KindEncode, t0)
	fin := one("kinds-finalize", job.KindFinalize, t0.Add(time.Second))
	now := t0.Add(time.Minute)
	req := func(owner string, kinds []job.Kind) store.ClaimRequest {
		return store.ClaimRequest{Owner: owner, Worker: owner, Caps: []string{"h264"}, Kinds: kinds, Now: now, TTL: ttl}
	}

	c, err := s.Claim(ctx, req("old/0", []job.Kind{}))
	require.NoError(t, err)
	require.Nil(t, c, "no kind allowed: nothing claimed")
	c, err = s.Claim(ctx, req("old/0", []job.Kind{job.KindFinalize}))
	require.NoError(t, err)
	require.NotNil(t, c, "the finalize task, behind an older encode")
	require.Equal(t, fin, c.Task.ID)
	c, err = s.Claim(ctx, req("old/1", []job.Kind{job.KindFinalize}))
	require.NoError(t, err)
	require.Nil(t, c, "the encode is left for a worker that may run it")
	c, err = s.Claim(ctx, req("new/0", nil))
	require.NoError(t, err)
	require.NotNil(t, c, "nil: any kind")
	require.Equal(t, enc, c.Task.ID)
}

// testDeliveries: attempts come back per job, oldest first, with every field.
func testDeliveries(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := newJob(t, s, "dlv1", 3), newJob(t, s, "dlv2", 3)
	none, err := s.Deliveries(ctx, a.ID)
	require.NoError(t, err)
	require.Empty(t, none)
	want := []store.Delivery{
		{JobID: a.ID, Publisher: "hook", Type: "webhook", Event: "job.succeeded", Attempt: 1, Detail: "HTTP 503", At: t0},
		{JobID: a.ID, Publisher: "hook", Type: "webhook", Event: "job.succeeded", Attempt: 2, OK: true, Final: true, Detail: "HTTP 204", At: t0.Add(time.Second)},
	}
	for _, d := range want {
		require.NoError(t, s.AddDelivery(ctx, d))
	}
	require.NoError(t, s.AddDelivery(ctx, store.Delivery{JobID: b.ID, Publisher: "movies", Type: "library", Event: "job.succeeded", Attempt: 1, OK: true, Final: true, At: t0}))
	got, err := s.Deliveries(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Error(t, s.AddDelivery(ctx, store.Delivery{JobID: "no-such-job", Publisher: "x", Type: "webhook", Event: "job.failed", Attempt: 1, At: t0}), "a delivery belongs to a job")
}

// Ended jobs are counted in the clock hour they ended; running ones and
// those that ended before since are not.
func testThroughput(t *testing.T, s store.Store) {
	ctx := context.Background()
	h0 := t0.Truncate(time.Hour).Add(time.Hour) // tasks become runnable at t0
	finish := func(sha string, at time.Time, fail bool) {
		newJob(t, s, sha, 1)
		for {
			c := claim(t, s, "w1", at)
			if c == nil {
				return
			}
			if fail {
				require.NoError(t, s.Fail(ctx, c.Lease, job.Failure{Message: "bad", Permanent: true}, at))
				return
			}
			require.NoError(t, s.Heartbeat(ctx, c.Lease, job.Progress{Progress: 0.5, Speed: 4}, at, ttl))
			require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Data: json.RawMessage(`{}`)}, at))
		}
	}
	finish("tp-old", t0, false)
	finish("tp-a", h0.Add(5*time.Minute), false)
	finish("tp-b", h0.Add(50*time.Minute), true)
	finish("tp-c", h0.Add(70*time.Minute), false)
	newJob(t, s, "tp-running", 1)
	got, err := s.Throughput(ctx, h0)
	require.NoError(t, err)
	require.Len(t, got, 2, "%+v", got)
	require.True(t, got[0].Hour.Equal(h0), "%v", got[0].Hour)
	require.Equal(t, 1, got[0].Succeeded)
	require.Equal(t, 1, got[0].Failed)
	require.True(t, got[1].Hour.Equal(h0.Add(time.Hour)))
	require.Equal(t, 1, got[1].Succeeded)
	require.Zero(t, got[1].Failed)
}

// testExpand: a probe that plans a chunked encode replaces the encode task
// by split -> chunks (side by side) -> stitch; what waited for the encode
// waits for the stitch, chunks count in the backlog with their own length,
// the job's speed is the sum of its running chunks', and a retry keeps
// the chunks that finished.
func testExpand(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob(t, s, "expand", 1)
	c := claim(t, s, "w1", t0)
	require.Equal(t, job.KindProbe, c.Task.Kind)
	split := job.Task{ID: job.NewID("t"), Kind: job.KindSplit, DependsOn: []string{job.InheritDeps}}
	var chunks []job.Task
	for k := 1; k <= 3; k++ {
		chunks = append(chunks, job.Task{ID: job.NewID("t"), Kind: job.KindChunk, Chunk: k, Seconds: 10, Weight: 0.25, DependsOn: []string{split.ID}})
	}
	stitch := job.Task{ID: job.NewID("t"), Kind: job.KindStitch, DependsOn: []string{chunks[0].ID, chunks[1].ID, chunks[2].ID}}
	tasks := append(append([]job.Task{split}, chunks...), stitch)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Source: &job.Source{AssetID: j.Source.AssetID, Duration: 30},
		Expand: &job.Expansion{Replace: job.KindEncode, Tasks: tasks}}, t0))

	ts, err := s.Tasks(ctx, j.ID)
	require.NoError(t, err)
	var kinds []job.Kind
	for _, x := range ts {
		kinds = append(kinds, x.Kind)
	}
	require.Equal(t, []job.Kind{job.KindProbe, job.KindSplit, job.KindChunk, job.KindChunk, job.KindChunk, job.KindStitch, job.KindFinalize}, kinds)
	require.Equal(t, []string{stitch.ID}, ts[6].DependsOn, "finalize waits for the stitch instead of the encode")
	require.Equal(t, []string{c.Task.ID}, ts[1].DependsOn, "the split inherits the encode's dependencies")
	require.Equal(t, 2, ts[3].Chunk)
	require.Equal(t, 1, ts[3].MaxAttempts, "attempts as the replaced task's")
	require.Equal(t, job.TaskQueued, ts[1].State)
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.InDelta(t, 30, st.EncodeBacklog, 1e-9, "chunks count their own seconds")

	c = claim(t, s, "w1", t0)
	require.Equal(t, job.KindSplit, c.Task.Kind)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{}, t0))
	var running []*job.Claimed
	for range 3 {
		c = claim(t, s, "w", t0)
		require.Equal(t, job.KindChunk, c.Task.Kind, "every chunk is claimable at once")
		require.NoError(t, s.Heartbeat(ctx, c.Lease, job.Progress{Progress: 0.5, Speed: 2}, t0, ttl))
		running = append(running, c)
	}
	require.Equal(t, []int{1, 2, 3}, []int{running[0].Task.Chunk, running[1].Task.Chunk, running[2].Task.Chunk})
	got, err := s.GetJob(ctx, j.ID)
	require.NoError(t, err)
	require.InDelta(t, 6, got.Speed, 1e-9, "the job's speed sums its chunks'")
	require.NoError(t, s.Complete(ctx, running[0].Lease, job.Result{}, t0))
	require.NoError(t, s.Complete(ctx, running[2].Lease, job.Result{}, t0))
	require.NoError(t, s.Fail(ctx, running[1].Lease, job.Failure{Message: "killed"}, t0))
	got, err = s.GetJob(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.Failed, got.State)

	_, err = s.RetryJob(ctx, j.ID, t0)
	require.NoError(t, err)
	c = claim(t, s, "w", t0)
	require.Equal(t, job.KindChunk, c.Task.Kind)
	require.Equal(t, 2, c.Task.Chunk, "only the failed chunk runs again")
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{}, t0))
	c = claim(t, s, "w", t0)
	require.Equal(t, job.KindStitch, c.Task.Kind)
	require.Len(t, c.Deps, 1, "the stitch depends on chunks only")
}

// testExpandSideBySide: an expansion whose tasks end in two (an audio
// and an encode side by side after the probe) makes what waited for the
// replaced task wait for both, claimable only once both are done, reading
// both. The new tasks take the replaced one's place in the queue: with a
// task the job was created with (thumbnails) ready at the same time, the
// job's tasks are claimed in their order, the audio and the encode first.
func testExpandSideBySide(t *testing.T, s store.Store) {
	ctx := context.Background()
	probe := job.Task{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 1}
	encode := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 1, DependsOn: []string{probe.ID}}
	thumbs := job.Task{ID: job.NewID("t"), Kind: job.KindThumbnails, MaxAttempts: 1, DependsOn: []string{probe.ID}}
	fin := job.Task{ID: job.NewID("t"), Kind: job.KindFinalize, MaxAttempts: 1, DependsOn: []string{encode.ID, thumbs.ID}}
	j := newJobOf(t, s, "sidebyside", []job.Task{probe, encode, thumbs, fin})

	later := t0.Add(time.Minute)
	c := claim(t, s, "w1", later)
	require.Equal(t, job.KindProbe, c.Task.Kind)
	audio := job.Task{ID: job.NewID("t"), Kind: job.KindAudio, DependsOn: []string{c.Task.ID}}
	enc := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, DependsOn: []string{c.Task.ID}}
	x := job.Expansion{Replace: job.KindEncode, Tasks: []job.Task{audio, enc}}
	require.Equal(t, []string{audio.ID, enc.ID}, x.Ends())
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Source: &job.Source{AssetID: j.Source.AssetID, Duration: 30}, Expand: &x}, later))

	ts, err := s.Tasks(ctx, j.ID)
	require.NoError(t, err)
	var kinds []job.Kind
	for _, x := range ts {
		kinds = append(kinds, x.Kind)
	}
	require.Equal(t, []job.Kind{job.KindProbe, job.KindAudio, job.KindEncode, job.KindThumbnails, job.KindFinalize}, kinds)
	require.Equal(t, []string{audio.ID, enc.ID, thumbs.ID}, ts[4].DependsOn, "the finalize waits for both")

	first := claim(t, s, "w1", later)
	second := claim(t, s, "w2", later)
	require.Equal(t, job.KindAudio, first.Task.Kind, "in the job's order, not the thumbnails the job was created with first")
	require.Equal(t, job.KindEncode, second.Task.Kind, "side by side")
	third := claim(t, s, "w3", later)
	require.Equal(t, job.KindThumbnails, third.Task.Kind)
	require.NoError(t, s.Complete(ctx, third.Lease, job.Result{}, later))
	require.Nil(t, claim(t, s, "w3", later), "nothing else is ready")
	require.NoError(t, s.Complete(ctx, second.Lease, job.Result{}, later))
	require.Nil(t, claim(t, s, "w3", later), "the encode alone is not enough")
	require.NoError(t, s.Complete(ctx, first.Lease, job.Result{}, later))
	c = claim(t, s, "w3", later)
	require.NotNil(t, c)
	require.Equal(t, job.KindFinalize, c.Task.Kind)
	require.Len(t, c.Deps, 3, "it reads all three")
}

// testSecrets: the first mint is kept (a second replica's mint loses), each
// name is its own, and rotating replaces the value for every later reader.
func testSecrets(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, err := s.Secret(ctx, "links", []byte{1, 2, 3}, t0)
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2, 3}, a)
	again, err := s.Secret(ctx, "links", []byte{9, 9, 9}, t0.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, a, again, "a later mint must not replace the stored secret")
	other, err := s.Secret(ctx, "other", []byte{7}, t0)
	require.NoError(t, err)
	require.Equal(t, []byte{7}, other)

	require.NoError(t, s.RotateSecret(ctx, "links", []byte{4, 5, 6, 7}, t0.Add(time.Minute)))
	got, err := s.Secret(ctx, "links", []byte{8}, t0.Add(2*time.Minute))
	require.NoError(t, err)
	require.Equal(t, []byte{4, 5, 6, 7}, got)
	require.NoError(t, s.RotateSecret(ctx, "fresh", []byte{6}, t0))
	got, err = s.Secret(ctx, "fresh", []byte{8}, t0)
	require.NoError(t, err)
	require.Equal(t, []byte{6}, got, "rotating a secret no one read yet stores it")
}

// testProfileVersions: a changed digest gets the next number, an unchanged
// one keeps its own, a file's higher number is honoured, and servers that
// record at once agree on one number per body.
func testProfileVersions(t *testing.T, s store.Store) {
	ctx := context.Background()
	record := func(name, digest string, atLeast int) int {
		t.Helper()
		v, err := s.RecordProfile(ctx, name, digest, atLeast, []byte(`{"digest":"`+digest+`"}`))
		require.NoError(t, err)
		return v
	}
	require.Equal(t, 1, record("web", "d1", 1))
	require.Equal(t, 1, record("web", "d1", 1), "unchanged: the same version")
	require.Equal(t, 2, record("web", "d2", 1), "an edit without a new number still gets one")
	require.Equal(t, 5, record("web", "d2", 5), "a higher number in the file starts from it")
	require.Equal(t, 6, record("web", "d1", 1), "going back to an older body is a change too")
	require.Equal(t, 3, record("other", "x", 3), "an upgraded server keeps the number its jobs were queued with")

	body, err := s.ProfileVersion(ctx, "web", 2)
	require.NoError(t, err)
	require.JSONEq(t, `{"digest":"d2"}`, string(body))
	_, err = s.ProfileVersion(ctx, "web", 3)
	require.ErrorIs(t, err, job.ErrNotFound)
	_, err = s.ProfileVersion(ctx, "nope", 1)
	require.ErrorIs(t, err, job.ErrNotFound)

	var wg sync.WaitGroup
	got := make([]int, 4)
	for i := range got {
		wg.Go(func() {
			v, err := s.RecordProfile(ctx, "race", "same", 1, []byte(`{}`))
			assert.NoError(t, err)
			got[i] = v
		})
	}
	wg.Wait()
	for _, v := range got {
		require.Equal(t, 1, v, "servers recording the same body at once share its version: %v", got)
	}
}

// testOutbox: a job's events are written for the publishers it names and
// the subscriptions that want them, once per change of state, and are
// leased, retried and settled like tasks; pausing or deleting a
// subscription drops what it was not sent.
func testOutbox(t *testing.T, s store.Store) {
	ctx := context.Background()
	subs := []store.Subscription{
		{ID: "sub_all", Name: "all", URL: "https://a.example/hook", Secret: "s1", Origin: "api", CreatedAt: t0},
		{ID: "sub_done", Name: "done", URL: "https://b.example/hook", Secret: "s2", Events: []string{job.EventSucceeded}, Profiles: []string{"web-hls"}, Origin: "config", CreatedAt: t0},
		{ID: "sub_lib", Name: "lib", URL: "https://c.example/hook", Secret: "s3", Profiles: []string{"mp4-library"}, Origin: "api", CreatedAt: t0},
	}
	for _, sub := range subs {
		require.NoError(t, s.PutSubscription(ctx, sub))
	}
	got, err := s.GetSubscription(ctx, "sub_done")
	require.NoError(t, err)
	require.Equal(t, subs[1].Events, got.Events)
	require.Equal(t, "config", got.Origin)
	list, err := s.ListSubscriptions(ctx)
	require.NoError(t, err)
	require.Len(t, list, 3)

	a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "clip.mp4", Size: 10, SHA256: "out1", Key: "sources/out1", CreatedAt: t0})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: job.IdempotencyKey("out1", "web-hls", 1, ""),
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: "out1"}, Publish: []string{"movies", "hook"}}
	p := job.Task{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 3}
	f := job.Task{ID: job.NewID("t"), Kind: job.KindFinalize, MaxAttempts: 3, DependsOn: []string{p.ID}}
	j, _, err = s.CreateJob(ctx, j, []job.Task{p, f}, t0)
	require.NoError(t, err)
	require.Equal(t, []string{"movies", "hook"}, j.Publish)

	targets := func(os []store.Outbound) []string {
		var out []string
		for _, o := range os {
			out = append(out, o.Event+" "+o.Target)
		}
		return out
	}
	due, err := s.ClaimOutbound(ctx, "srv1", t0, time.Minute, 100)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"job.queued movies", "job.queued hook", "job.queued sub_all"}, targets(due))
	for _, o := range due {
		require.Equal(t, due[0].EventID, o.EventID, "one event, three targets")
		require.Equal(t, j.ID, o.JobID)
		require.Equal(t, o.Target == "sub_all", o.Subscription)
	}
	again, err := s.ClaimOutbound(ctx, "srv2", t0, time.Minute, 100)
	require.NoError(t, err)
	require.Empty(t, again, "leased")
	n, err := s.ReleaseOutbound(ctx, "srv1")
	require.NoError(t, err)
	require.Equal(t, 3, n, "a server starting again holds nothing")
	again, err = s.ClaimOutbound(ctx, "srv1", t0, time.Minute, 100)
	require.NoError(t, err)
	require.Len(t, again, 3)
	settle := func(o store.Outbound, owner string, attempt int, next time.Time) bool {
		ok, err := s.SettleOutbound(ctx, o.ID, owner, attempt, next)
		require.NoError(t, err)
		return ok
	}
	require.False(t, settle(due[0], "srv2", 1, time.Time{}), "only the lease's holder settles it")
	ok, err := s.RenewOutbound(ctx, due[0].ID, "srv2", t0.Add(time.Hour))
	require.NoError(t, err)
	require.False(t, ok)
	ok, err = s.RenewOutbound(ctx, due[2].ID, "srv1", t0.Add(90*time.Second))
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, settle(due[0], "srv1", 1, time.Time{}))
	require.True(t, settle(due[1], "srv1", 1, t0.Add(10*time.Second)))
	pending, err := s.PendingOutbound(ctx, due[0].EventID)
	require.NoError(t, err)
	require.Len(t, pending, 2)
	// The retry is due at +10 s; the third's lease ends at +1 min.
	again, err = s.ClaimOutbound(ctx, "srv1", t0.Add(11*time.Second), time.Minute, 100)
	require.NoError(t, err)
	require.Equal(t, []string{due[1].ID}, []string{again[0].ID})
	require.Len(t, again, 1)
	require.Equal(t, 1, again[0].Attempt)
	again, err = s.ClaimOutbound(ctx, "srv1", t0.Add(80*time.Second), time.Minute, 100)
	require.NoError(t, err)
	require.Equal(t, []string{due[1].ID}, []string{again[0].ID}, "the renewed lease holds")
	again, err = s.ClaimOutbound(ctx, "srv1", t0.Add(3*time.Minute), time.Minute, 100)
	require.NoError(t, err)
	ids := []string{}
	for _, o := range again {
		ids = append(ids, o.ID)
	}
	require.ElementsMatch(t, []string{due[1].ID, due[2].ID}, ids, "leases that ran out are claimed again")
	for _, o := range due[1:] {
		require.True(t, settle(o, "srv1", 2, time.Time{}))
	}

	// Success: once, to the publishers and the subscriptions that want it.
	c := claim(t, s, "w1", t0)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Data: json.RawMessage(`{}`)}, t0))
	c = claim(t, s, "w1", t0)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Outputs: json.RawMessage(`[]`)}, t0))
	due, err = s.ClaimOutbound(ctx, "srv1", t0.Add(4*time.Minute), time.Minute, 100)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"job.succeeded movies", "job.succeeded hook", "job.succeeded sub_all", "job.succeeded sub_done"}, targets(due))
	for _, o := range due {
		if o.Target != "sub_done" {
			require.True(t, settle(o, "srv1", 1, time.Time{}))
		}
	}
	_, err = s.CancelJob(ctx, j.ID, t0)
	require.ErrorIs(t, err, job.ErrConflict)

	// Pausing drops what a subscription was not sent; a canceled job of
	// another profile reaches only the subscriptions for it.
	paused := t0.Add(4 * time.Minute)
	require.NoError(t, s.SubscriptionHealth(ctx, "sub_done", &t0, &paused, "failed for a day"))
	due2, err := s.ClaimOutbound(ctx, "srv1", t0.Add(10*time.Minute), time.Minute, 100)
	require.NoError(t, err)
	require.Empty(t, targets(due2), "sub_done's event was dropped with its pause")
	got, err = s.GetSubscription(ctx, "sub_done")
	require.NoError(t, err)
	require.Equal(t, "failed for a day", got.Note)
	require.NotNil(t, got.PausedAt)
	k := newJob(t, s, "out2", 3) // web-hls, no publishers
	_, err = s.CancelJob(ctx, k.ID, t0)
	require.NoError(t, err)
	due, err = s.ClaimOutbound(ctx, "srv1", t0.Add(20*time.Minute), time.Minute, 100)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"job.queued sub_all", "job.canceled sub_all"}, targets(due), "sub_done is paused, sub_lib wants mp4-library")

	require.NoError(t, s.DeleteSubscription(ctx, "sub_all"))
	require.ErrorIs(t, s.DeleteSubscription(ctx, "sub_all"), job.ErrNotFound)
	_, err = s.GetSubscription(ctx, "sub_all")
	require.ErrorIs(t, err, job.ErrNotFound)
	pending, err = s.PendingOutbound(ctx, due[0].EventID)
	require.NoError(t, err)
	require.Empty(t, pending, "a deleted subscription's events are dropped")
	n, err = s.PruneOutbound(ctx, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Positive(t, n)
	again, err = s.ClaimOutbound(ctx, "srv1", t0.Add(time.Hour), time.Minute, 100)
	require.NoError(t, err)
	for _, o := range again {
		require.NotEqual(t, due[0].EventID, o.EventID)
	}
}

// newJobLabelled is newJob's probe, encode and finalize with labels.
func newJobLabelled(t *testing.T, s store.Store, sha string, labels map[string]string) job.Job {
	t.Helper()
	ctx := context.Background()
	a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "clip.mp4", Size: 10, SHA256: sha, Key: "sources/" + sha, CreatedAt: t0})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: job.IdempotencyKey(sha, "web-hls", 1, ""),
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: sha}, Labels: labels}
	p := job.Task{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 3}
	e := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 3, DependsOn: []string{p.ID}}
	u := job.Task{ID: job.NewID("t"), Kind: job.KindFinalize, MaxAttempts: 3, DependsOn: []string{e.ID}}
	out, _, err := s.CreateJob(ctx, j, []job.Task{p, e, u}, t0)
	require.NoError(t, err)
	return out
}

// testOutboxOptIn: labels and the watched file are kept on a job; a
// subscription with labels hears only of jobs that carry them; progress
// and chunk events go only to subscriptions that name them, each step
// once, with their data, and never to publishers; HandOff is idempotent.
func testOutboxOptIn(t *testing.T, s store.Store) {
	ctx := context.Background()
	require.NoError(t, s.PutSubscription(ctx, store.Subscription{ID: "sub_news", Name: "news", URL: "https://a.example/", Secret: "s",
		Events: []string{job.EventProgress, job.EventChunkSucceeded, job.EventSucceeded}, Labels: map[string]string{"team": "news"}, Origin: "api", CreatedAt: t0}))
	require.NoError(t, s.PutSubscription(ctx, store.Subscription{ID: "sub_plain", Name: "plain", URL: "https://b.example/", Secret: "s", Origin: "api", CreatedAt: t0}))
	got, err := s.GetSubscription(ctx, "sub_news")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"team": "news"}, got.Labels)

	a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "clip.mp4", Size: 10, SHA256: "optin", Key: "sources/optin", CreatedAt: t0})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: job.IdempotencyKey("optin", "web-hls", 1, ""),
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: "optin"}, Publish: []string{"hook"},
		Labels: map[string]string{"team": "news", "tier": "gold"}, Watch: &job.WatchOrigin{Folder: "/srv/in", File: "a/clip.mp4"}}
	p := job.Task{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 1}
	e := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 1, DependsOn: []string{p.ID}}
	u := job.Task{ID: job.NewID("t"), Kind: job.KindFinalize, MaxAttempts: 1, DependsOn: []string{e.ID}}
	j, _, err = s.CreateJob(ctx, j, []job.Task{p, e, u}, t0)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"team": "news", "tier": "gold"}, j.Labels)
	require.Equal(t, &job.WatchOrigin{Folder: "/srv/in", File: "a/clip.mp4"}, j.Watch)
	plain := newJob(t, s, "optin2", 1) // no labels: sub_news hears nothing of it

	// Run j as a split encode: probe, split, three chunks with progress, stitch, finalize.
	c := claim(t, s, "w", t0)
	split := job.Task{ID: job.NewID("t"), Kind: job.KindSplit, DependsOn: []string{c.Task.ID}}
	var chunks []job.Task
	for k := 1; k <= 3; k++ {
		chunks = append(chunks, job.Task{ID: job.NewID("t"), Kind: job.KindChunk, Chunk: k, Seconds: 10, Weight: 0.25, DependsOn: []string{split.ID}})
	}
	stitch := job.Task{ID: job.NewID("t"), Kind: job.KindStitch, DependsOn: []string{chunks[0].ID, chunks[1].ID, chunks[2].ID}}
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Source: &job.Source{AssetID: a.ID, Duration: 30},
		Expand: &job.Expansion{Replace: job.KindEncode, Tasks: append(append([]job.Task{split}, chunks...), stitch)}}, t0))
	for {
		c = claim(t, s, "w", t0)
		if c == nil {
			break
		}
		if c.Task.JobID != j.ID {
			require.NoError(t, s.Fail(ctx, c.Lease, job.Failure{Message: "not this one", Permanent: true}, t0))
			continue
		}
		for _, f := range []float64{0.3, 0.6, 0.9} {
			require.NoError(t, s.Heartbeat(ctx, c.Lease, job.Progress{Progress: f}, t0, ttl))
		}
		require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Outputs: json.RawMessage(`[]`)}, t0))
	}
	done, err := s.GetJob(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.Succeeded, done.State)

	due, err := s.ClaimOutbound(ctx, "srv", t0, time.Minute, 1000)
	require.NoError(t, err)
	heard := map[string][]string{}
	var steps []float64
	var chunkData []map[string]any
	for _, o := range due {
		if o.JobID == plain.ID {
			require.NotEqual(t, "sub_news", o.Target, "a job without the labels")
			continue
		}
		heard[o.Target] = append(heard[o.Target], o.Event)
		switch o.Event {
		case job.EventProgress:
			require.Equal(t, "sub_news", o.Target)
			var d struct{ Progress float64 }
			require.NoError(t, json.Unmarshal(o.Data, &d))
			steps = append(steps, d.Progress)
		case job.EventChunkSucceeded:
			var d map[string]any
			require.NoError(t, json.Unmarshal(o.Data, &d))
			chunkData = append(chunkData, d)
		default:
			require.Nil(t, o.Data)
		}
	}
	require.ElementsMatch(t, []string{job.EventQueued, job.EventSucceeded}, heard["hook"], "publishers hear only the life cycle")
	require.ElementsMatch(t, []string{job.EventQueued, job.EventSucceeded}, heard["sub_plain"], "a subscription naming no events hears only the life cycle")
	require.NotContains(t, heard["sub_news"], job.EventQueued, "not asked for")
	require.Contains(t, heard["sub_news"], job.EventSucceeded)
	require.GreaterOrEqual(t, len(steps), 5, "progress steps: %v", steps)
	slices.Sort(steps) // all written at t0: the outbox's order among them is not theirs
	for i, f := range steps {
		require.Greater(t, f, 0.0)
		require.Less(t, f, 1.0)
		require.InDelta(t, math.Round(f*10)/10, f, 1e-9, "a multiple of a tenth")
		if i > 0 {
			require.Greater(t, f, steps[i-1], "each step once: %v", steps)
		}
	}
	require.Len(t, chunkData, 3)
	var which []float64
	for _, d := range chunkData {
		require.InDelta(t, 3, d["chunks"], 0)
		require.InDelta(t, 10, d["seconds"], 0)
		require.Equal(t, "w", d["worker"])
		which = append(which, d["chunk"].(float64))
	}
	require.ElementsMatch(t, []float64{1, 2, 3}, which)

	// A retry that sets progress back does not write the same steps again.
	again := newJobLabelled(t, s, "optin3", map[string]string{"team": "news"})
	c = claim(t, s, "w", t0)
	require.Equal(t, again.ID, c.Task.JobID)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Data: json.RawMessage(`{}`)}, t0))
	c = claim(t, s, "w", t0)
	require.NoError(t, s.Heartbeat(ctx, c.Lease, job.Progress{Progress: 0.6}, t0, ttl))
	require.NoError(t, s.Fail(ctx, c.Lease, job.Failure{Message: "worker lost"}, t0))
	c = claim(t, s, "w", t0.Add(time.Hour))
	require.NotNil(t, c, "the retry")
	require.NoError(t, s.Heartbeat(ctx, c.Lease, job.Progress{Progress: 0.6}, t0.Add(time.Hour), ttl))
	require.NoError(t, s.Heartbeat(ctx, c.Lease, job.Progress{Progress: 0.9}, t0.Add(time.Hour), ttl))
	due, err = s.ClaimOutbound(ctx, "srv", t0.Add(2*time.Hour), time.Minute, 1000)
	require.NoError(t, err)
	steps = nil
	for _, o := range due {
		if o.JobID == again.ID && o.Event == job.EventProgress {
			var d struct{ Progress float64 }
			require.NoError(t, json.Unmarshal(o.Data, &d))
			steps = append(steps, d.Progress)
		}
	}
	slices.Sort(steps)
	require.NotEmpty(t, steps)
	for i := 1; i < len(steps); i++ {
		require.Greater(t, steps[i], steps[i-1], "a step written twice: %v", steps)
	}

	// HandOff queues an event for publishers once, however often it is called.
	for range 2 {
		require.NoError(t, s.HandOff(ctx, "evt-handed", plain.ID, job.EventSucceeded, []string{"movies", "plex"}, t0))
	}
	due, err = s.ClaimOutbound(ctx, "srv", t0, time.Minute, 1000)
	require.NoError(t, err)
	require.Len(t, due, 2)
	for _, o := range due {
		require.Equal(t, "evt-handed", o.EventID)
		require.Equal(t, job.EventSucceeded, o.Event)
		require.False(t, o.Subscription)
	}
}

// runJob makes a job of version for the asset of sha (the first job of
// that sha makes the asset) and runs it through every task at now.
func runJob(t *testing.T, s store.Store, sha string, version int, replaces string, now time.Time) job.Job {
	t.Helper()
	ctx := context.Background()
	a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: sha + ".mp4", Size: 10, SHA256: sha, Key: "sources/" + sha, CreatedAt: t0})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: version, IdempotencyKey: job.IdempotencyKey(sha, "web-hls", version, ""),
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: sha}, Replaces: replaces}
	j, created, err := s.CreateJob(ctx, j, []job.Task{{ID: job.NewID("t"), Kind: job.KindFinalize, MaxAttempts: 3}}, now)
	require.NoError(t, err)
	require.True(t, created)
	c, err := s.Claim(ctx, store.ClaimRequest{Owner: "w", Worker: "w", Now: now, TTL: ttl})
	require.NoError(t, err)
	require.Equal(t, j.ID, c.Job.ID)
	require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Outputs: json.RawMessage(`[]`)}, now))
	return j
}

// testStreams: each asset and profile has one current job, switched in
// the transaction that ends a newer job; the older one is marked replaced,
// and its outputs listed for removal once the keep time passed.
func testStreams(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.StreamJob(ctx, "nope", "web-hls")
	require.ErrorIs(t, err, job.ErrNotFound)

	v1 := runJob(t, s, "s1", 1, "", t0)
	other := runJob(t, s, "s2", 1, "", t0)
	cur, err := s.StreamJob(ctx, v1.Source.AssetID, "web-hls")
	require.NoError(t, err)
	require.Equal(t, v1.ID, cur)

	v2 := runJob(t, s, "s1", 2, v1.ID, t0.Add(time.Hour))
	cur, err = s.StreamJob(ctx, v1.Source.AssetID, "web-hls")
	require.NoError(t, err)
	require.Equal(t, v2.ID, cur, "the newer version is current once it succeeded")
	old, err := s.GetJob(ctx, v1.ID)
	require.NoError(t, err)
	require.Equal(t, v2.ID, old.ReplacedBy)
	require.Equal(t, t0.Add(time.Hour), *old.ReplacedAt)
	require.Nil(t, old.OutputsRemovedAt)
	got, err := s.GetJob(ctx, v2.ID)
	require.NoError(t, err)
	require.Equal(t, v1.ID, got.Replaces)
	require.Empty(t, got.ReplacedBy)

	// An older version finishing later does not take the name back.
	late := runJob(t, s, "s2", 0, "", t0.Add(2*time.Hour))
	cur, err = s.StreamJob(ctx, other.Source.AssetID, "web-hls")
	require.NoError(t, err)
	require.Equal(t, other.ID, cur)
	got, err = s.GetJob(ctx, late.ID)
	require.NoError(t, err)
	require.Equal(t, other.ID, got.ReplacedBy)

	pub, err := s.PublishedJobs(ctx, "web-hls")
	require.NoError(t, err)
	require.Equal(t, []string{other.ID, v2.ID}, jobIDs(pub))
	pub, err = s.PublishedJobs(ctx, "archive")
	require.NoError(t, err)
	require.Empty(t, pub)

	due, err := s.ReplacedBefore(ctx, t0.Add(90*time.Minute), 10)
	require.NoError(t, err)
	require.Equal(t, []string{v1.ID}, due, "replaced an hour and a half before: due; the late one not yet")
	require.NoError(t, s.OutputsRemoved(ctx, v1.ID, t0.Add(2*time.Hour)))
	due, err = s.ReplacedBefore(ctx, t0.Add(3*time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{late.ID}, due)
	old, err = s.GetJob(ctx, v1.ID)
	require.NoError(t, err)
	require.Equal(t, t0.Add(2*time.Hour), *old.OutputsRemovedAt)
}

// Health checks (jobs without a profile, on their library's asset) make
// no stream, so one never replaces another, and no subscription hears of
// them.
func testHealthChecksMakeNoStream(t *testing.T, s store.Store) {
	ctx := context.Background()
	require.NoError(t, s.PutSubscription(ctx, store.Subscription{ID: "sub-all", Name: "all", URL: "http://127.0.0.1:1/hook", Secret: "x", CreatedAt: t0}))
	a, err := s.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "movies", SHA256: "library:movies", CreatedAt: t0})
	require.NoError(t, err)
	var ids []string
	for _, name := range []string{"a.mkv", "b.mkv"} {
		j := job.Job{ID: job.NewID("j"), IdempotencyKey: "check:" + name, Source: job.Source{AssetID: a.ID, Name: name, Library: "movies"}}
		_, _, err := s.CreateJob(ctx, j, []job.Task{{ID: job.NewID("t"), Kind: job.KindCheck, MaxAttempts: 3, Needs: []string{"library:movies"}}}, t0)
		require.NoError(t, err)
		c, err := s.Claim(ctx, store.ClaimRequest{Owner: "o", Worker: "w", Caps: []string{"library:movies"}, Now: t0, TTL: time.Minute})
		require.NoError(t, err)
		require.Equal(t, j.ID, c.Job.ID)
		require.NoError(t, s.Complete(ctx, c.Lease, job.Result{Data: []byte(`{"state":"ok"}`)}, t0))
		ids = append(ids, j.ID)
	}
	for _, id := range ids {
		j, err := s.GetJob(ctx, id)
		require.NoError(t, err)
		require.Equal(t, job.Succeeded, j.State)
		require.Empty(t, j.ReplacedBy, "a check replaces nothing")
	}
	_, err = s.StreamJob(ctx, a.ID, "")
	require.ErrorIs(t, err, job.ErrNotFound)
	due, err := s.ClaimOutbound(ctx, "srv", t0, time.Minute, 100)
	require.NoError(t, err)
	for _, o := range due {
		require.NotContains(t, ids, o.JobID, "no webhook of a health check")
	}
}

func jobIDs(js []job.Job) []string {
	out := make([]string, len(js))
	for i, j := range js {
		out[i] = j.ID
	}
	return out
}

// testCampaigns: a campaign's items count by where their new jobs stand,
// each item is assigned once, and its state changes only as allowed.
func testCampaigns(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := runJob(t, s, "c1", 1, "", t0)
	b := runJob(t, s, "c2", 1, "", t0)
	c := runJob(t, s, "c3", 1, "", t0)
	camp := store.Campaign{ID: "cmp1", Profile: "web-hls", FromVersion: 1, ToVersion: 2, State: store.CampaignRunning,
		Filter: store.CampaignFilter{Query: "c", Labels: map[string]string{"team": "web"}}, Window: "01:00-07:00", MaxRunning: 2, CreatedAt: t0}
	require.NoError(t, s.CreateCampaign(ctx, camp, []string{a.ID, b.ID, c.ID}))
	require.NoError(t, s.CreateCampaign(ctx, store.Campaign{ID: "cmp0", Profile: "x", State: store.CampaignDone, MaxRunning: 1, CreatedAt: t0.Add(-time.Hour)}, nil))

	got, err := s.GetCampaign(ctx, "cmp1")
	require.NoError(t, err)
	require.Equal(t, store.CampaignCounts{Total: 3, Pending: 3}, got.Counts)
	require.Equal(t, camp.Filter, got.Filter)
	require.Equal(t, "01:00-07:00", got.Window)
	require.Equal(t, 2, got.ToVersion)

	na := runJob(t, s, "c1", 2, a.ID, t0.Add(time.Minute))
	ok, err := s.AssignCampaignItem(ctx, "cmp1", a.ID, na.ID, "")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.AssignCampaignItem(ctx, "cmp1", a.ID, "j-other", "")
	require.NoError(t, err)
	require.False(t, ok, "an item is assigned once")
	ok, err = s.AssignCampaignItem(ctx, "cmp1", b.ID, "", "already replaced")
	require.NoError(t, err)
	require.True(t, ok)
	nc := newJob(t, s, "c3-v2", 3) // queued, not finished
	ok, err = s.AssignCampaignItem(ctx, "cmp1", c.ID, nc.ID, "")
	require.NoError(t, err)
	require.True(t, ok)

	got, err = s.GetCampaign(ctx, "cmp1")
	require.NoError(t, err)
	require.Equal(t, store.CampaignCounts{Total: 3, Succeeded: 1, Skipped: 1, Running: 1}, got.Counts)
	items, err := s.CampaignItems(ctx, "cmp1")
	require.NoError(t, err)
	require.Equal(t, []store.CampaignItem{
		{JobID: a.ID, Name: "c1.mp4", NewJobID: na.ID, State: "succeeded"},
		{JobID: b.ID, Name: "c2.mp4", State: "skipped", Note: "already replaced"},
		{JobID: c.ID, Name: "c3.mp4", NewJobID: nc.ID, State: "queued"},
	}, items)

	list, err := s.ListCampaigns(ctx, "")
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "cmp1", list[0].ID, "newest first")
	require.Equal(t, 0, list[1].Counts.Total)
	list, err = s.ListCampaigns(ctx, store.CampaignDone)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "cmp0", list[0].ID)

	paused, err := s.SetCampaignState(ctx, "cmp1", []string{store.CampaignRunning}, store.CampaignPaused, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, store.CampaignPaused, paused.State)
	require.Nil(t, paused.FinishedAt)
	_, err = s.SetCampaignState(ctx, "cmp0", []string{store.CampaignPaused}, store.CampaignRunning, t0)
	require.ErrorIs(t, err, job.ErrConflict)
	done, err := s.SetCampaignState(ctx, "cmp1", []string{store.CampaignPaused}, store.CampaignCanceled, t0.Add(2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, t0.Add(2*time.Hour), *done.FinishedAt)
	_, err = s.GetCampaign(ctx, "nope")
	require.ErrorIs(t, err, job.ErrNotFound)
}
