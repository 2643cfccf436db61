package ingest_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/ingest"
)

func TestCleanName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"movie.mkv":            "movie.mkv",
		"../../etc/passwd":     "passwd",
		`C:\Users\me\clip.mp4`: "clip.mp4",
		"bad\x00name\n.mp4":    "badname.mp4",
		"":                     "upload",
		"..":                   "upload",
		"/":                    "upload",
		"Ünïcødé 🎬.mov":        "Ünïcødé 🎬.mov",
		"%03d.png":             "%03d.png", // kept as a name: names are never paths or patterns
	} {
		require.Equal(t, want, ingest.CleanName(in), "%q", in)
	}
	long := ingest.CleanName(strings.Repeat("é", 300) + ".mp4")
	require.LessOrEqual(t, len(long), 200)
	require.True(t, utf8.ValidString(long))
}
