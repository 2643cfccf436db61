package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/media"
)

// Trial is one encoder a worker tried at start-up.
type Trial struct {
	Cap     string `json:"capability"` // what the worker advertises when it works: h264, hevc, nvenc:h264, ...
	Encoder string `json:"encoder"`
	OK      bool   `json:"ok"`
	Why     string `json:"why,omitempty"` // why it does not work here
}

// trial is an encoder and the ffmpeg arguments that prove it with one frame.
type trial struct {
	cap, encoder string
	pre, filter  []string
	device       string // a device file that must exist first
}

// hwSetup is how a trial encode reaches a hardware family's device.
type hwSetup struct {
	pre, filter []string
	device      string
}

// hwSetups has the setup of every family in media's table of hardware
// encoders; a family without one is never proven (the tests check there is
// none).
var hwSetups = map[string]hwSetup{
	media.HWNVENC: {device: "/dev/nvidiactl"},
	media.HWVAAPI: {
		pre:    []string{"-vaapi_device", media.VAAPIDevice},
		filter: []string{"-vf", "format=nv12,hwupload"},
		device: media.VAAPIDevice,
	},
	media.HWQSV: {
		pre:    []string{"-init_hw_device", "qsv=hw", "-filter_hw_device", "hw"},
		filter: []string{"-vf", "format=nv12,hwupload=extra_hw_frames=16"},
		device: media.VAAPIDevice,
	},
}

// trials are the software encoders, then every hardware encoder media can
// plan for: each one a task may need is proven here.
func trials() []trial {
	var out []trial
	for _, e := range media.SoftwareEncoders() {
		out = append(out, trial{cap: media.SoftwareCap(e.Codec), encoder: e.Encoder})
	}
	for _, e := range media.HWEncoders() {
		s, ok := hwSetups[e.Family]
		if !ok {
			continue
		}
		out = append(out, trial{cap: media.HWCap(e.Family, e.Codec), encoder: e.Encoder, pre: s.pre, filter: s.filter, device: s.device})
	}
	return out
}

// TrialArgs is the argv (without the binary) that encodes one small frame with an encoder.
func TrialArgs(pre, filter []string, encoder string) []string {
	args := []string{"-nostdin", "-hide_banner", "-v", "error"}
	args = append(args, pre...)
	args = append(args, "-f", "lavfi", "-i", "color=black:size=256x256:rate=25:duration=0.2")
	args = append(args, filter...)
	return append(args, "-frames:v", "1", "-c:v", encoder, "-f", "null", "-")
}

// Detect proves which encoders work on this machine: an encoder counts only
// when a one-frame trial encode with it succeeds.
func Detect(ctx context.Context, ffmpeg string) []Trial {
	return DetectCaps(ctx, ffmpeg, func(string) bool { return true })
}

// DetectCaps is Detect for only the capabilities want says: a task's pod
// proves what its one task may use, not every encoder, so it starts at once.
func DetectCaps(ctx context.Context, ffmpeg string, want func(cap string) bool) []Trial {
	var (
		out []Trial
		wg  sync.WaitGroup
	)
	for _, t := range trials() {
		if want(t.cap) {
			out = append(out, Trial{Cap: t.cap, Encoder: t.encoder})
		}
	}
	// Side by side: each is one frame, and a server or worker starts only
	// once they all ended.
	for i, t := range slices.DeleteFunc(trials(), func(t trial) bool { return !want(t.cap) }) {
		wg.Go(func() { out[i].OK, out[i].Why = runTrial(ctx, ffmpeg, t) })
	}
	wg.Wait()
	return out
}

// runTrial runs one trial encode: whether it worked, and if not, why.
func runTrial(ctx context.Context, ffmpeg string, t trial) (bool, string) {
	if t.device != "" {
		if _, err := os.Stat(t.device); err != nil {
			return false, "no " + t.device + " on this machine"
		}
	}
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(tctx, ffmpeg, TrialArgs(t.pre, t.filter, t.encoder)...)
	cmd.Env = media.ToolEnv(os.Environ()) // the environment the real encodes get
	b, err := cmd.CombinedOutput()
	switch {
	case err == nil:
		return true, ""
	case errors.Is(tctx.Err(), context.DeadlineExceeded):
		return false, "the trial encode did not finish in 20 s"
	default:
		return false, "the trial encode failed: " + lastLine(string(b), err)
	}
}

func lastLine(s string, err error) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return err.Error()
	}
	lines := strings.Split(s, "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Software says whether a capability is a software encoder's (h264, av1),
// for DetectCaps: what an in-process worker proves.
func Software(cap string) bool { return slices.Contains(media.SoftwareCaps(), cap) }

// Caps lists the capabilities whose trial succeeded.
func Caps(trials []Trial) []string {
	caps := []string{}
	for _, t := range trials {
		if t.OK {
			caps = append(caps, t.Cap)
		}
	}
	return caps
}

// FormatTrials is the table `herd worker --check` prints.
func FormatTrials(trials []Trial) string {
	var b strings.Builder
	for _, t := range trials {
		state := "works"
		if !t.OK {
			state = "no: " + t.Why
		}
		fmt.Fprintf(&b, "%-12s %-12s %s\n", t.Cap, t.Encoder, state)
	}
	return b.String()
}
