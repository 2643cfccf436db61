package pack

import (
	"testing"
	"time"

	"github.com/Eyevinn/dash-mpd/mpd"
	"github.com/stretchr/testify/require"
)

// A sub-second source's manifest carries durations that dash-mpd itself reads back.
func TestSubSecondDurations(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{325 * time.Millisecond, 40 * time.Millisecond, time.Second, 2500 * time.Millisecond} {
		m := mpd.NewMPD("static")
		m.MediaPresentationDuration = duration(d.Seconds())
		m.MaxSegmentDuration = duration(d.Seconds())
		out, err := m.WriteToString("  ", true)
		require.NoError(t, err)
		out = subSecond(out, "mediaPresentationDuration", m.MediaPresentationDuration)
		out = subSecond(out, "maxSegmentDuration", m.MaxSegmentDuration)
		back, err := mpd.ReadFromString(out)
		require.NoError(t, err, out)
		require.Equal(t, d, time.Duration(*back.MediaPresentationDuration), out)
		require.Equal(t, d, time.Duration(*back.MaxSegmentDuration), out)
	}
}
