package media

import (
	"errors"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A missing or malformed picture or track fails verification with an
// *OutputError that names the file and what is wrong with it.
func TestVerifyThumbnailsAgainstPlan(t *testing.T) {
	t.Parallel()
	pl, err := NewPlan(src(1280, 720, 25, func(i *Info) { i.Duration = 25 }), builtin(t, "web-hls"))
	require.NoError(t, err)
	th := pl.Thumbs
	writeJPEG := func(dir, name string, w, h int) {
		f, err := os.Create(filepath.Join(dir, name))
		require.NoError(t, err)
		require.NoError(t, jpeg.Encode(f, image.NewGray(image.Rect(0, 0, w, h)), nil))
		require.NoError(t, f.Close())
	}
	good := func(t *testing.T) string {
		dir := t.TempDir()
		writeJPEG(dir, PosterName, th.PosterWidth, th.PosterHeight)
		writeJPEG(dir, SpriteName, th.Columns*th.TileWidth, th.Rows*th.TileHeight)
		writeFile(t, filepath.Join(dir, VTTName), []byte(pl.ThumbnailsVTT()))
		return dir
	}
	for _, tc := range []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"fine", func(string) {}, ""},
		{"no sprite", func(dir string) { require.NoError(t, os.Remove(filepath.Join(dir, SpriteName))) }, "sprite.jpg is missing: the encode wrote no sprite"},
		{"poster not a JPEG", func(dir string) { writeFile(t, filepath.Join(dir, PosterName), []byte("x")) }, "poster.jpg is not a JPEG picture"},
		{"sprite one row short", func(dir string) { writeJPEG(dir, SpriteName, th.Columns*th.TileWidth, th.TileHeight) }, "sprite.jpg is 1600x90, the plan asks for 1600x180"},
		{"cue missing", func(dir string) {
			writeFile(t, filepath.Join(dir, VTTName), []byte("WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nsprite.jpg#xywh=0,0,160,90\n"))
		}, "thumbnails.vtt has 1 cues, the sprite has 13 tiles"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := good(t)
			tc.damage(dir)
			outs, err := (&verifier{pl: pl, out: dir}).thumbnails()
			if tc.want == "" {
				require.NoError(t, err)
				require.Len(t, outs, 3)
				return
			}
			var bad *OutputError
			require.True(t, errors.As(err, &bad), "%v", err)
			require.Contains(t, bad.Error(), tc.want)
		})
	}
}
