package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
)

func out(name, kind, file, codec string) pipeline.Output {
	return pipeline.Output{Output: media.Output{Name: name, Kind: kind, Path: file, Codec: codec}, URL: "/api/v1/jobs/j1/outputs/" + file}
}

func TestUnplayable(t *testing.T) {
	t.Parallel()
	hevc := out("video", "mkv", "Film.mkv", "hevc")
	for _, tc := range []struct {
		name string
		outs []pipeline.Output
		want *noPlay
	}{
		{"hevc in matroska", []pipeline.Output{hevc, out("poster", "poster", "poster.jpg", "mjpeg")},
			&noPlay{File: "Film.mkv", Why: "HEVC in Matroska", URL: "/api/v1/jobs/j1/outputs/Film.mkv"}},
		{"an unnamed codec", []pipeline.Output{out("video", "mkv", "a/b.mkv", "mpeg2video")},
			&noPlay{File: "b.mkv", Why: "MPEG2VIDEO in Matroska", URL: "/api/v1/jobs/j1/outputs/a/b.mkv"}},
		{"h264 in matroska: the browser decides", []pipeline.Output{out("video", "mkv", "x.mkv", "h264")}, nil},
		{"a ladder beside it", []pipeline.Output{hevc, out("master", "hls", "master.m3u8", "")}, nil},
		{"hevc in mp4: the browser decides", []pipeline.Output{out("video", "mp4", "x.mp4", "hevc")}, nil},
		{"no outputs", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, unplayable(tc.outs))
		})
	}
}

// The notice is in the first paint, with the player hidden; without one
// the player box waits, hidden, for the script.
func TestJobPageNoPlayNotice(t *testing.T) {
	t.Parallel()
	u, err := New(Deps{Profiles: profile.Builtin(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	render := func(j *jobPage) string {
		w := httptest.NewRecorder()
		u.render(w, httptest.NewRequest(http.MethodGet, "/jobs/j1", nil), http.StatusOK, "job", page{Title: "Film.mkv", JobID: "j1", Job: j})
		return w.Body.String()
	}
	body := render(&jobPage{Name: "Film.mkv", State: "succeeded", NoPlay: unplayable([]pipeline.Output{out("video", "mkv", "Film.mkv", "hevc")})})
	require.Contains(t, body, `<section id="player-box" aria-labelledby="h-player">`)
	require.Contains(t, body, `<p id="j-noplay" class="notice" role="status">This browser cannot play <span class="file">Film.mkv</span> (HEVC in Matroska). `+
		`<a href="/api/v1/jobs/j1/outputs/Film.mkv" download="Film.mkv">Download Film.mkv</a>, or play it in VLC, mpv, Plex or Jellyfin.</p>`)
	require.Contains(t, body, `<div class="player" id="player" hidden>`)

	for _, j := range []*jobPage{nil, {Name: "Film.mp4", State: "succeeded"}} {
		body = render(j)
		require.Contains(t, body, `<section id="player-box" aria-labelledby="h-player" hidden>`)
		require.Contains(t, body, `<p id="j-noplay" class="notice" role="status" hidden></p>`)
		require.Contains(t, body, `<div class="player" id="player">`)
		require.Contains(t, body, `<p id="j-waiting" class="notice" role="status" hidden></p>`)
	}
	body = render(&jobPage{Name: "Film.mp4", State: "running", Waiting: "waiting for a worker that can encode with av1 (the libsvtav1 encoder)"})
	require.Contains(t, body, `<p id="j-waiting" class="notice" role="status">waiting for a worker that can encode with av1 (the libsvtav1 encoder)</p>`)
}

func TestDefaultProfile(t *testing.T) {
	t.Parallel()
	all := profile.Builtin()
	for configured, want := range map[string]string{"": "web-hls", "mp4-library": "mp4-library", "no-such": "web-hls"} {
		u := &UI{d: Deps{Profiles: all, DefaultProfile: configured}}
		require.Equal(t, want, u.defaultProfile(), "configured %q", configured)
	}
}
