package media

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/herdhq/herd/internal/job"
)

// ErrNotChecked is a file CheckDecode did not decode: larger or longer
// than herd decodes (Limits), which says nothing of its health.
var ErrNotChecked = errors.New("not checked")

// CheckDecode decodes every video and audio stream of the file at path to
// nowhere and says what went wrong first; "" when it decodes cleanly. The
// container is sniffed and forced, as for any source (Admit), and ffmpeg
// stops at the first error (-xerror). progress, when not nil, is told
// how much of the file is decoded (0 to 1) as it goes. err is for the
// check itself (ctx ended, ffmpeg missing), not the file.
func (t Tools) CheckDecode(ctx context.Context, path string, lim Limits, progress func(float64)) (string, error) {
	info, err := t.Admit(ctx, path, lim)
	if err != nil {
		if re, ok := errors.AsType[*RejectedError](err); ok {
			if re.Code == CodeTooLarge {
				return "", fmt.Errorf("%w: %s", ErrNotChecked, re.Reason)
			}
			return re.Reason, nil
		}
		return "", err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	args := []string{"-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1", "-v", "error", "-xerror", "-protocol_whitelist", "file,pipe",
		"-f", info.Demuxer, "-i", "file:" + abs, "-map", "0:v?", "-map", "0:a?", "-f", "null", "-"}
	stderr, err := t.runProgress(ctx, args, func(p Progress) {
		if progress != nil && info.Duration > 0 {
			progress(min(max(p.OutTime.Seconds()/info.Duration, 0), 1))
		}
	})
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	// The first line: ffmpeg stops at the first error (-xerror), and says
	// what it stopped at after the first thing that went wrong.
	msg, _, _ := strings.Cut(strings.TrimSpace(stderr), "\n")
	msg = strings.TrimPrefix(strings.TrimSpace(strings.ReplaceAll(msg, "file:"+abs, "")), ": ")
	var ee *ExitError
	switch {
	case errors.As(err, &ee) && msg == "":
		return fmt.Sprintf("ffmpeg stopped decoding it (exit %d)", ee.Code), nil
	case err != nil && !errors.As(err, &ee):
		return "", err
	}
	// What ffmpeg says may quote the file's own bytes (tags, stream
	// names): only printable text reaches a terminal or the page.
	msg = strings.TrimSpace(strings.ReplaceAll(job.Printable(msg), "\t", " "))
	if msg != "" {
		return cutText(msg, 300), nil
	}
	return "", nil
}

// cutText cuts s to n bytes of valid text.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
