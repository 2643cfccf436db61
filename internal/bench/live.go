package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"time"

	"github.com/Eyevinn/hls-m3u8/m3u8"

	"github.com/herdhq/herd/internal/client"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/pack"
)

// liveInput is the time-to-first-playable input: 60 s of 1080p (quick:
// 4 s of 360p).
func (e *env) liveInput() input {
	if e.Quick {
		return input{name: "bench-360p-4s-v1.mp4", seconds: 4, width: 640, height: 360}
	}
	return input{name: "bench-1080p-60s-v1.mp4", seconds: 60, width: 1920, height: 1080}
}

// liveRun is one job's timeline, from the upload's start.
type liveRun struct {
	encode   time.Duration // the encode task started
	playable time.Duration // everything a player fetches to start was there
	done     time.Duration // the job succeeded
	first    float64       // the first video segment's length, seconds
}

// timeToPlay measures how soon a web-hls job can be watched: from the
// upload's start, polling every 10 ms, until its live master playlist,
// every media playlist it names, and the init and first segment of each
// answer; that is what hls.js fetches before it starts playing.
func timeToPlay(ctx context.Context, e *env, s *Section) error {
	src, in, err := e.make(ctx, e.liveInput())
	if err != nil {
		return err
	}
	work, err := e.dir("live")
	if err != nil {
		return err
	}
	runs := 3
	if e.Quick {
		runs = 1
	}
	var all []liveRun
	for i := range runs {
		h, err := e.startHerd(ctx, filepath.Join(work, fmt.Sprintf("herd-%d", i)), nil)
		if err != nil {
			return err
		}
		r, err := h.playable(ctx, src)
		if serr := h.stop(); err == nil {
			err = serr
		}
		if err != nil {
			return err
		}
		e.logf("live: run %d: encode at %s, playable at %s, done at %s", i+1, secs(r.encode), secs(r.playable), secs(r.done))
		all = append(all, r)
	}
	pick := func(f func(liveRun) time.Duration) time.Duration {
		v := make([]time.Duration, len(all))
		for i, r := range all {
			v[i] = f(r)
		}
		return median(v)
	}
	encode, playable, done := pick(func(r liveRun) time.Duration { return r.encode }), pick(func(r liveRun) time.Duration { return r.playable }),
		pick(func(r liveRun) time.Duration { return r.done })
	after := pick(func(r liveRun) time.Duration { return r.playable - r.encode })
	t := s.table("From the start of the upload (median)", "Event", "Time")
	t.add("encode task starts", secs(encode))
	t.add("first playable (live master, media playlists, first segment of every rendition)", secs(playable))
	t.add("job succeeded (verified outputs in place)", secs(done))
	t.add("first playable, after the encode starts", secs(after))
	s.target("first playable ≤ 3 s after the encode starts", secs(after), after <= 3*time.Second)
	s.About = append(s.About,
		"Input: "+in.about+".",
		"herd: `herd serve` (SQLite, local disk, in-process workers) on a fresh data folder, profile web-hls. The clock starts with the upload (POST /api/v1/jobs); a poll every 10 ms asks for the job's live master playlist, every media playlist it names, and the init and first media segment of each, which is what hls.js fetches before it plays. The encode task's start is its own started_at.",
		fmt.Sprintf("The first video segment lasts %.2f s: the encode must finish it (and every rung's) before anything can play.", all[0].first),
		fmt.Sprintf("Median of %d runs.", runs))
	return nil
}

// playable uploads src and watches its job: see timeToPlay.
func (h *herdServer) playable(ctx context.Context, src string) (liveRun, error) {
	t0 := time.Now()
	j, _, err := h.Client.Submit(ctx, src, "web-hls", client.SubmitOptions{}, nil)
	if err != nil {
		return liveRun{}, fmt.Errorf("submit: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	var r liveRun
	for {
		if r.playable == 0 {
			if first, ok := h.livePlayable(ctx, j.ID); ok {
				r.playable, r.first = time.Since(t0), first
			}
		}
		view, err := h.Client.Job(ctx, j.ID)
		if err != nil {
			return r, err
		}
		if r.encode == 0 {
			if at := encodeStart(view); !at.IsZero() {
				r.encode = at.Sub(t0)
			}
		}
		if view.State.Final() {
			if view.State != job.Succeeded {
				return r, fmt.Errorf("job %s %s: %s", view.ID, view.State, view.Error)
			}
			r.done = time.Since(t0)
			if r.playable == 0 || r.encode == 0 {
				return r, fmt.Errorf("job %s succeeded before its live playlist was seen playable", view.ID)
			}
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// encodeStart is when the job's encode task started (zero before).
func encodeStart(v jobview.JobView) time.Time {
	for _, t := range v.Tasks {
		if t.Kind == job.KindEncode && t.StartedAt != nil {
			return *t.StartedAt
		}
	}
	return time.Time{}
}

// livePlayable fetches what a player needs to start the job's live
// playlist; it reports the first video segment's length once all of it is
// there.
func (h *herdServer) livePlayable(ctx context.Context, id string) (float64, bool) {
	base := "/api/v1/jobs/" + id + "/live/"
	get := func(name string) ([]byte, bool) {
		rc, err := h.opener(ctx)(base + name)
		if err != nil {
			return nil, false
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return b, err == nil
	}
	body, ok := get("master.m3u8")
	if !ok {
		return 0, false
	}
	p, kind, err := m3u8.DecodeFrom(bytes.NewReader(body), true)
	if err != nil || kind != m3u8.MASTER {
		return 0, false
	}
	var names []string
	seen := map[string]bool{}
	for _, v := range p.(*m3u8.MasterPlaylist).Variants {
		for _, uri := range append([]string{v.URI}, alternativeURIs(v.Alternatives)...) {
			if !seen[uri] {
				seen[uri] = true
				names = append(names, uri)
			}
		}
	}
	first := 0.0
	for i, name := range names {
		body, ok := get(name)
		if !ok {
			return 0, false
		}
		mp, kind, err := m3u8.DecodeFrom(bytes.NewReader(body), true)
		if err != nil || kind != m3u8.MEDIA {
			return 0, false
		}
		media := mp.(*m3u8.MediaPlaylist)
		segs := pack.Segments(media)
		init := media.Map // the EXT-X-MAP before the first segment
		if len(segs) > 0 && segs[0].Map != nil {
			init = segs[0].Map
		}
		if len(segs) == 0 || init == nil {
			return 0, false
		}
		dir := path.Dir(name)
		if _, ok := get(path.Join(dir, init.URI)); !ok {
			return 0, false
		}
		if _, ok := get(path.Join(dir, segs[0].URI)); !ok {
			return 0, false
		}
		if i == 0 {
			first = segs[0].Duration
		}
	}
	return first, len(names) > 0
}

func alternativeURIs(alts []*m3u8.Alternative) []string {
	var out []string
	for _, a := range alts {
		if a.URI != "" {
			out = append(out, a.URI)
		}
	}
	return out
}
