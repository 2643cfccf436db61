package ingest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

const frenchSRT = "1\n00:00:01,000 --> 00:00:02,000\nBonjour.\n"

// A subtitle file is stored as WebVTT under its id and given with a
// source by that id; the same source with other subtitle files is
// another job, with the same ones the same job.
func TestSubtitleFilesGoWithTheSource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, blobs := testenv.Stores(t, dir)
	sub := ingest.New(st, blobs, profile.Builtin(), noKick{}, ingest.Config{})
	ctx := context.Background()

	stored, err := sub.StoreSubtitle(ctx, strings.NewReader(frenchSRT))
	require.NoError(t, err)
	require.Equal(t, "srt", stored.Format)
	require.Equal(t, 1, stored.Cues)
	require.True(t, job.ValidSubtitleID(stored.ID))
	require.True(t, blobs.Exists(job.SubtitleKey(stored.ID)))
	again, err := sub.StoreSubtitle(ctx, strings.NewReader(frenchSRT))
	require.NoError(t, err)
	require.Equal(t, stored, again, "the same file is stored once")

	_, err = sub.StoreSubtitle(ctx, strings.NewReader("1\n00:00:03,000 --> 00:00:02,000\nNon.\n"))
	require.ErrorIs(t, err, ingest.ErrBadSubtitle)
	require.ErrorContains(t, err, "line 2: the cue ends (0:00:02.000) before it starts (0:00:03.000)")

	subs, err := ingest.ParseSubtitles("fre:sdh=" + stored.ID)
	require.NoError(t, err)
	plain, _, err := sub.Upload(ctx, "movie.mkv", "web-hls", ingest.Options{}, strings.NewReader("movie bytes"))
	require.NoError(t, err)
	with, created, err := sub.Upload(ctx, "movie.mkv", "web-hls", ingest.Options{Subtitles: subs}, strings.NewReader("movie bytes"))
	require.NoError(t, err)
	require.True(t, created, "other subtitle files: another job")
	require.NotEqual(t, plain.ID, with.ID)
	require.Equal(t, []job.SourceSubtitle{{ID: stored.ID, Language: "fr", HearingImpaired: true}}, with.Source.Subtitles, "the language as BCP 47")
	same, created, err := sub.Upload(ctx, "movie.mkv", "web-hls", ingest.Options{Subtitles: []job.SourceSubtitle{{ID: stored.ID, Language: "fr", HearingImpaired: true}}}, strings.NewReader("movie bytes"))
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, with.ID, same.ID)
	redo, _, err := sub.Redo(ctx, with)
	require.NoError(t, err)
	require.Equal(t, with.Source.Subtitles, redo.Source.Subtitles, "a redo keeps them")

	for _, tc := range []struct {
		profile string
		subs    []job.SourceSubtitle
		msg     string
	}{
		{"mp4-library", subs, "profile mp4-library keeps only the source's own subtitle streams; subtitle files are packaged by profiles with subtitles: webvtt (web-cmaf-av1, web-hls, web-hls-auto)"},
		{"web-hls", []job.SourceSubtitle{{ID: strings.Repeat("0", 64), Language: "fr"}}, "no subtitle file 0000"},
		{"web-hls", []job.SourceSubtitle{{ID: "../../sources/x", Language: "fr"}}, "is not a subtitle file's id"},
		{"web-hls", []job.SourceSubtitle{{ID: stored.ID, Language: "klingon!"}}, `"klingon!" is not a language tag`},
		{"web-hls", []job.SourceSubtitle{{ID: stored.ID, Forced: true, HearingImpaired: true}}, "forced or SDH, not both"},
	} {
		_, err := sub.Check(ctx, tc.profile, ingest.Options{Subtitles: tc.subs})
		require.ErrorIs(t, err, ingest.ErrBadOption, tc.msg)
		require.ErrorContains(t, err, tc.msg)
	}
}

func TestParseSubtitles(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("ab", 32)
	subs, err := ingest.ParseSubtitles(" fr=" + id + ", en:sdh=" + id + ",und:forced=" + id + ",")
	require.NoError(t, err)
	require.Equal(t, []job.SourceSubtitle{{ID: id, Language: "fr"}, {ID: id, Language: "en", HearingImpaired: true}, {ID: id, Language: "und", Forced: true}}, subs)
	require.Equal(t, "fr="+id+",en:sdh="+id+",und:forced="+id, job.FormatSubtitles(subs))
	for _, bad := range []string{"fr", "fr:loud=" + id} {
		_, err := ingest.ParseSubtitles(bad)
		require.ErrorIs(t, err, ingest.ErrBadOption, bad)
	}
}
