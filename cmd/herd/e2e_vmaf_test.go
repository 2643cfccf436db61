package main_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

// herd serve --measure-ffmpeg names an ffmpeg with libvmaf (here a
// libvmaf 1.x one, whose model herd writes itself): every rung's
// verification then records VMAF beside SSIM and PSNR, and herd job shows
// it. Without one, the server says once that VMAF is not measured.
func TestVMAFInVerification(t *testing.T) {
	t.Parallel()
	ffmpeg, _ := testenv.VMAF(t)
	dir := t.TempDir()
	src := clip(t, dir, 2, "320x180")
	s := startServer(t, filepath.Join(dir, "data"), "--measure-ffmpeg", ffmpeg)
	stdout, stderr, code := s.herd("submit", src, "--profile", "web-hls", "--wait")
	require.Equal(t, 0, code, stderr)
	id := strings.TrimSpace(stdout)
	j := s.job(id)
	rungs := 0
	for _, o := range j.Outputs {
		if o.Kind != "hls" || o.Width == 0 {
			continue
		}
		rungs++
		require.NotNil(t, o.VMAF, o.Name)
		require.Greater(t, o.VMAF.Frames, 0)
		require.Greater(t, o.VMAF.Mean, 50.0)
		require.Equal(t, "vmaf_v0.6.1", o.VMAF.Model)
	}
	require.NotZero(t, rungs)
	out, stderr, code := s.herd("job", id)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "VMAF")
	require.Regexp(t, regexp.MustCompile(`\s\d+\.\d/\d+\.\d\s`), out, "mean/low in the outputs table")
	require.Contains(t, s.logs.String(), "VMAF is measured in verification")
	require.FileExists(t, filepath.Join(dir, "data", "vmaf", "vmaf_v0.6.1.pkl"), "herd's own model, for libvmaf 1.x")

	plain := startServer(t, filepath.Join(dir, "plain"))
	require.Eventually(t, func() bool { return strings.Contains(plain.logs.String(), "VMAF is not measured") }, 10e9, 1e8)
	_, stderr, code = plain.herd("serve", "--data", filepath.Join(dir, "other"), "--measure-ffmpeg", "/bin/true")
	require.NotEqual(t, 0, code)
	require.Contains(t, stderr, "--measure-ffmpeg")
}
