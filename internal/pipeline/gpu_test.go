package pipeline

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
)

func prof(t *testing.T, engine string) *profile.Profile {
	t.Helper()
	p, err := profile.Parse([]byte("name: p\nversion: 1\nformat: hls\nengine: " + engine +
		"\nvideo: {codec: h264, rungs: [{height: 720, bitrate: 2M}, {height: 360, bitrate: 800k}]}\n"))
	require.NoError(t, err)
	return p
}

func TestTaskNeeds(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"nvenc:h264"}, TaskNeeds(prof(t, "nvenc")))
	require.Equal(t, []string{"vaapi:h264"}, TaskNeeds(prof(t, "vaapi")))
	require.Nil(t, TaskNeeds(prof(t, "auto")), "auto may run anywhere")
	require.Nil(t, TaskNeeds(prof(t, "software")))
	// HEVC and AV1 in software run only where libx265 and libsvtav1 were proven.
	av1, _ := profile.Builtin().Get("web-cmaf-av1")
	require.Equal(t, []string{"av1"}, TaskNeeds(av1))
	auto := *av1
	auto.Engine = profile.EngineAuto
	require.Equal(t, []string{"av1"}, TaskNeeds(&auto), "auto falls back on software, which must be there")
	hevc, _ := profile.Builtin().Get("archive-hevc")
	require.Equal(t, []string{"hevc"}, TaskNeeds(hevc))
	for _, tk := range Tasks(prof(t, "qsv"), 3) {
		if tk.Kind == job.KindEncode {
			require.Equal(t, []string{"qsv:h264"}, tk.Needs)
		} else {
			require.Empty(t, tk.Needs, "only the encode needs the GPU")
		}
	}
}

func TestHardwarePlanWithinSessionBudget(t *testing.T) {
	t.Parallel()
	plan := &media.Plan{Format: "hls", Video: media.VideoPlan{Codec: "h264", Encoder: "libx264"}, Rungs: make([]media.RungPlan, 2)}
	claimed := func(engine string, needs ...string) *job.Claimed {
		b, _ := json.Marshal(prof(t, engine))
		return &job.Claimed{Task: job.Task{Kind: job.KindEncode, Needs: needs}, Profile: b}
	}
	gpu := NewGPU(media.HWNVENC, []string{"h264", "nvenc:h264", "nvenc:hevc"}, 5)
	e := New(media.Tools{}, nil, profile.Builtin(), media.Limits{}, slog.New(slog.NewTextHandler(io.Discard, nil))).WithGPU(gpu)

	// A software profile stays in software.
	pl, done, err := e.hardwarePlan(t.Context(), claimed("software"), plan)
	require.NoError(t, err)
	require.Equal(t, "libx264", pl.Video.Encoder)
	done()

	// auto takes the GPU when sessions are free: 2 rungs = 2 sessions.
	a, doneA, err := e.hardwarePlan(t.Context(), claimed("auto"), plan)
	require.NoError(t, err)
	require.Equal(t, "h264_nvenc", a.Video.Encoder)
	require.EqualValues(t, 2, gpu.InUse())
	b, doneB, err := e.hardwarePlan(t.Context(), claimed("nvenc", "nvenc:h264"), plan)
	require.NoError(t, err)
	require.Equal(t, "h264_nvenc", b.Video.Encoder)
	require.EqualValues(t, 4, gpu.InUse())
	require.Equal(t, []string{"h264", "nvenc:h264", "nvenc:hevc"}, gpu.ClaimCaps([]string{"h264", "nvenc:h264", "nvenc:hevc"}), "one session left")

	// Only one session left: auto falls back to software, a GPU-only task goes back unrun.
	c, doneC, err := e.hardwarePlan(t.Context(), claimed("auto"), plan)
	require.NoError(t, err)
	require.Equal(t, "libx264", c.Video.Encoder)
	doneC()
	_, _, err = e.hardwarePlan(t.Context(), claimed("nvenc", "nvenc:h264"), plan)
	require.True(t, errors.Is(err, job.ErrRequeue), "never more sessions than the GPU allows")

	doneA()
	doneB()
	require.Zero(t, gpu.InUse())

	// auto leaves a ladder of two codecs (web-cmaf-av1) in software.
	multi := &media.Plan{Format: "hls", Video: media.VideoPlan{Codec: "h264", Encoder: "libx264"},
		Rungs: []media.RungPlan{{}, {Video: &media.VideoPlan{Codec: "av1", Encoder: "libsvtav1"}}}}
	m, doneM, err := e.hardwarePlan(t.Context(), claimed("auto"), multi)
	require.NoError(t, err)
	require.Same(t, multi, m)
	require.Zero(t, gpu.InUse())
	doneM()

	// Full budget: GPU capabilities are not advertised in claims.
	full := NewGPU(media.HWNVENC, []string{"nvenc:h264"}, 2)
	e.WithGPU(full)
	_, doneFull, err := e.hardwarePlan(t.Context(), claimed("auto"), plan)
	require.NoError(t, err)
	require.Equal(t, []string{"h264"}, full.ClaimCaps([]string{"h264", "nvenc:h264"}))
	doneFull()
	require.Equal(t, []string{"h264", "nvenc:h264"}, full.ClaimCaps([]string{"h264", "nvenc:h264"}))

	// A ladder larger than the whole budget never fits this GPU.
	big := &media.Plan{Format: "hls", Video: media.VideoPlan{Codec: "h264", Encoder: "libx264"}, Rungs: make([]media.RungPlan, 5)}
	_, _, err = e.hardwarePlan(t.Context(), claimed("nvenc", "nvenc:h264"), big)
	require.ErrorContains(t, err, "needs 5")
	require.False(t, errors.Is(err, job.ErrRequeue))
	pl, _, err = e.hardwarePlan(t.Context(), claimed("auto"), big)
	require.NoError(t, err)
	require.Equal(t, "libx264", pl.Video.Encoder, "auto encodes in software instead")

	// Without a GPU, a GPU-only task is refused (and retried elsewhere).
	e.WithGPU(nil)
	_, _, err = e.hardwarePlan(t.Context(), claimed("nvenc", "nvenc:h264"), plan)
	require.ErrorContains(t, err, "lacks")
}
