package media

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

// needFFmpeg skips a test on a machine without ffmpeg and ffprobe.
func needFFmpeg(t *testing.T) Tools {
	t.Helper()
	testenv.NeedFFmpeg(t)
	return Tools{}
}

func TestRunExitError(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	missing := filepath.Join(t.TempDir(), "missing.mp4")
	err := tools.Run(context.Background(), []string{"-nostdin", "-hide_banner", "-progress", "pipe:1",
		"-protocol_whitelist", "file,pipe", "-f", "mov", "-i", "file:" + missing, "-f", "null", "-"}, nil)
	require.Error(t, err)
	ee, ok := errors.AsType[*ExitError](err)
	require.True(t, ok, "want *ExitError, got %T %v", err, err)
	require.NotZero(t, ee.Code)
	require.Empty(t, ee.Signal)
	require.Contains(t, ee.StderrTail, "No such file or directory")
	require.Contains(t, err.Error(), "exit status")
	require.False(t, IsPermanent(err), "a missing file may appear on a retry")
}

func TestRunInvalidDataIsPermanent(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	bad := filepath.Join(t.TempDir(), "bad.mp4")
	writeFile(t, bad, []byte("\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"+strings.Repeat("\x00garbage", 100)))
	err := tools.Run(context.Background(), []string{"-nostdin", "-progress", "pipe:1", "-f", "mov", "-i", "file:" + bad, "-f", "null", "-"}, nil)
	require.Error(t, err)
	require.True(t, IsPermanent(err), "%v", err)
}

func TestRunProgressAndSuccess(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	var got []Progress
	err := tools.Run(context.Background(), []string{"-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1",
		"-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=1", "-f", "null", "-"}, func(p Progress) { got = append(got, p) })
	require.NoError(t, err)
	require.NotEmpty(t, got)
	last := got[len(got)-1]
	require.True(t, last.End)
	require.Equal(t, int64(25), last.Frame)
	require.InDelta(t, time.Second.Seconds(), last.OutTime.Seconds(), 0.1)
}

func TestRunCancelKillsGroup(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		// realtime input: this would run for an hour if it were not cancelled.
		errc <- tools.Run(ctx, []string{"-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1",
			"-re", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=3600", "-f", "null", "-"},
			func(Progress) {
				select {
				case started <- struct{}{}:
				default:
				}
			})
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("ffmpeg reported no progress")
	}
	cancel()
	select {
	case err := <-errc:
		require.ErrorIs(t, err, context.Canceled)
		require.False(t, IsPermanent(err))
		_, ok := errors.AsType[*ExitError](err)
		require.True(t, ok, "a cancelled run still carries the ExitError: %v", err)
	case <-time.After(waitDelay + 5*time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRing(t *testing.T) {
	t.Parallel()
	r := newRing(8)
	_, _ = r.Write([]byte("abc"))
	require.Equal(t, "abc", r.String())
	_, _ = r.Write([]byte("defgh"))
	require.Equal(t, "abcdefgh", r.String())
	_, _ = r.Write([]byte("ij"))
	require.Equal(t, "cdefghij", r.String())
	_, _ = r.Write([]byte("0123456789"))
	require.Equal(t, "23456789", r.String())
	_, _ = r.Write([]byte("x"))
	require.Equal(t, "3456789x", r.String())
}

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	require.True(t, IsPermanent(reject(CodeNotMedia, "no")))
	require.True(t, IsPermanent(fmt.Errorf("wrapped: %w", &ExitError{Code: 1, StderrTail: "x.mp4: moov atom not found\n"})))
	require.False(t, IsPermanent(&ExitError{Code: -1, Signal: "killed", StderrTail: "Invalid data found when processing input"}))
	require.False(t, IsPermanent(&ExitError{Code: 1, StderrTail: "Cannot allocate memory"}))
	require.False(t, IsPermanent(context.Canceled))
	require.False(t, IsPermanent(nil))
}
