package media

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stderrTailBytes is how much of a child's stderr is kept for errors.
const stderrTailBytes = 8 << 10

// waitDelay bounds how long a cancelled child may take to exit after SIGTERM
// before it is killed and its pipes closed.
const waitDelay = 10 * time.Second

// Run runs ffmpeg with args (which exclude the binary name and should include
// "-progress pipe:1"). Progress blocks read from stdout go to progress (which
// may be nil). Cancelling ctx sends SIGTERM to ffmpeg's process group; the
// returned error then wraps both ctx.Err() and an *ExitError. A non-zero exit
// returns an *ExitError carrying the last few KiB of stderr.
func (t Tools) Run(ctx context.Context, args []string, progress func(Progress)) error {
	if _, err := t.runProgress(ctx, args, progress); err != nil {
		return fmt.Errorf("run ffmpeg: %w", err)
	}
	return nil
}

// runProgress runs ffmpeg with args, whose stdout is its -progress output,
// passing each block to progress (may be nil), and returns the last few
// KiB of its stderr as exec does.
func (t Tools) runProgress(ctx context.Context, args []string, progress func(Progress)) (string, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := ParseProgress(pr, func(p Progress) {
			if progress != nil {
				progress(p)
			}
		})
		// Keep draining so that ffmpeg never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, pr)
		done <- err
	}()
	stderr, err := t.exec(ctx, t.ffmpeg(), args, nil, pw, stderrTailBytes)
	_ = pw.Close()
	if perr := <-done; perr != nil && err == nil {
		t.log().Warn("read ffmpeg progress", "err", perr)
	}
	return stderr, err
}

// exec runs bin with args in its own process group, writing stdout to stdout,
// and returns the last tailBytes of stderr. On failure the error is an
// *ExitError, wrapped together with ctx.Err() when ctx was cancelled.
func (t Tools) exec(ctx context.Context, bin string, args []string, stdin io.Reader, stdout io.Writer, tailBytes int) (string, error) {
	return t.execWith(ctx, bin, args, stdin, stdout, tailBytes, nil)
}

// execWith is exec that closes the files own once the child has started
// (or failed to): pipe ends given to it as stdin or stdout, which then
// only the child holds, so that the other end sees it end with the child.
func (t Tools) execWith(ctx context.Context, bin string, args []string, stdin io.Reader, stdout io.Writer, tailBytes int, own []*os.File) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The negative pid signals the whole group: ffmpeg and anything it started.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = waitDelay
	cmd.Env = ToolEnv(os.Environ())
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	tail := newRing(tailBytes)
	cmd.Stderr = tail
	t.log().Debug("exec", "bin", bin, "args", args)
	err := cmd.Start()
	for _, f := range own {
		_ = f.Close()
	}
	if err == nil {
		err = cmd.Wait()
	}
	if err == nil {
		return tail.String(), nil
	}
	var xe *exec.ExitError
	if !errors.As(err, &xe) {
		if ctx.Err() != nil {
			return tail.String(), fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return tail.String(), err
	}
	ee := &ExitError{Code: xe.ExitCode(), StderrTail: tail.String()}
	if ws, ok := xe.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		ee.Signal = ws.Signal().String()
	}
	if ctx.Err() != nil {
		return ee.StderrTail, fmt.Errorf("%w: %w", ctx.Err(), ee)
	}
	return ee.StderrTail, ee
}

// toolEnvKeep are the variables ffmpeg and ffprobe get from herd's
// environment; toolEnvPrefixes the families of them. What a tool needs to
// find its libraries and hardware stays; herd's keys, cloud credentials and
// everything else do not reach a process that parses untrusted files.
var (
	toolEnvKeep     = []string{"PATH", "TMPDIR", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"}
	toolEnvPrefixes = []string{"NVIDIA_", "LIBVA_"}
)

// ToolEnv is the environment media tools run with: environ reduced to what
// they need (toolEnvKeep and toolEnvPrefixes).
func ToolEnv(environ []string) []string {
	out := make([]string, 0, 8)
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if slices.Contains(toolEnvKeep, k) || slices.ContainsFunc(toolEnvPrefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
			out = append(out, kv)
		}
	}
	return out
}

