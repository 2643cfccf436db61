//go:build verifycost

package media

import (
	"cmp"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
)

// TestVerifyCost measures (never asserts) the CPU time verification takes
// against the encode's for a 60 s 720p noisy clip through web-hls:
//
//	go test -tags verifycost -run TestVerifyCost -v ./internal/media/
//
// HERD_VERIFYCOST_KEYINT sets the source's keyframe interval in frames
// (x264's default, 250, when unset): sampled verification decodes the
// source from the keyframe before each stretch it compares.
// HERD_VERIFYCOST_INPUT names a file to measure instead (the ladder
// benchmark's bench-1080p-25s-v1.mp4, say, from make bench's cache).
func TestVerifyCost(t *testing.T) {
	tools := needFFmpeg(t)
	ctx := context.Background()
	input := os.Getenv("HERD_VERIFYCOST_INPUT")
	if input == "" {
		input = filepath.Join(t.TempDir(), "in.mp4")
		out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error",
			"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=60,noise=alls=12:allf=t+u",
			"-f", "lavfi", "-i", "sine=frequency=440:duration=60",
			"-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-g", cmp.Or(os.Getenv("HERD_VERIFYCOST_KEYINT"), "250"),
			"-c:a", "aac", "-shortest", input).CombinedOutput()
		require.NoError(t, err, string(out))
		defer os.Remove(input)
	}
	pl := admitted(t, input, builtin(t, "web-hls"))
	pl.Thumbs = ThumbPlan{}
	dir := t.TempDir()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		require.NoError(t, syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru))
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0, w0 := cpu(), time.Now()
	_, err := tools.Encode(ctx, pl, input, dir, nil)
	require.NoError(t, err)
	enc, encWall := cpu()-c0, time.Since(w0)
	t.Logf("encode: cpu %v wall %v", enc, encWall)
	for _, mode := range []string{profile.VerifySampled, profile.VerifyFull} {
		p := *pl
		p.Verify = mode
		c0, w0 = cpu(), time.Now()
		outs, _, err := tools.Verify(ctx, &p, input, dir)
		require.NoError(t, err)
		c := cpu() - c0
		t.Logf("verify %s: cpu %v wall %v = %.1f %% of the encode's CPU", mode, c, time.Since(w0), 100*float64(c)/float64(enc))
		for _, o := range outs {
			t.Logf("  %s %s segments %d decoded %d ssim %.4f psnr %.2f", o.Name, o.Verify, o.Segments, o.Decoded, o.SSIM, o.PSNR)
		}
	}
}
