package pipeline

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
)

// sink records hand-overs; the first one waits until it is cut short
// (a server that is away), or fails (one that refuses).
type sink struct {
	mu     sync.Mutex
	handed []string
	first  func(ctx context.Context) error
}

func (s *sink) HandOver(ctx context.Context, _ *job.Claimed, _, _, name string) error {
	s.mu.Lock()
	first := s.first
	s.first = nil
	s.mu.Unlock()
	if first != nil {
		return first(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handed = append(s.handed, name)
	return nil
}

// encodeInto stands for ffmpeg: it finishes segment 1, waits past a few
// hand-over scans, then finishes segment 2 and ends.
func encodeInto(dir string) func() ([][]string, error) {
	return func() ([][]string, error) {
		for _, f := range []string{"init-0.m4s", "chunk-0-00001.m4s"} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
				return nil, err
			}
		}
		time.Sleep(3 * handOverEvery)
		return nil, os.WriteFile(filepath.Join(dir, "chunk-0-00002.m4s"), []byte("x"), 0o600)
	}
}

func liveExecutor(s *sink) (*Executor, *media.Plan, *job.Claimed) {
	e := &Executor{live: s, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	plan := &media.Plan{Format: profile.FormatHLS, Duration: 2, SegmentSeconds: 1, Rungs: []media.RungPlan{{Name: "90p"}}}
	return e, plan, &job.Claimed{Task: job.Task{ID: "t1", Kind: job.KindEncode}}
}

// A hand-over that hangs (the server is away) does not hold the task up
// once ffmpeg is done; the last scan sends it again with what is left.
func TestHandOverCutShortIsSentAgain(t *testing.T) {
	s := &sink{first: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	e, plan, c := liveExecutor(s)
	dir := t.TempDir()
	_, err := e.handingOver(t.Context(), c, plan, StepEncode, dir, encodeInto(dir))
	require.NoError(t, err)
	require.Equal(t, []string{"chunk-0-00001.m4s", "chunk-0-00002.m4s"}, s.handed)
}

// A hand-over the server refuses stops this attempt's hand-overs, never
// the task.
func TestHandOverRefusedStopsHandingOver(t *testing.T) {
	s := &sink{first: func(context.Context) error { return errors.New("refused") }}
	e, plan, c := liveExecutor(s)
	dir := t.TempDir()
	_, err := e.handingOver(t.Context(), c, plan, StepEncode, dir, encodeInto(dir))
	require.NoError(t, err)
	require.Empty(t, s.handed)
}