// ring is an io.Writer that keeps only the last n bytes written to it.
type ring struct {
	mu   sync.Mutex
	buf  []byte
	n    int
	full bool
	pos  int
}

func newRing(n int) *ring { return &ring{buf: make([]byte, n), n: n} }

func (r *ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	written := len(p)
	if len(p) >= r.n {
		copy(r.buf, p[len(p)-r.n:])
		r.pos, r.full = 0, true
		return written, nil
	}
	k := copy(r.buf[r.pos:], p)
	if k < len(p) {
		copy(r.buf, p[k:])
		r.full = true
	}
	r.pos = (r.pos + len(p)) % r.n
	if r.pos == 0 && len(p) > 0 {
		r.full = true
	}
	return written, nil
}

func (r *ring) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return string(r.buf[:r.pos])
	}
	return string(r.buf[r.pos:]) + string(r.buf[:r.pos])
}

// Progress is one block of ffmpeg's -progress output.
type Progress struct {
	OutTime time.Duration // position in the output
	Speed   float64       // multiple of real time; 0 when unknown
	Frame   int64         // video frames written
	FPS     float64       // encode frames per second
	End     bool          // the final block
}

// maxProgressLine bounds one line of the progress stream.
const maxProgressLine = 64 << 10

// ParseProgress reads ffmpeg -progress key=value blocks from r and calls fn
// once per block, when the block's "progress=continue|end" line arrives. It
// trusts out_time_us (ffmpeg 5.1's out_time_ms is in microseconds too) and
// falls back to out_time; "N/A" values leave a field at its previous value.
func ParseProgress(r io.Reader, fn func(Progress)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxProgressLine)
	var p Progress
	haveUS := false
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "out_time_us":
			if us, err := strconv.ParseInt(val, 10, 64); err == nil {
				p.OutTime, haveUS = microseconds(us), true
			}
		case "out_time_ms": // microseconds despite the name
			if us, err := strconv.ParseInt(val, 10, 64); err == nil && !haveUS {
				p.OutTime = microseconds(us)
			}
		case "out_time":
			if d, ok := parseClock(val); ok && !haveUS {
				p.OutTime = d
			}
		case "speed":
			if f, err := strconv.ParseFloat(strings.TrimSuffix(val, "x"), 64); err == nil && f >= 0 && !math.IsInf(f, 0) {
				p.Speed = f
			}
		case "frame":
			if n, err := strconv.ParseInt(val, 10, 64); err == nil && n >= 0 {
				p.Frame = n
			}
		case "fps":
			if f, err := strconv.ParseFloat(val, 64); err == nil && f >= 0 && !math.IsInf(f, 0) {
				p.FPS = f
			}
		case "progress":
			p.End = val == "end"
			fn(p)
			haveUS = false
			if p.End {
				p = Progress{}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read progress: %w", err)
	}
	return nil
}

// microseconds converts ffmpeg's microsecond counters, which start negative
// (INT64_MIN+1) before the first packet, to a non-negative duration.
func microseconds(us int64) time.Duration {
	if us < 0 {
		return 0
	}
	if us > math.MaxInt64/int64(time.Microsecond) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(us) * time.Microsecond
}

// parseClock parses ffmpeg's "HH:MM:SS.micro" (optionally negative).
func parseClock(s string) (time.Duration, bool) {
	if strings.HasPrefix(s, "-") {
		return 0, true
	}
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, false
	}
	h, err1 := strconv.ParseUint(parts[0], 10, 32)
	m, err2 := strconv.ParseUint(parts[1], 10, 8)
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err1 != nil || err2 != nil || err3 != nil || sec < 0 || sec >= 61 || math.IsNaN(sec) {
		return 0, false
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec*float64(time.Second)), true
}
