package worker_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/worker"
)

// ffmpeg and ffprobe run with only what they need of herd's environment:
// no keys or cloud credentials reach a process that parses untrusted files,
// while what hardware encoders look for still does, and the trial encodes
// that prove a GPU see exactly the environment the real encodes get.
// (Not parallel: it sets the process environment.)
func TestMediaToolsGetAReducedEnvironment(t *testing.T) {
	for k, v := range map[string]string{
		"HERD_TOKEN": "herd_adm_secret", "HERD_WORKER_TOKEN": "herd_wor_secret", "AWS_SECRET_ACCESS_KEY": "aws-secret",
		"AWS_ACCESS_KEY_ID": "aws-id", "HERD_ADMIN_TOKEN": "admin-secret",
		"NVIDIA_DRIVER_CAPABILITIES": "video,compute", "LIBVA_DRIVER_NAME": "iHD", "CUDA_VISIBLE_DEVICES": "1",
		"LD_LIBRARY_PATH": "/opt/lib", "TMPDIR": os.TempDir(),
	} {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	dumps := filepath.Join(dir, "env")
	require.NoError(t, os.Mkdir(dumps, 0o755))
	// A stand-in ffmpeg that records its environment, one file per call:
	// the trials run side by side, so a shared file would interleave.
	fake := filepath.Join(dir, "ffmpeg")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\nenv | sort | tr '\\n' ' ' > "+dumps+"/$$\nexit 0\n"), 0o755))

	tools := media.Tools{FFmpeg: fake, FFprobe: fake}
	require.NoError(t, tools.Run(context.Background(), []string{"-version"}, nil))
	worker.Detect(context.Background(), fake)

	files, err := os.ReadDir(dumps)
	require.NoError(t, err)
	var lines []string
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dumps, f.Name()))
		require.NoError(t, err)
		lines = append(lines, strings.TrimSpace(string(b)))
	}
	require.Greater(t, len(lines), 1, "the encode and the trials ran")
	for _, l := range lines {
		require.Equal(t, lines[0], l, "every trial sees the encode's environment")
	}
	env := strings.Fields(lines[0])
	for _, want := range []string{"NVIDIA_DRIVER_CAPABILITIES=video,compute", "LIBVA_DRIVER_NAME=iHD", "CUDA_VISIBLE_DEVICES=1", "LD_LIBRARY_PATH=/opt/lib", "PATH=" + os.Getenv("PATH")} {
		require.True(t, slices.Contains(env, want), "%s missing from %v", want, env)
	}
	for _, secret := range []string{"herd_adm_secret", "herd_wor_secret", "aws-secret", "aws-id", "admin-secret"} {
		require.NotContains(t, lines[0], secret)
	}
}

// A task's pod proves only the encoders its task may use: one trial for a
// chunk that needs nvenc:h264, none of the software ones.
func TestDetectCapsRunsOnlyTheTrialsAsked(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	fake := filepath.Join(dir, "ffmpeg")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@\" >> "+calls+"\nexit 0\n"), 0o755))

	got := worker.DetectCaps(context.Background(), fake, func(c string) bool { return c == "hevc" })
	require.Len(t, got, 1)
	require.Equal(t, "hevc", got[0].Cap)
	require.True(t, got[0].OK)
	b, err := os.ReadFile(calls)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(b), "\n"), "one trial encode ran")
	require.Contains(t, string(b), "libx265")

	all := worker.Detect(context.Background(), fake)
	require.Greater(t, len(all), 2, "Detect still proves every encoder")
}
