package backoff_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/backoff"
)

func TestDelay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		first, maxWait time.Duration
		n              int
		want           time.Duration
	}{
		{time.Second, time.Minute, 0, time.Second},
		{time.Second, time.Minute, 1, time.Second},
		{time.Second, time.Minute, 2, 2 * time.Second},
		{time.Second, time.Minute, 6, 32 * time.Second},
		{time.Second, time.Minute, 7, time.Minute},
		{time.Second, time.Minute, 1000, time.Minute}, // no overflow however long it fails
		{200 * time.Millisecond, 30 * time.Second, 8, 25600 * time.Millisecond},
		{200 * time.Millisecond, 30 * time.Second, 9, 30 * time.Second},
		{time.Hour, 10 * time.Minute, 1, 10 * time.Minute}, // a first delay above the cap is capped
		// The watch folders' delivery retries (moved from internal/watch).
		{5 * time.Second, 15 * time.Minute, 1, 5 * time.Second},
		{5 * time.Second, 15 * time.Minute, 2, 10 * time.Second},
		{5 * time.Second, 15 * time.Minute, 4, 40 * time.Second},
		{5 * time.Second, 15 * time.Minute, 12, 15 * time.Minute},
		{3 * time.Hour, 15 * time.Minute, 30, 15 * time.Minute}, // no overflow into a negative wait
		{time.Duration(1 << 62), 15 * time.Minute, 64, 15 * time.Minute},
	} {
		require.Equal(t, tc.want, backoff.Delay(tc.first, tc.maxWait, tc.n), "Delay(%s, %s, %d)", tc.first, tc.maxWait, tc.n)
	}
}
