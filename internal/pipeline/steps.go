package pipeline

import (
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
)

// Steps whose files are staged between tasks.
const (
	StepEncode   = "encode"
	StepThumbs   = "thumbs"
	StepVerified = "verified"
	// StepAudio holds a chunked job's audio, encoded once for the whole source.
	StepAudio = "audio"
)

// Chunked jobs stage a step per chunk: the split task's piece of the source
// (PieceStep) and the chunk task's encode of it (ChunkStep), numbered from 1.
const (
	piecePrefix = "piece-"
	chunkPrefix = "chunk-"
)

// PieceStep is where the split task stages chunk k's piece of the source.
func PieceStep(k int) string { return piecePrefix + strconv.Itoa(k) }

// ChunkStep is where chunk k's task stages its encode.
func ChunkStep(k int) string { return chunkPrefix + strconv.Itoa(k) }

// EncodesPart reports whether step holds part of the encode step's files:
// a chunk's encode or the audio's.
func EncodesPart(step string) bool {
	_, chunk := stepChunk(step, chunkPrefix)
	return chunk || step == StepAudio
}

// ValidStep reports whether a name from outside (a worker's request) names a step.
func ValidStep(step string) bool {
	switch step {
	case StepEncode, StepThumbs, StepVerified, StepAudio:
		return true
	}
	_, ok := stepChunk(step, piecePrefix)
	if !ok {
		_, ok = stepChunk(step, chunkPrefix)
	}
	return ok
}

// stepChunk is the chunk number of a per-chunk step written exactly as
// PieceStep or ChunkStep write it.
func stepChunk(step, prefix string) (int, bool) {
	n, ok := strings.CutPrefix(step, prefix)
	if !ok {
		return 0, false
	}
	k, err := strconv.Atoi(n)
	return k, err == nil && k >= 1 && k <= media.MaxChunks && strconv.Itoa(k) == n
}

// A task reaches only its own files: each task writes the steps its kind
// makes, and reads only the steps it is built from.

// Writes reports whether t stages step.
func Writes(t job.Task, step string) bool {
	switch t.Kind {
	case job.KindEncode, job.KindStitch:
		return step == StepEncode
	case job.KindThumbnails:
		return step == StepThumbs
	case job.KindVerify:
		return step == StepVerified
	case job.KindAudio:
		return step == StepAudio
	case job.KindChunk:
		return t.Chunk >= 1 && step == ChunkStep(t.Chunk)
	case job.KindSplit:
		_, ok := stepChunk(step, piecePrefix)
		return ok
	}
	return false
}

// Reads reports whether t reads step back (its own steps included).
func Reads(t job.Task, step string) bool {
	if Writes(t, step) {
		return true
	}
	switch t.Kind {
	case job.KindEncode:
		// A version 7 worker's encode joined the audio itself: one under
		// way when the server is upgraded may still fetch it.
		return step == StepAudio
	case job.KindVerify:
		// StepAudio: an unsplit plan's audio task's, which it joins to
		// the encode (media.Plan.JoinAudio).
		return step == StepEncode || step == StepThumbs || step == StepAudio
	case job.KindChunk:
		return t.Chunk >= 1 && step == PieceStep(t.Chunk)
	case job.KindStitch:
		_, ok := stepChunk(step, chunkPrefix)
		return ok || step == StepAudio
	}
	return false
}
