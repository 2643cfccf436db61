package media

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/pack"
	"github.com/herdhq/herd/internal/profile"
)

func TestSampleSegments(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int
		full bool
		want []int
	}{
		{1, false, []int{0}},
		{3, false, []int{0, 1, 2}},
		{4, false, []int{0, 2, 3}},
		{5, false, []int{0, 2, 4}},
		{6, false, []int{0, 3, 5}},
		{7, false, []int{0, 3, 6}},
		{8, false, []int{0, 4, 7}},
		{12, false, []int{0, 4, 7, 11}},
		{13, false, []int{0, 4, 8, 12}},
		{14, false, []int{0, 3, 7, 10, 13}},
		{15, false, []int{0, 4, 7, 11, 14}},
		{100, false, []int{0, 25, 50, 74, 99}},
		{8, true, []int{0, 1, 2, 3, 4, 5, 6, 7}},
	} {
		require.Equal(t, tc.want, sampleSegments(tc.n, tc.full), "n=%d full=%v", tc.n, tc.full)
	}
}

// A file ffprobe cannot read at all, or decodes with errors, is the fault
// of the output it was joined from, named as that output: permanent.
func TestDecodeAloneNamesTheOutput(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	ctx := context.Background()
	v := &verifier{t: tools, pl: &Plan{}}
	junk := filepath.Join(t.TempDir(), "media_0.mp4")
	require.NoError(t, os.WriteFile(junk, []byte("not a video at all, just text"), 0o644))
	err := v.decodeAlone(ctx, "mov", junk, "media_0.m3u8")
	bad, ok := errors.AsType[*OutputError](err)
	require.True(t, ok, "%v", err)
	require.Equal(t, "media_0.m3u8", bad.Output)
	require.True(t, IsPermanent(err))

	ctx, cancel := context.WithCancel(ctx)
	cancel()
	err = v.decodeAlone(ctx, "mov", junk, "media_0.m3u8")
	require.Error(t, err)
	_, ok = errors.AsType[*OutputError](err)
	require.False(t, ok, "a cancelled decode says nothing of the output: %v", err)
}

// segmentedLadder encodes an 8 s 320x180 clip with web-hls cut into 1 s
// segments (no thumbnails): eight segments a rung, of which the default
// verification decodes 0, 4 and 7. It returns the folder and the
// first rung's segment names.
func segmentedLadder(t *testing.T) (tools Tools, pl *Plan, input, dir string, segs []string) {
	t.Helper()
	tools = needFFmpeg(t)
	ctx := context.Background()
	input = clip(t, "in.mp4", "320x180", "8")
	info, err := tools.Admit(ctx, input, Limits{})
	require.NoError(t, err)
	p := *builtin(t, "web-hls")
	p.SegmentSeconds = 1
	pl, err = NewPlan(info, &p)
	require.NoError(t, err)
	pl.Thumbs = ThumbPlan{}
	dir = t.TempDir()
	_, err = tools.Encode(ctx, pl, input, dir, nil)
	require.NoError(t, err)
	master, err := pack.ReadMaster(filepath.Join(dir, MasterName))
	require.NoError(t, err)
	st, _, err := pack.ReadPlaylistStream(dir, master.Variants[0].URI)
	require.NoError(t, err)
	require.Len(t, st.Segments, 8)
	for _, g := range st.Segments {
		segs = append(segs, g.Name)
	}
	return tools, pl, input, dir, segs
}

// copyOutputs copies a flat output folder so that each case damages its own.
func copyOutputs(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	require.NoError(t, os.CopyFS(out, os.DirFS(dir)))
	return out
}

// TestVerifyDamageInUnsampledSegments damages segments the default
// verification does not decode (1, 3 and 6 of 8): the packet-level checks
// every segment gets still find a truncated, padded, zero-filled or missing
// one, permanently, naming it. Noise in the picture data that leaves every
// box and size intact is found only by verify: full.
func TestVerifyDamageInUnsampledSegments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tools, pl, input, dir, segs := segmentedLadder(t)

	for _, mode := range []string{profile.VerifySampled, profile.VerifyFull} {
		p := *pl
		p.Verify = mode
		outs, _, err := tools.Verify(ctx, &p, input, dir)
		require.NoError(t, err, "a clean ladder passes %s", mode)
		for _, o := range outs {
			if o.Kind != "hls" || o.Name == "master" {
				continue
			}
			require.Equal(t, mode, o.Verify, o.Name)
			if o.Name == "audio" {
				require.Equal(t, o.Segments, o.Decoded, "audio is decoded whole")
				continue
			}
			require.Equal(t, 8, o.Segments, o.Name)
			want := 3
			if mode == profile.VerifyFull {
				want = 8
			}
			require.Equal(t, want, o.Decoded, o.Name)
			require.Greater(t, o.SSIM, 0.9, o.Name)
		}
	}

	for _, tc := range []struct {
		name   string
		seg    int
		damage func(path string) error
		want   string
	}{
		{"truncated", 3, func(path string) error {
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			return os.Truncate(path, fi.Size()*2/3)
		}, "truncated"},
		{"padded", 3, func(path string) error {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.Write(make([]byte, 100))
			return errors.Join(err, f.Close())
		}, "segment"},
		{"zero-filled", 6, func(path string) error {
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			return os.WriteFile(path, make([]byte, fi.Size()), 0o644)
		}, "segment"},
		{"missing", 1, os.Remove, "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := copyOutputs(t, dir)
			require.NoError(t, tc.damage(filepath.Join(d, segs[tc.seg])))
			_, _, err := tools.Verify(ctx, pl, input, d)
			require.Error(t, err)
			var oe *OutputError
			require.ErrorAs(t, err, &oe)
			require.True(t, IsPermanent(err))
			require.ErrorContains(t, err, segs[tc.seg])
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), d, "no server path in the message")
		})
	}

	// Noise over the second half of a segment: inside the mdat, boxes and
	// sizes intact.
	noise := func(t *testing.T, seg string) {
		b, err := os.ReadFile(seg)
		require.NoError(t, err)
		rng := rand.New(rand.NewPCG(5, 6))
		for i := len(b) / 2; i < len(b); i++ {
			b[i] = byte(rng.UintN(256))
		}
		require.NoError(t, os.WriteFile(seg, b, 0o644))
	}
	t.Run("picture noise in a sampled segment SSIM is not measured on", func(t *testing.T) {
		t.Parallel()
		d := copyOutputs(t, dir)
		require.Equal(t, [][2]float64{{0, 1}, {4, 5}}, pl.QualityWindows([][2]float64{{0, 1}, {4, 5}, {7, 8}}), "SSIM on 0 and 4")
		noise(t, filepath.Join(d, segs[7]))
		_, _, err := tools.Verify(ctx, pl, input, d)
		require.ErrorContains(t, err, "decode", "every frame of a sampled segment is decoded")
		require.True(t, IsPermanent(err))
	})

	t.Run("picture noise", func(t *testing.T) {
		t.Parallel()
		d := copyOutputs(t, dir)
		noise(t, filepath.Join(d, segs[3]))
		_, _, err := tools.Verify(ctx, pl, input, d)
		require.NoError(t, err, "sampled does not decode segment 3: only full finds this")
		p := *pl
		p.Verify = profile.VerifyFull
		_, _, err = tools.Verify(ctx, &p, input, d)
		require.ErrorContains(t, err, "decode")
		require.True(t, IsPermanent(err))
	})
}
