package pack_test

import (
	"bytes"
	"strings"
	"testing"

	m3u8 "github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/pack"
)

func TestRewriteMediaURIs(t *testing.T) {
	t.Parallel()
	media := "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"init-0.m4s\"\n" +
		"#EXTINF:4.004000,\nchunk-0-00001.m4s\n#EXT-X-BYTERANGE:1200@0\n#EXTINF:3.996000,\nchunk-0-00002.m4s\n#EXT-X-ENDLIST\n"
	signed := func(uri string) (string, error) {
		return "https://bucket.example/jobs/j/out/" + uri + "?X-Amz-Signature=ab%2Fc&x=1", nil
	}
	out, err := pack.RewriteMediaURIs([]byte(media), signed)
	require.NoError(t, err)
	want := strings.NewReplacer(`URI="init-0.m4s"`, `URI="https://bucket.example/jobs/j/out/init-0.m4s?X-Amz-Signature=ab%2Fc&x=1"`,
		"\nchunk-0-00001.m4s\n", "\nhttps://bucket.example/jobs/j/out/chunk-0-00001.m4s?X-Amz-Signature=ab%2Fc&x=1\n",
		"\nchunk-0-00002.m4s\n", "\nhttps://bucket.example/jobs/j/out/chunk-0-00002.m4s?X-Amz-Signature=ab%2Fc&x=1\n").Replace(media)
	require.Equal(t, want, string(out), "only the URIs change")
	p, typ, err := m3u8.DecodeFrom(bytes.NewReader(out), true)
	require.NoError(t, err)
	require.Equal(t, m3u8.MEDIA, typ)
	mp := p.(*m3u8.MediaPlaylist)
	require.Equal(t, "https://bucket.example/jobs/j/out/init-0.m4s?X-Amz-Signature=ab%2Fc&x=1", mp.Map.URI)
	require.InDelta(t, 4.004, mp.Segments[0].Duration, 1e-9)
	require.Equal(t, int64(1200), mp.Segments[1].Limit)

	// A master playlist is not rewritten (its URIs are playlists, which
	// come from the server); nor is anything when nothing signs.
	master := "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nmedia_0.m3u8\n"
	out, err = pack.RewriteMediaURIs([]byte(master), signed)
	require.NoError(t, err)
	require.Nil(t, out)
	out, err = pack.RewriteMediaURIs([]byte(media), func(string) (string, error) { return "", nil })
	require.NoError(t, err)
	require.Nil(t, out)
	crlf := strings.ReplaceAll(media, "\n", "\r\n")
	out, err = pack.RewriteMediaURIs([]byte(crlf), signed)
	require.NoError(t, err)
	require.Contains(t, string(out), "\r\nhttps://bucket.example/jobs/j/out/chunk-0-00002.m4s?X-Amz-Signature=ab%2Fc&x=1\r\n")
}
