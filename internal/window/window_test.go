package window_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/window"
)

func TestWindow(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 1, 1, h, m, 0, 0, time.Local) }
	w, err := window.Parse("01:00-07:00")
	require.NoError(t, err)
	require.True(t, w.Contains(at(1, 0)))
	require.True(t, w.Contains(at(6, 59)))
	require.False(t, w.Contains(at(7, 0)))
	require.False(t, w.Contains(at(0, 59)))
	night, err := window.Parse("22:30-06:00")
	require.NoError(t, err)
	require.True(t, night.Contains(at(23, 0)))
	require.True(t, night.Contains(at(5, 0)))
	require.False(t, night.Contains(at(12, 0)))
	always, err := window.Parse("")
	require.NoError(t, err)
	require.True(t, always.Contains(at(12, 0)))
	for _, bad := range []string{"1:00-7:00", "01:00", "01:00-01:00", "24:00-01:00", "aa:bb-cc:dd", "01:60-02:00"} {
		_, err := window.Parse(bad)
		require.Error(t, err, bad)
	}
}
