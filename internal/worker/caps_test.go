package worker

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
)

// Every hardware encoder media can plan for is proven by a trial encode
// with that encoder, under the capability a task needing it asks for.
func TestTrialsProveEveryHardwareEncoder(t *testing.T) {
	t.Parallel()
	byCap := map[string]string{}
	for _, tr := range trials() {
		byCap[tr.cap] = tr.encoder
	}
	for _, e := range media.HWEncoders() {
		require.Contains(t, hwSetups, e.Family, "no trial setup for the %s family", e.Family)
		c := media.HWCap(e.Family, e.Codec)
		require.Equal(t, e.Encoder, byCap[c], "no trial proves %s", c)
	}
	for _, e := range media.SoftwareEncoders() {
		c := media.SoftwareCap(e.Codec)
		require.Equal(t, e.Encoder, byCap[c], "no trial proves %s", c)
		require.True(t, Software(c))
	}
	require.False(t, Software(media.HWCap(media.HWNVENC, "av1")))
}

// A profile the profile package accepts never needs an encoder no worker
// tries: such a task would wait forever. Every engine and codec a profile
// may name is tried in every format; each need of an accepted one must be
// a capability some trial proves.
func TestNoProfileNeedsAnUnprovenEncoder(t *testing.T) {
	t.Parallel()
	proven := map[string]bool{}
	for _, tr := range trials() {
		proven[tr.cap] = true
	}
	accepted := 0
	for _, base := range profile.Builtin().All() {
		for _, engine := range profile.Engines() {
			for _, codec := range profile.VideoCodecs() {
				p := *base
				p.Engine, p.Video.Codec = engine, codec
				if p.Validate() != nil {
					continue
				}
				accepted++
				for _, need := range pipeline.TaskNeeds(&p) {
					require.True(t, proven[need], "profile %s with engine %s and codec %s needs %s, which no worker's trial encode proves: add a trial for it, or refuse the combination in profile.Validate", base.Name, engine, codec, need)
				}
			}
		}
	}
	require.NotZero(t, accepted)
}
