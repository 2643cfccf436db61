package live_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/live"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pack"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/sqlstore"
	"github.com/herdhq/herd/internal/testenv"
)

var t0 = time.Date(2026, 1, 7, 12, 0, 0, 0, time.UTC)

// segments has ffmpeg's dash muxer make 1 s segments of a 3 s clip in a
// new folder, its timestamps offset by offset seconds: what an encode
// task's folder holds.
func segments(t *testing.T, offset float64) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, testenv.FFmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=3",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
		"-output_ts_offset", fmt.Sprint(offset),
		"-f", "dash", "-seg_duration", "1", "-use_template", "1", "-use_timeline", "1", "-dash_segment_type", "mp4",
		"-init_seg_name", "init-$RepresentationID$.m4s", "-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s",
		filepath.Join(dir, "manifest.mpd")))
	return dir
}

type farm struct {
	st  *sqlstore.Store
	hub *live.Hub
}

func newFarm(t *testing.T) *farm {
	st, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "herd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	files := &pipeline.LocalFiles{Blobs: blobs, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	hub := live.New(st, files, slog.New(slog.NewTextHandler(io.Discard, nil)))
	live.ListFor(hub, 0, time.Now) // these tests complete tasks behind the hub's back
	return &farm{st: st, hub: hub}
}

// planned makes a web job of its own source whose probe made plan (and,
// when expand says so, replaced its encode task), a finalize task last,
// so that the job runs on after its encode.
func (f *farm) planned(t *testing.T, sha string, plan media.Plan, expand *job.Expansion) {
	ctx := context.Background()
	a, err := f.st.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "clip.mp4", Size: 10, SHA256: sha, Key: "sources/" + sha, CreatedAt: t0})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: job.IdempotencyKey(sha, "web-hls", 1, ""),
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: sha}}
	probe := job.Task{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 3}
	enc := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 3, DependsOn: []string{probe.ID}}
	fin := job.Task{ID: job.NewID("t"), Kind: job.KindFinalize, MaxAttempts: 3, DependsOn: []string{enc.ID}}
	_, _, err = f.st.CreateJob(ctx, j, []job.Task{probe, enc, fin}, t0)
	require.NoError(t, err)
	plan.Format, plan.SegmentSeconds, plan.FPS, plan.Duration = "hls", 1, 25, 3
	plan.Rungs = []media.RungPlan{{Name: "90p", Width: 160, Height: 90, Bitrate: 200_000, MaxRate: 300_000}}
	data, err := json.Marshal(plan)
	require.NoError(t, err)
	c := f.claim(t, t0)
	require.Equal(t, job.KindProbe, c.Task.Kind)
	require.NoError(t, f.st.Complete(ctx, c.Lease, job.Result{Plan: data, Expand: expand}, t0))
}

// chunked makes a planned web job split in two chunks of 1 s segments
// (the first 2 s long) and claims both chunk tasks.
func (f *farm) chunked(t *testing.T) (first, second *job.Claimed) {
	chunk := func(k int) job.Task {
		return job.Task{ID: job.NewID("t"), Kind: job.KindChunk, Chunk: k, MaxAttempts: 3, DependsOn: []string{job.InheritDeps}}
	}
	f.planned(t, "chunked", media.Plan{Chunks: []media.ChunkPlan{{First: 0, End: 50}, {First: 50}}},
		&job.Expansion{Replace: job.KindEncode, Tasks: []job.Task{chunk(1), chunk(2)}})
	first, second = f.claim(t, t0), f.claim(t, t0)
	if first.Task.Chunk == 2 {
		first, second = second, first
	}
	require.Equal(t, []int{1, 2}, []int{first.Task.Chunk, second.Task.Chunk})
	return first, second
}

// A chunk whose hand-overs stopped short (its task succeeded all the
// same) holds the chunks after it back: they would start early, out of
// step with the other renditions; and nothing past a chunk's length is
// listed.
func TestChunkListedWholeBeforeTheNext(t *testing.T) {
	testenv.NeedFFmpeg(t)
	ctx := context.Background()
	f := newFarm(t)
	first, second := f.chunked(t)
	a := segments(t, 0)
	require.NoError(t, f.hub.HandOver(ctx, first, pipeline.ChunkStep(1), a, "chunk-0-00001.m4s"))
	require.NoError(t, os.Link(filepath.Join(a, "chunk-0-00003.m4s"), filepath.Join(a, "chunk-0-00006.m4s")))
	require.ErrorIs(t, f.hub.HandOver(ctx, first, pipeline.ChunkStep(1), a, "chunk-0-00006.m4s"), live.ErrRefused, "more than a 2 s chunk of 1 s segments can hold, with some to spare")
	require.NoError(t, f.hub.HandOver(ctx, second, pipeline.ChunkStep(2), a, "chunk-0-00001.m4s"))
	require.NoError(t, f.st.Complete(ctx, first.Lease, job.Result{}, t0))
	require.NoError(t, f.st.Complete(ctx, second.Lease, job.Result{}, t0))
	media0 := f.file(t, first.Job.ID, "media_0.m3u8")
	require.Len(t, entries(media0), 2, "chunk 1's first segment only: its second never came")
	require.NotContains(t, media0, "#EXT-X-ENDLIST", "the job still runs; what is listed cannot end early")
}

