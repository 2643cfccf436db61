package pipeline

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
)

func TestValidStep(t *testing.T) {
	for _, s := range []string{"encode", "thumbs", "verified", "audio", "piece-1", "chunk-12", "chunk-20160"} {
		require.True(t, ValidStep(s), s)
	}
	for _, s := range []string{"", "publish", "chunk-0", "chunk-01", "chunk--1", "chunk-+1", "chunk-20161", "piece-1/..", "chunk-1x", "chunk-"} {
		require.False(t, ValidStep(s), s)
	}
}

// Every task reaches only its own steps: a chunk its own piece and encode,
// the split only pieces, the stitch the chunks and the audio but writes
// only the encode step.
func TestStepAccess(t *testing.T) {
	chunk2 := job.Task{Kind: job.KindChunk, Chunk: 2}
	cases := []struct {
		t             job.Task
		step          string
		read, written bool
	}{
		{chunk2, "piece-2", true, false},
		{chunk2, "chunk-2", true, true},
		{chunk2, "piece-1", false, false},
		{chunk2, "chunk-1", false, false},
		{chunk2, StepEncode, false, false},
		{job.Task{Kind: job.KindChunk}, "chunk-0", false, false},
		{job.Task{Kind: job.KindSplit}, "piece-7", true, true},
		{job.Task{Kind: job.KindSplit}, "chunk-7", false, false},
		{job.Task{Kind: job.KindSplit}, StepEncode, false, false},
		{job.Task{Kind: job.KindAudio}, StepAudio, true, true},
		{job.Task{Kind: job.KindAudio}, StepEncode, false, false},
		{job.Task{Kind: job.KindStitch}, "chunk-3", true, false},
		{job.Task{Kind: job.KindStitch}, StepAudio, true, false},
		{job.Task{Kind: job.KindStitch}, "piece-3", false, false},
		{job.Task{Kind: job.KindStitch}, StepEncode, true, true},
		{job.Task{Kind: job.KindStitch}, StepVerified, false, false},
		{job.Task{Kind: job.KindVerify}, StepEncode, true, false},
		{job.Task{Kind: job.KindVerify}, StepAudio, true, false},
		{job.Task{Kind: job.KindEncode}, StepAudio, true, false}, // a version 7 encode under way at an upgrade
		{job.Task{Kind: job.KindVerify}, "chunk-1", false, false},
		{job.Task{Kind: job.KindThumbnails}, StepVerified, false, false},
	}
	for _, c := range cases {
		require.Equal(t, c.read, Reads(c.t, c.step), "%s %d reads %s", c.t.Kind, c.t.Chunk, c.step)
		require.Equal(t, c.written, Writes(c.t, c.step), "%s %d writes %s", c.t.Kind, c.t.Chunk, c.step)
	}
}
