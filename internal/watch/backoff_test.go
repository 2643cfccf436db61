package watch

import (
	"testing"
	"time"
)

func TestBackoffDoublesAndStops(t *testing.T) {
	for _, tc := range []struct {
		first time.Duration
		n     int
		want  time.Duration
	}{
		{5 * time.Second, 1, 5 * time.Second},
		{5 * time.Second, 2, 10 * time.Second},
		{5 * time.Second, 4, 40 * time.Second},
		{5 * time.Second, 12, maxRetryWait},
		{5 * time.Second, 1000, maxRetryWait},
		{3 * time.Hour, 30, maxRetryWait}, // no overflow into a negative wait
		{time.Duration(1 << 62), 64, maxRetryWait},
	} {
		if got := backoff(tc.first, tc.n); got != tc.want {
			t.Errorf("backoff(%s, %d) = %s, want %s", tc.first, tc.n, got, tc.want)
		}
	}
}