// encoding makes a planned web job and claims its encode task.
func (f *farm) encoding(t *testing.T) *job.Claimed {
	f.planned(t, "live", media.Plan{}, nil)
	c := f.claim(t, t0)
	require.Equal(t, job.KindEncode, c.Task.Kind)
	return c
}

func (f *farm) claim(t *testing.T, now time.Time) *job.Claimed {
	c, err := f.st.Claim(context.Background(), store.ClaimRequest{Owner: "w", Worker: "w", Now: now, TTL: time.Minute})
	require.NoError(t, err)
	require.NotNil(t, c)
	return c
}

func (f *farm) file(t *testing.T, jobID, p string) string {
	got, err := f.hub.File(context.Background(), jobID, p)
	require.NoError(t, err, p)
	return string(got.Body)
}

// A retried encode: what the lost attempt listed stays; the new attempt
// goes on after it, behind a new EXT-X-MAP, its segments moved onto the
// first one's timeline; the lost attempt lists nothing more.
func TestRetriedEncodeGoesOnWhereTheLostAttemptStopped(t *testing.T) {
	testenv.NeedFFmpeg(t)
	ctx := context.Background()
	f := newFarm(t)
	first := f.encoding(t)
	a, b := segments(t, 0), segments(t, 10) // the second attempt's clock starts elsewhere

	var le *live.Error
	_, err := f.hub.File(ctx, first.Job.ID, live.MasterName)
	require.True(t, errors.As(err, &le) && le.Code == "not_ready", "no master before a segment: %v", err)

	require.NoError(t, f.hub.HandOver(ctx, first, pipeline.StepEncode, a, "chunk-0-00001.m4s"))
	media0 := f.file(t, first.Job.ID, "media_0.m3u8")
	require.Contains(t, media0, "#EXT-X-PLAYLIST-TYPE:EVENT")
	require.NotContains(t, media0, "#EXT-X-ENDLIST")
	require.Contains(t, f.file(t, first.Job.ID, live.MasterName), "BANDWIDTH=300000")

	// A name no encode makes, and bytes that are not a segment, are refused.
	require.ErrorIs(t, f.hub.HandOver(ctx, first, pipeline.StepEncode, a, "chunk-1-00001.m4s"), live.ErrRefused)
	require.NoError(t, os.WriteFile(filepath.Join(a, "chunk-0-00009.m4s"), []byte("not a segment"), 0o600))
	require.ErrorIs(t, f.hub.HandOver(ctx, first, pipeline.StepEncode, a, "chunk-0-00009.m4s"), live.ErrRefused)

	// The lease runs out; another attempt takes the task.
	_, err = f.st.ReapExpired(ctx, t0.Add(time.Hour), time.Second)
	require.NoError(t, err)
	second := f.claim(t, t0.Add(2*time.Hour))
	require.Equal(t, first.Task.ID, second.Task.ID)
	require.ErrorIs(t, f.hub.HandOver(ctx, first, pipeline.StepEncode, a, "chunk-0-00002.m4s"), job.ErrLeaseLost, "the lost attempt lists nothing")
	for _, n := range []string{"chunk-0-00001.m4s", "chunk-0-00002.m4s", "chunk-0-00003.m4s"} {
		require.NoError(t, f.hub.HandOver(ctx, second, pipeline.StepEncode, b, n))
	}
	media0 = f.file(t, first.Job.ID, "media_0.m3u8")
	one, two := fmt.Sprintf("%s-%d/", first.Task.ID, first.Lease.Fence), fmt.Sprintf("%s-%d/", second.Task.ID, second.Lease.Fence)
	require.Equal(t, []string{
		`#EXT-X-MAP:URI="` + one + `r0-init.m4s"`, one + "r0-1.m4s",
		`#EXT-X-MAP:URI="` + two + `r0-init.m4s"`, two + "r0-2.m4s", two + "r0-3.m4s",
	}, entries(media0))
	require.NotContains(t, media0, "#EXT-X-ENDLIST", "the encode runs")

	// Served, the second attempt's segments continue the first's timeline.
	end := 0.0
	for i, uri := range []string{one + "r0-1.m4s", two + "r0-2.m4s", two + "r0-3.m4s"} {
		init := f.file(t, first.Job.ID, strings.Split(uri, "/")[0]+"/r0-init.m4s")
		tm := measure(t, init, f.file(t, first.Job.ID, uri))
		start := float64(tm.Start) / float64(tm.Timescale)
		if i > 0 {
			require.InDelta(t, end, start, 1e-6, "segment %d starts where %d ends", i+1, i)
		}
		end = start + float64(tm.Duration)/float64(tm.Timescale)
	}
	_, err = f.hub.File(ctx, first.Job.ID, two+"r0-1.m4s")
	require.True(t, errors.As(err, &le) && le.Status == 404, "a segment not listed is not served")

	require.NoError(t, f.st.Complete(ctx, second.Lease, job.Result{}, t0.Add(2*time.Hour)))
	require.Contains(t, f.file(t, first.Job.ID, "media_0.m3u8"), "#EXT-X-ENDLIST", "the encode is done")

	fin := f.claim(t, t0.Add(2*time.Hour))
	require.Equal(t, job.KindFinalize, fin.Task.Kind)
	require.NoError(t, f.st.Complete(ctx, fin.Lease, job.Result{}, t0.Add(2*time.Hour)))

	// An hour after the job ended (t0 is hours before the hub's clock),
	// its live copies go.
	n, err := f.hub.Sweep(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = f.hub.File(ctx, first.Job.ID, one+"r0-1.m4s")
	require.True(t, errors.As(err, &le) && le.Status == 404, "swept")
	n, err = f.hub.Sweep(ctx, 10)
	require.NoError(t, err)
	require.Zero(t, n)
}

// entries are a playlist's EXT-X-MAP tags and segment URIs.
func entries(playlist string) []string {
	var out []string
	for _, l := range strings.Split(playlist, "\n") {
		if strings.HasPrefix(l, "#EXT-X-MAP") || (l != "" && !strings.HasPrefix(l, "#")) {
			out = append(out, l)
		}
	}
	return out
}

func measure(t *testing.T, init, seg string) pack.Timing {
	d := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(d, "i"), []byte(init), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(d, "s"), []byte(seg), 0o600))
	tm, err := pack.MeasureSegment(filepath.Join(d, "i"), filepath.Join(d, "s"))
	require.NoError(t, err)
	return tm
}

