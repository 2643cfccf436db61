package profile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

const tinyMP4 = "name: tiny\nformat: mp4\nvideo: {codec: h264, crf: 30, max_height: %d}\naudio: {codec: aac}\n"

func write(t *testing.T, dir, name, doc string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644))
}

// A reload refuses a file that does not parse on its own: the profiles
// read from it before stay, the others change, and a removed file's
// profile goes.
func TestReloadKeepsWhatDoesNotParse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, dir, "tiny.yaml", fmt.Sprintf(tinyMP4, 144))
	write(t, dir, "other.yaml", "name: other\nformat: mp4\nvideo: {codec: h264, crf: 20}\n")
	write(t, dir, "gone.yaml", "name: gone\nformat: mp4\nvideo: {codec: h264, crf: 20}\n")
	prev, err := profile.Load(dir)
	require.NoError(t, err)

	write(t, dir, "tiny.yaml", "name: tiny\nformat: mp4\nvideo: {codec: h264, crf: 30}\ncolour: red\n")
	write(t, dir, "other.yaml", "name: other\nformat: mp4\nvideo: {codec: h264, crf: 25}\n")
	require.NoError(t, os.Remove(filepath.Join(dir, "gone.yaml")))
	next, errs := profile.Reload(dir, prev)
	require.Len(t, errs, 1)
	require.ErrorContains(t, errs[0], "tiny.yaml")
	require.ErrorContains(t, errs[0], "line 4: field colour not found")
	tiny, ok := next.Get("tiny")
	require.True(t, ok, "the refused file's profile stays")
	require.Equal(t, 144, tiny.Video.MaxHeight)
	other, _ := next.Get("other")
	require.Equal(t, 25, other.Video.CRF, "the file that parses is read again")
	_, ok = next.Get("gone")
	require.False(t, ok)
	_, ok = next.Get("web-hls")
	require.True(t, ok, "the built-ins are always there")

	write(t, dir, "copy.yaml", "name: other\nformat: mp4\nvideo: {codec: h264, crf: 40}\n")
	next, errs = profile.Reload(dir, next)
	require.Len(t, errs, 2, "the still-broken file and the two definitions of other")
	require.ErrorContains(t, errs[1], "copy.yaml, other.yaml: profile \"other\" is defined in each of them")
	other, _ = next.Get("other")
	require.Equal(t, 25, other.Video.CRF, "both are refused; the name keeps its profile")
	tiny, _ = next.Get("tiny")
	require.Equal(t, 144, tiny.Video.MaxHeight, "still refused, still kept")
}

// Versions numbers each change, keeps an unchanged profile's number, and
// finds every version a job may have been submitted with, from the store
// after a restart too.
func TestVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(t.TempDir(), "herd.db")
	st, err := sqlstore.OpenSQLite(ctx, db)
	require.NoError(t, err)
	write(t, dir, "tiny.yaml", fmt.Sprintf(tinyMP4, 144))
	set, err := profile.Load(dir)
	require.NoError(t, err)
	v, err := profile.NewVersions(ctx, st, set)
	require.NoError(t, err)
	tiny, _ := v.Current.Get("tiny")
	require.Equal(t, 1, tiny.Version)
	hls, _ := v.Current.Get("web-hls")
	require.Equal(t, 2, hls.Version, "a built-in keeps the number in its file")

	write(t, dir, "tiny.yaml", fmt.Sprintf(tinyMP4, 96))
	next, errs := profile.Reload(dir, v.Current)
	require.Empty(t, errs)
	require.NoError(t, v.Record(ctx, next))
	tiny, _ = v.Current.Get("tiny")
	require.Equal(t, 2, tiny.Version, "an edit is a new version without a new number in the file")
	require.Equal(t, 96, tiny.Video.MaxHeight)
	hls, _ = v.Current.Get("web-hls")
	require.Equal(t, 2, hls.Version, "an unchanged profile keeps its version")

	old, err := v.At(ctx, "tiny", 1)
	require.NoError(t, err)
	require.Equal(t, 144, old.Video.MaxHeight, "a job submitted with version 1 gets version 1")
	require.Equal(t, 1, old.Version)
	none, err := v.At(ctx, "tiny", 9)
	require.NoError(t, err)
	require.Nil(t, none)

	// After a restart: the same file is the same version, the old one is
	// still found.
	require.NoError(t, st.Close())
	st, err = sqlstore.OpenSQLite(ctx, db)
	require.NoError(t, err)
	defer st.Close()
	set, err = profile.Load(dir)
	require.NoError(t, err)
	v, err = profile.NewVersions(ctx, st, set)
	require.NoError(t, err)
	tiny, _ = v.Current.Get("tiny")
	require.Equal(t, 2, tiny.Version)
	old, err = v.At(ctx, "tiny", 1)
	require.NoError(t, err)
	require.Equal(t, 144, old.Video.MaxHeight)
}
