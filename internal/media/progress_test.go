package media

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseProgress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []Progress
	}{
		{
			name: "ffmpeg 5.1 blocks",
			in: "frame=12\nfps=0.00\nstream_0_0_q=28.0\nbitrate=N/A\ntotal_size=48\nout_time_us=480000\nout_time_ms=480000\n" +
				"out_time=00:00:00.480000\ndup_frames=0\ndrop_frames=0\nspeed=0.959x\nprogress=continue\n" +
				"frame=100\nfps=99.50\nout_time_us=4000000\nout_time_ms=4000000\nout_time=00:00:04.000000\nspeed=3.97x\nprogress=end\n",
			want: []Progress{
				{OutTime: 480 * time.Millisecond, Speed: 0.959, Frame: 12},
				{OutTime: 4 * time.Second, Speed: 3.97, Frame: 100, FPS: 99.5, End: true},
			},
		},
		{
			name: "N/A and the negative start value",
			in:   "frame=0\nfps=N/A\nout_time_us=-9223372036854775807\nout_time_ms=-9223372036854775807\nout_time=-577014:32:22.775808\nspeed=N/A\nprogress=continue\n",
			want: []Progress{{}},
		},
		{
			name: "out_time_us N/A keeps the previous value",
			in:   "out_time_us=2000000\nprogress=continue\nout_time_us=N/A\nout_time_ms=N/A\nout_time=N/A\nprogress=continue\n",
			want: []Progress{{OutTime: 2 * time.Second}, {OutTime: 2 * time.Second}},
		},
		{
			name: "out_time_ms is microseconds, not milliseconds",
			in:   "out_time_ms=1500000\nprogress=continue\n",
			want: []Progress{{OutTime: 1500 * time.Millisecond}},
		},
		{
			name: "out_time only",
			in:   "out_time=01:02:03.500000\nprogress=continue\n",
			want: []Progress{{OutTime: time.Hour + 2*time.Minute + 3500*time.Millisecond}},
		},
		{
			name: "CRLF and garbage lines",
			in:   "hello\r\n=\r\nframe=7\r\nspeed=1.5x\r\nprogress=end\r\n",
			want: []Progress{{Frame: 7, Speed: 1.5, End: true}},
		},
		{
			name: "a block without progress= is not reported",
			in:   "frame=7\nout_time_us=100\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []Progress
			require.NoError(t, ParseProgress(strings.NewReader(tc.in), func(p Progress) { got = append(got, p) }))
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseProgressLongLine(t *testing.T) {
	t.Parallel()
	err := ParseProgress(strings.NewReader("frame="+strings.Repeat("9", maxProgressLine+1)+"\n"), func(Progress) {})
	require.Error(t, err)
}

func FuzzParseProgress(f *testing.F) {
	f.Add("frame=1\nfps=0.0\nout_time_us=40000\nout_time_ms=40000\nout_time=00:00:00.040000\nspeed=1x\nprogress=continue\n")
	f.Add("out_time_us=N/A\nspeed=N/A\nprogress=end\n")
	f.Add("out_time=-00:00:01.000\nprogress=continue\n")
	f.Fuzz(func(t *testing.T, in string) {
		_ = ParseProgress(strings.NewReader(in), func(p Progress) {
			if p.OutTime < 0 || p.Speed < 0 || p.Frame < 0 || p.FPS < 0 {
				t.Fatalf("negative progress %+v from %q", p, in)
			}
		})
	})
}
