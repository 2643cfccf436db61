package pack

import (
	"bytes"
	"regexp"
)

// mapURI is the URI attribute of an EXT-X-MAP tag.
var mapURI = regexp.MustCompile(`^(#EXT-X-MAP:(?:.*,)?URI=")([^"]*)(".*)$`)

// RewriteMediaURIs returns a media playlist with each segment's URI and
// each EXT-X-MAP's URI replaced by what to returns for it, every other
// byte as it was (EXTINF durations are kept to the microsecond). It returns
// nil when playlist is not a media playlist, or when to answers "" for a
// URI (nothing to rewrite it to).
func RewriteMediaURIs(playlist []byte, to func(uri string) (string, error)) ([]byte, error) {
	if !bytes.HasPrefix(playlist, []byte("#EXTM3U")) || !bytes.Contains(playlist, []byte("\n#EXTINF:")) {
		return nil, nil
	}
	var out bytes.Buffer
	out.Grow(len(playlist) * 3)
	for line := range bytes.Lines(playlist) {
		body := bytes.TrimRight(line, "\r\n")
		end := line[len(body):]
		var pre, uri, post []byte
		switch {
		case len(bytes.TrimSpace(body)) == 0:
		case body[0] != '#':
			uri = bytes.TrimSpace(body)
		default:
			if m := mapURI.FindSubmatch(body); m != nil {
				pre, uri, post = m[1], m[2], m[3]
			}
		}
		if uri == nil {
			out.Write(line)
			continue
		}
		u, err := to(string(uri))
		if err != nil {
			return nil, err
		}
		if u == "" {
			return nil, nil
		}
		out.Write(pre)
		out.WriteString(u)
		out.Write(post)
		out.Write(end)
	}
	return out.Bytes(), nil
}
