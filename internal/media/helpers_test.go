package media

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, data, 0o644))
}

// generate runs ffmpeg with args (quiet, overwriting) to make a test input.
func generate(t *testing.T, args ...string) {
	t.Helper()
	full := append([]string{"-nostdin", "-hide_banner", "-loglevel", "error", "-y"}, args...)
	out, err := exec.Command("ffmpeg", full...).CombinedOutput()
	require.NoError(t, err, "generate: %s", out)
}

// clip makes a small test clip: testsrc2 video with a sine tone.
func clip(t *testing.T, name, size string, seconds string, extra ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	args := []string{"-f", "lavfi", "-i", "testsrc2=size=" + size + ":rate=25:duration=" + seconds,
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=" + seconds}
	args = append(args, extra...)
	args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path)
	generate(t, args...)
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