// countingStore counts the listings read, and runs during (when set)
// once a listing's segments are read.
type countingStore struct {
	*sqlstore.Store
	listings int
	during   func()
}

func (c *countingStore) LiveSegments(ctx context.Context, jobID string) ([]store.LiveSegment, error) {
	c.listings++
	segs, err := c.Store.LiveSegments(ctx, jobID)
	if c.during != nil {
		during := c.during
		c.during = nil
		during()
	}
	return segs, err
}

// Every viewer of a job is answered from one listing a second: the store
// is read once for any number of playlist and segment requests within
// it. A segment the hub hands over shows at once; what changed behind its
// back shows within the second; a segment listed since the kept listing
// was read (its playlist came from another server) is still served.
func TestViewersShareOneListing(t *testing.T) {
	testenv.NeedFFmpeg(t)
	ctx := context.Background()
	f := newFarm(t)
	c := f.encoding(t)
	cs := &countingStore{Store: f.st}
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	hub := live.New(cs, &pipeline.LocalFiles{Blobs: blobs, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := t0
	live.ListFor(hub, time.Second, func() time.Time { return now })
	a := segments(t, 0)
	handOver := func(h *live.Hub, name string) {
		require.NoError(t, h.HandOver(ctx, c, pipeline.StepEncode, a, name))
		now = now.Add(time.Millisecond) // the requests come after it
	}
	handOver(hub, "chunk-0-00001.m4s")
	get := func(p string) string {
		got, err := hub.File(ctx, c.Job.ID, p)
		require.NoError(t, err, p)
		return string(got.Body)
	}
	attempt := fmt.Sprintf("%s-%d/", c.Task.ID, c.Lease.Fence)
	for range 10 { // ten viewers
		get(live.MasterName)
		require.Len(t, entries(get("media_0.m3u8")), 2)
		get(attempt + "r0-init.m4s")
		get(attempt + "r0-1.m4s")
	}
	require.Equal(t, 1, cs.listings, "forty requests, one listing")

	handOver(hub, "chunk-0-00002.m4s")
	require.Len(t, entries(get("media_0.m3u8")), 3, "handed over here: listed at once")
	require.Equal(t, 2, cs.listings)

	// Another server lists segment 3 (the store has it); this one's kept
	// listing does not, but serves it when asked, reading afresh.
	other := live.New(f.st, &pipeline.LocalFiles{Blobs: blobs, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	handOver(other, "chunk-0-00003.m4s")
	get(attempt + "r0-3.m4s")
	require.Equal(t, 3, cs.listings)

	// A segment handed over while a listing was being read: that listing
	// lacks it and is not kept, so the next request lists it.
	now = now.Add(time.Second)
	cs.during = func() { handOver(hub, "chunk-0-00004.m4s") }
	require.NoError(t, os.Link(filepath.Join(a, "chunk-0-00003.m4s"), filepath.Join(a, "chunk-0-00004.m4s")))
	require.Len(t, entries(get("media_0.m3u8")), 4, "read before segment 4 was recorded")
	require.Len(t, entries(get("media_0.m3u8")), 5, "and not kept")
	require.Equal(t, 5, cs.listings)

	// The encode ends behind the hub's back: its playlist ends within the
	// second.
	require.NoError(t, f.st.Complete(ctx, c.Lease, job.Result{}, t0))
	require.NotContains(t, get("media_0.m3u8"), "#EXT-X-ENDLIST", "the kept listing, from before")
	now = now.Add(time.Second)
	require.Contains(t, get("media_0.m3u8"), "#EXT-X-ENDLIST")
	require.Equal(t, 6, cs.listings)
}
