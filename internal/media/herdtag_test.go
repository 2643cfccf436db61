package media

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

// Every MP4 and MKV herd makes carries its job's id in the herd tag, and
// the probe reads it back: a library's rules know herd's own files.
func TestHerdTag(t *testing.T) {
	t.Parallel()
	testenv.NeedFFmpeg(t)
	input := filepath.Join(t.TempDir(), "in.mp4")
	require.NoError(t, testenv.Clip{Size: "160x90", Rate: 25, Seconds: 1, Tone: 440}.Make(input))
	info, err := Tools{}.Admit(t.Context(), input, Limits{})
	require.NoError(t, err)
	require.Empty(t, info.Herd, "a file herd did not make")
	for _, name := range []string{"mp4-library", "archive-hevc"} {
		pl := admitted(t, input, builtin(t, name))
		pl.Herd = "j_0123abc"
		require.NoError(t, pl.Validate())
		out := t.TempDir()
		_, err := Tools{}.Encode(t.Context(), pl, input, out, nil)
		require.NoError(t, err, name)
		made, err := Tools{}.Admit(t.Context(), filepath.Join(out, pl.FileName()), Limits{})
		require.NoError(t, err, name)
		require.Equal(t, "j_0123abc", made.Herd, name)
	}
	pl := admitted(t, input, builtin(t, "mp4-library"))
	pl.Herd = "j_0123abc; rm -rf /"
	require.ErrorContains(t, pl.Validate(), "plan.herd")
}
