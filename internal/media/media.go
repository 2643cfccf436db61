// Package media owns everything herd does with ffmpeg and ffprobe: admitting
// an input (sniffing its container from magic bytes and probing it with that
// demuxer forced), planning the outputs from the probe and a profile, building
// the ffmpeg argv (pure functions with golden tests), running ffmpeg with
// progress and cancellation, writing the HLS master playlist, thumbnails, and
// verifying the outputs.
//
// It must never let ffmpeg guess the container of a user file, never build a
// shell command, never put user-controlled text into a filter graph, and never
// write outside the output directory it is given. It knows nothing about jobs,
// stores or workers.
package media

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Tools locates the binaries; the zero value uses "ffmpeg" and "ffprobe" from PATH.
type Tools struct {
	FFmpeg, FFprobe string
	Log             *slog.Logger // may be nil
	// VMAF, when set, is the ffmpeg that measures VMAF in verification
	// (DetectVMAF); nil: SSIM and PSNR only.
	VMAF *VMAF
}

// Locate resolves ffmpeg and ffprobe on PATH (empty names mean the defaults)
// with an error that says how to install them.
func Locate(ffmpeg, ffprobe string, log *slog.Logger) (Tools, error) {
	t := Tools{FFmpeg: cmp.Or(ffmpeg, "ffmpeg"), FFprobe: cmp.Or(ffprobe, "ffprobe"), Log: log}
	var err error
	if t.FFmpeg, err = exec.LookPath(t.FFmpeg); err != nil {
		return t, fmt.Errorf("ffmpeg not found (%s): install it (apt-get install ffmpeg) or pass --ffmpeg", cmp.Or(ffmpeg, "ffmpeg"))
	}
	if t.FFprobe, err = exec.LookPath(t.FFprobe); err != nil {
		return t, fmt.Errorf("ffprobe not found (%s): install ffmpeg or pass --ffprobe", cmp.Or(ffprobe, "ffprobe"))
	}
	return t, nil
}

// Check reports whether the located binaries are still there and executable (readiness).
func (t Tools) Check(context.Context) error {
	for _, p := range []string{t.ffmpeg(), t.ffprobe()} {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%s is missing", filepath.Base(p))
		}
		if st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", filepath.Base(p))
		}
	}
	return nil
}

func (t Tools) ffmpeg() string  { return cmp.Or(t.FFmpeg, "ffmpeg") }
func (t Tools) ffprobe() string { return cmp.Or(t.FFprobe, "ffprobe") }

func (t Tools) log() *slog.Logger {
	if t.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Log
}

// Limits bound what Admit accepts.
type Limits struct {
	MaxWidth, MaxHeight int           // 0 → 8192
	MaxPixels           int           // width × height; 0 → DefaultMaxPixels
	MaxDuration         time.Duration // 0 → 48h
}

// DefaultMaxPixels is the largest picture admitted by default: DCI 8K
// (8192x4320). A frame of 8192x8192 is twice that: a small file of such
// frames makes every decoder hold hundreds of megabytes per frame.
const DefaultMaxPixels = 8192 * 4320

// DefaultMaxWidth and DefaultMaxHeight bound each side of an admitted picture.
const (
	DefaultMaxWidth  = 8192
	DefaultMaxHeight = 8192
)

func (l Limits) withDefaults() Limits {
	l.MaxWidth = cmp.Or(l.MaxWidth, DefaultMaxWidth)
	l.MaxHeight = cmp.Or(l.MaxHeight, DefaultMaxHeight)
	l.MaxPixels = cmp.Or(l.MaxPixels, DefaultMaxPixels)
	l.MaxDuration = cmp.Or(l.MaxDuration, 48*time.Hour)
	return l
}

// Rejection codes carried by RejectedError.
const (
	CodeEmpty        = "empty"
	CodeNotMedia     = "not_media"
	CodePlaylist     = "playlist"
	CodeNoVideo      = "no_video"
	CodeZeroDuration = "zero_duration"
	CodeTooLarge     = "too_large"
	CodeUnreadable   = "unreadable"
)

// RejectedError says admission refused the input. It is always permanent.
type RejectedError struct {
	Code   string // empty | not_media | playlist | no_video | zero_duration | too_large | unreadable
	Reason string // a sentence a user can act on, never a server path
}

func (e *RejectedError) Error() string { return "input rejected (" + e.Code + "): " + e.Reason }

func reject(code, format string, args ...any) *RejectedError {
	return &RejectedError{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// OutputError says an output is missing or malformed in a way that running
// the same step again cannot change (the plan and the source decide it), so
// it is permanent (IsPermanent).
type OutputError struct {
	Output  string // the file or rendition at fault, relative to the output folder
	Problem string // what is wrong with it, a phrase a user can read
	// Code names the fault for machines ("" a malformed output): quality_floor.
	Code string
	// Rung is the plan's rung the quality gate found below its bar.
	Rung string `json:"-"`
}

func (e *OutputError) Error() string { return e.Output + " " + e.Problem }

// ExitError says ffmpeg or ffprobe exited non-zero or was killed.
type ExitError struct {
	Code       int    // exit status, -1 when killed by a signal
	Signal     string // the signal that killed it, if any
	StderrTail string // the last few KiB of stderr
}

func (e *ExitError) Error() string {
	var b strings.Builder
	if e.Signal != "" {
		fmt.Fprintf(&b, "killed by signal %s", e.Signal)
	} else {
		fmt.Fprintf(&b, "exit status %d", e.Code)
	}
	if line := lastLines(e.StderrTail, 3); line != "" {
		b.WriteString(": ")
		b.WriteString(line)
	}
	return b.String()
}

// lastLines returns the last n non-empty lines of s joined with " | ".
func lastLines(s string, n int) string {
	var out []string
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			out = append(out, l)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return strings.Join(out, " | ")
}

// IsPermanent reports whether retrying cannot help: a RejectedError, an
// OutputError, or an
// ExitError whose stderr says the input is invalid or corrupt. A process
// killed by a signal (out of memory, cancel) is not permanent.
func IsPermanent(err error) bool {
	if rej, ok := errors.AsType[*RejectedError](err); ok && rej != nil {
		return true
	}
	if oe, ok := errors.AsType[*OutputError](err); ok && oe != nil {
		return true
	}
	ee, ok := errors.AsType[*ExitError](err)
	if !ok || ee == nil || ee.Signal != "" {
		return false
	}
	// Phrases that mean the input itself is bad, so a retry on another
	// worker cannot help.
	permanentMarkers := []string{
		"Invalid data found when processing input",
		"moov atom not found",
		"EBML header parsing failed",
		"could not find codec parameters",
		"does not contain any stream",
		"Invalid NAL unit size",
		"partial file",
	}
	for _, m := range permanentMarkers {
		if strings.Contains(ee.StderrTail, m) {
			return true
		}
	}
	return false
}

// argv is a full command line as recorded on a task: the binary, then its arguments.
func argv(bin string, args []string) []string {
	return append([]string{bin}, args...)
}
