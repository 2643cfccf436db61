package media

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, data, 0o644))
}

// generate runs ffmpeg with args (quiet, overwriting) to make a test input.
func generate(t *testing.T, args ...string) {
	t.Helper()
	require.NoError(t, testenv.FFmpeg(args...))
}

// clip makes a small test clip: testsrc2 video with a sine tone.
func clip(t *testing.T, name, size string, seconds string, extra ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	secs, err := strconv.ParseFloat(seconds, 64)
	require.NoError(t, err)
	require.NoError(t, testenv.Clip{Size: size, Rate: 25, Seconds: secs, Tone: 440, Extra: extra}.Make(path))
	return path
}

// probeStreams runs ffprobe (demuxer forced) on an output for assertions.
func probeStreams(t *testing.T, demuxer, path string) *Info {
	t.Helper()
	out, err := Tools{}.probe(context.Background(), demuxer, path)
	require.NoError(t, err)
	info, err := parseProbe(out, demuxer)
	require.NoError(t, err)
	return info
}
