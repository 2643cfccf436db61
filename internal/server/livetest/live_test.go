// Package livetest watches the live playlists of web-hls jobs while a real
// herd serve (in-process workers, real ffmpeg) encodes them, as a player
// would: polling every playlist, fetching every segment listed. Its own
// package, so its jobs have their own test timeout.
package livetest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/client"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/pack"
	"github.com/herdhq/herd/internal/server"
	"github.com/herdhq/herd/internal/server/servertest"
	"github.com/herdhq/herd/internal/testenv"
)

const token = "live-playlists-admin-token-0123456789"

// A web-hls job's live playlists, unsplit and in chunks: playable while
// the job runs, never listing a segment that cannot be fetched, never
// changing what they listed, on one timeline across chunks, and ended
// with EXT-X-ENDLIST once the encode is done, their segments then the
// same bytes as the verified outputs'.
func TestLivePlaylists(t *testing.T) {
	testenv.NeedFFmpeg(t)
	dir := t.TempDir()
	addr := servertest.Start(t, server.Config{Data: t.TempDir(), Addr: "127.0.0.1:0", LocalWorkers: 2, Grace: time.Second, AdminToken: token})
	c := client.New("http://"+addr, token)
	four := 4.0
	for i, tc := range []struct {
		name   string
		chunks *float64
	}{{"unsplit", nil}, {"in chunks", &four}} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(dir, tc.name+".mp4")
			require.NoError(t, testenv.Clip{Size: "480x270", Rate: 25, Seconds: 13, Tone: 440 + 110*i}.Make(src))
			j, _, err := c.Submit(t.Context(), src, "web-hls", client.SubmitOptions{ChunkSeconds: tc.chunks}, nil)
			require.NoError(t, err)
			w := &watcher{t: t, base: "http://" + addr + "/api/v1/jobs/" + j.ID, seen: map[string][]seg{}, bytes: map[string][]byte{}}
			final := w.watch(t.Context(), c, j.ID)
			require.Equal(t, job.Succeeded, final.State, final.Error)
			if tc.chunks != nil {
				require.Greater(t, len(final.Tasks), 5, "the job was split")
			}
			require.True(t, w.playableWhileRunning, "the live master and a segment of every rendition were there before the job succeeded")
			w.poll(t.Context()) // after the end: every playlist ended, nothing changed
			require.NotEmpty(t, w.seen)
			for name, segs := range w.seen {
				require.True(t, w.ended[name], "%s has EXT-X-ENDLIST once the encode is done", name)
				vod := w.media(t.Context(), "/outputs/"+name)
				require.Len(t, segs, len(vod), "%s lists every segment the outputs have", name)
				for i, s := range segs {
					require.InDelta(t, vod[i].dur, s.dur, 1e-6, "%s segment %d", name, i+1)
					want := w.get(t.Context(), "/outputs/"+vod[i].uri)
					require.True(t, bytes.Equal(want, w.bytes[s.uri]), "%s segment %d is the bytes the verified output has", name, i+1)
				}
			}
		})
	}
}

type seg struct {
	uri, init string
	dur       float64
	end       float64 // where it ends on the live timeline (set once fetched)
}

type watcher struct {
	t                    *testing.T
	base                 string
	seen                 map[string][]seg  // media playlist → what it listed
	ended                map[string]bool   // media playlist → EXT-X-ENDLIST seen
	bytes                map[string][]byte // segment URI → its bytes
	playableWhileRunning bool
}

