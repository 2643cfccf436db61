package pack_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/pack"
)

// A live media playlist is an EVENT playlist that players start at its
// beginning (EXT-X-START), grows by segments alone, and ends with
// EXT-X-ENDLIST; a new EXT-X-MAP stands where the init segment changes.
func TestLiveMedia(t *testing.T) {
	t.Parallel()
	segs := []pack.LiveSegment{
		{URI: "a/r0-1.m4s", Init: "a/r0-init.m4s", Duration: 4},
		{URI: "b/r0-2.m4s", Init: "b/r0-init.m4s", Duration: 4},
	}
	running := string(pack.LiveMedia(5, segs[:1], false))
	grown := string(pack.LiveMedia(5, segs, false))
	ended := string(pack.LiveMedia(5, segs, true))
	require.True(t, strings.HasPrefix(grown, running), "a growing playlist keeps what it listed:\n%s\n%s", running, grown)
	require.True(t, strings.HasPrefix(ended, grown))
	require.Equal(t, "#EXT-X-ENDLIST\n", strings.TrimPrefix(ended, grown))
	require.Equal(t, 1, strings.Count(running, "#EXT-X-START:TIME-OFFSET=0\n"))
	require.Less(t, strings.Index(running, "#EXT-X-PLAYLIST-TYPE:EVENT"), strings.Index(running, "#EXT-X-START"))
	require.Equal(t, 2, strings.Count(grown, "#EXT-X-MAP:"))

	p, typ, err := m3u8.DecodeFrom(bytes.NewReader([]byte(ended)), true)
	require.NoError(t, err)
	require.Equal(t, m3u8.MEDIA, typ)
	mp := p.(*m3u8.MediaPlaylist)
	require.Equal(t, m3u8.EVENT, mp.MediaType)
	require.True(t, mp.Closed)
	require.Zero(t, mp.StartTime)
}
