package pipeline

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

// A check task decodes its library's file where this worker mounts the
// library, and only there: a file that is fine, one that is not media,
// one missing (retried: another worker may mount the right folder), a
// link leading out of the folder, a name that is not inside it, and a
// library this worker does not read.
func TestCheckTask(t *testing.T) {
	t.Parallel()
	lib, outside := t.TempDir(), t.TempDir()
	require.NoError(t, testenv.Clip{Size: "160x90", Rate: 10, Seconds: 1}.Make(filepath.Join(lib, "good.mkv")))
	require.NoError(t, os.WriteFile(filepath.Join(lib, "notes.mkv"), []byte("not a video at all"), 0o644))
	require.NoError(t, testenv.Clip{Size: "160x90", Rate: 10, Seconds: 1}.Make(filepath.Join(outside, "secret.mkv")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.mkv"), filepath.Join(lib, "link.mkv")))
	tools, err := media.Locate("ffmpeg", "ffprobe", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	e := New(tools, nil, nil, media.Limits{}, slog.New(slog.DiscardHandler)).WithLibraries(map[string]string{"movies": lib})
	check := func(library, name string) (job.CheckResult, error) {
		c := &job.Claimed{Task: job.Task{ID: "t", Kind: job.KindCheck}, Job: job.Job{ID: "j", Source: job.Source{Library: library, Name: name}}}
		r, err := e.Execute(context.Background(), c, func(job.Progress) {})
		var res job.CheckResult
		if err == nil {
			require.NoError(t, json.Unmarshal(r.Data, &res))
		}
		return res, err
	}
	res, err := check("movies", "good.mkv")
	require.NoError(t, err)
	require.Equal(t, job.CheckResult{State: job.CheckOK}, res)
	res, err = check("movies", "notes.mkv")
	require.NoError(t, err)
	require.Equal(t, job.CheckDamaged, res.State)
	require.NotEmpty(t, res.Note)

	_, err = check("movies", "gone.mkv")
	require.ErrorContains(t, err, "is not in library movies as this worker mounts it")
	_, permanent := job.IsPermanent(err)
	require.False(t, permanent, "another worker may mount the right folder")
	_, err = check("movies", "link.mkv")
	require.ErrorContains(t, err, "escapes", "a link out of the library is not followed")
	_, err = check("movies", "../"+filepath.Base(outside)+"/secret.mkv")
	code, permanent := job.IsPermanent(err)
	require.True(t, permanent, "%v", err)
	require.Equal(t, "bad_path", code)
	_, err = check("shows", "good.mkv")
	require.ErrorContains(t, err, "does not read library \"shows\"")
	_, permanent = job.IsPermanent(err)
	require.False(t, permanent)
}

// A verification that found an output below the profile's quality floor
// fails the job permanently under its own code, with the measure.
func TestQualityFloorIsPermanent(t *testing.T) {
	t.Parallel()
	err := classify(&media.OutputError{Output: "media_0.m3u8", Code: media.CodeQualityFloor, Problem: "(360p): SSIM 0.9100 is below the profile's floor of 0.95"}, "verifying the outputs failed")
	code, permanent := job.IsPermanent(err)
	require.True(t, permanent)
	require.Equal(t, "quality_floor", code)
	require.ErrorContains(t, err, "media_0.m3u8 (360p): SSIM 0.9100 is below the profile's floor of 0.95")
	code, _ = job.IsPermanent(classify(&media.OutputError{Output: "x.m4s", Problem: "is missing"}, "verify"))
	require.Equal(t, "bad_output", code)
}

// A profile with a VMAF floor has its verify task run only where VMAF is
// measured; an SSIM floor, or none, anywhere.
func TestVMAFFloorNeedsAMeasuringWorker(t *testing.T) {
	t.Parallel()
	p, err := profile.Parse([]byte("name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, crf: 20, min_quality: {vmaf: 80, ssim: 0.9}}\n"))
	require.NoError(t, err)
	needs := map[job.Kind][]string{}
	for _, task := range Tasks(p, 3) {
		needs[task.Kind] = task.Needs
	}
	require.Equal(t, []string{job.CapVMAF}, needs[job.KindVerify])
	require.Empty(t, needs[job.KindEncode])
	p.Video.MinQuality.VMAF = 0
	for _, task := range Tasks(p, 3) {
		require.Empty(t, task.Needs, task.Kind)
	}
}