// watch polls the job's live playlists every 20 ms until the job ends.
func (w *watcher) watch(ctx context.Context, c *client.Client, id string) jobview.JobView {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		ready := w.poll(ctx)
		j, err := c.Job(ctx, id)
		require.NoError(w.t, err)
		if ready && j.State == job.Running {
			w.playableWhileRunning = true
		}
		if j.State.Final() {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatal("the job did not end in 3 minutes")
	return jobview.JobView{}
}

// poll reads the live master and every media playlist it names, checks
// each listed only more than before, and fetches what is new. It reports
// whether every rendition listed a segment.
func (w *watcher) poll(ctx context.Context) bool {
	t := w.t
	status, body := w.fetch(ctx, "/live/master.m3u8")
	if status == http.StatusNotFound {
		return false
	}
	require.Equal(t, http.StatusOK, status, string(body))
	p, kind, err := m3u8.DecodeFrom(bytes.NewReader(body), true)
	require.NoError(t, err)
	require.Equal(t, m3u8.MASTER, kind)
	master := p.(*m3u8.MasterPlaylist)
	var names []string
	for _, v := range master.Variants {
		names = append(names, v.URI)
		require.NotZero(t, v.Bandwidth)
		require.NotEmpty(t, v.Codecs)
		for _, a := range v.Alternatives {
			if a.URI != "" && !slices.Contains(names, a.URI) {
				names = append(names, a.URI)
			}
		}
	}
	if w.ended == nil {
		w.ended = map[string]bool{}
	}
	all := true
	for _, name := range names {
		segs, ended := w.live(ctx, name)
		prev := w.seen[name]
		require.GreaterOrEqual(t, len(segs), len(prev), "%s lists fewer segments than before", name)
		for i, s := range prev {
			require.Equal(t, [3]any{s.uri, s.init, s.dur}, [3]any{segs[i].uri, segs[i].init, segs[i].dur}, "%s changed what it listed", name)
			segs[i].end = s.end
		}
		if w.ended[name] {
			require.Len(t, segs, len(prev), "%s grew after EXT-X-ENDLIST", name)
		}
		w.ended[name] = ended
		for i := len(prev); i < len(segs); i++ {
			s := segs[i]
			init := w.get(ctx, "/live/"+s.init)
			data := w.get(ctx, "/live/"+s.uri)
			w.bytes[s.uri] = data
			// Its boxes say what the playlist says, and it starts where
			// the one before it ends: one timeline across chunks.
			d := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(d, "init.m4s"), init, 0o600))
			require.NoError(t, os.WriteFile(filepath.Join(d, "seg.m4s"), data, 0o600))
			tm, err := pack.MeasureSegment(filepath.Join(d, "init.m4s"), filepath.Join(d, "seg.m4s"))
			require.NoError(t, err, "%s segment %d", name, i+1)
			require.InDelta(t, s.dur, float64(tm.Duration)/float64(tm.Timescale), 1e-6)
			if i > 0 {
				require.InDelta(t, segs[i-1].end, float64(tm.Start)/float64(tm.Timescale), 1e-6, "%s segment %d starts where %d ends", name, i+1, i)
			}
			segs[i].end = float64(tm.Start+tm.Duration) / float64(tm.Timescale)
		}
		w.seen[name] = segs
		all = all && len(segs) > 0
	}
	return all
}

// live reads a live media playlist: an EVENT playlist.
func (w *watcher) live(ctx context.Context, name string) ([]seg, bool) {
	status, body := w.fetch(ctx, "/live/"+name)
	require.Equal(w.t, http.StatusOK, status, string(body))
	require.Contains(w.t, string(body), "#EXT-X-PLAYLIST-TYPE:EVENT")
	return w.parse(body), bytes.Contains(body, []byte("#EXT-X-ENDLIST"))
}

// media reads a media playlist of the outputs.
func (w *watcher) media(ctx context.Context, path string) []seg {
	return w.parse(w.get(ctx, path))
}

func (w *watcher) parse(body []byte) []seg {
	p, kind, err := m3u8.DecodeFrom(bytes.NewReader(body), true)
	require.NoError(w.t, err)
	require.Equal(w.t, m3u8.MEDIA, kind)
	mp := p.(*m3u8.MediaPlaylist)
	var out []seg
	init := ""
	if mp.Map != nil {
		init = mp.Map.URI
	}
	for _, s := range pack.Segments(mp) {
		if s.Map != nil {
			init = s.Map.URI
		}
		out = append(out, seg{uri: s.URI, init: init, dur: s.Duration})
	}
	return out
}

func (w *watcher) get(ctx context.Context, path string) []byte {
	status, body := w.fetch(ctx, path)
	require.Equal(w.t, http.StatusOK, status, "%s: %s", path, body)
	return body
}

func (w *watcher) fetch(ctx context.Context, path string) (int, []byte) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.base+path, nil)
	require.NoError(w.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(w.t, err)
	return resp.StatusCode, body
}
