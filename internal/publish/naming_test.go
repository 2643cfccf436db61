package publish_test

import (
	"path"
	"strings"
	"testing"

	"github.com/herdhq/herd/internal/publish"
)

func TestLibraryPath(t *testing.T) {
	for _, tc := range []struct{ kind, name, want string }{
		{"auto", "The.Matrix.1999.1080p.BluRay.x264-GRP.mkv", "The Matrix (1999)/The Matrix (1999).mp4"},
		{"auto", "Blade Runner 2049 (2017).mkv", "Blade Runner 2049 (2017)/Blade Runner 2049 (2017).mp4"},
		{"auto", "2001 A Space Odyssey 1968.avi", "2001 A Space Odyssey (1968)/2001 A Space Odyssey (1968).mp4"},
		{"auto", "1917.mkv", "1917/1917.mp4"},
		{"auto", "Some Show - S01E02 - Pilot.mp4", "Some Show/Season 01/Some Show - S01E02.mp4"},
		{"auto", "some.show.s1e2.720p.mkv", "some show/Season 01/some show - S01E02.mp4"},
		{"auto", "Doctor_Who_2005_S03E10_Blink.mkv", "Doctor Who (2005)/Season 03/Doctor Who (2005) - S03E10.mp4"},
		{"auto", "Show Name 2x05.mkv", "Show Name/Season 02/Show Name - S02E05.mp4"},
		{"tv", "holiday video.mov", "holiday video/holiday video.mp4"},
		{"movies", "Some Show - S01E02.mkv", "Some Show/Some Show.mp4"},
		{"auto", "movie-hello.mp4", "movie-hello/movie-hello.mp4"},
		{"auto", "..mkv", "Untitled/Untitled.mp4"},
		{"auto", "a/b/../../etc: passwd?.mkv", "etc passwd/etc passwd.mp4"},
		{"auto", "Amélie (2001).mkv", "Amélie (2001)/Amélie (2001).mp4"},
	} {
		if got := publish.LibraryPath(tc.kind, tc.name, ".mp4"); got != tc.want {
			t.Errorf("LibraryPath(%s, %q) = %q, want %q", tc.kind, tc.name, got, tc.want)
		}
	}
}

func FuzzLibraryPath(f *testing.F) {
	for _, s := range []string{"The.Matrix.1999.mkv", "Show - S01E02.mp4", "../../x", "\x00", "(2020)", "S01E01.mkv", strings.Repeat("a ", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p := publish.LibraryPath("auto", name, ".mp4")
		if path.Clean(p) != p || strings.HasPrefix(p, "/") || strings.Contains(p, "\x00") || strings.Contains(p, "\\") {
			t.Fatalf("unsafe library path %q from %q", p, name)
		}
		for _, part := range strings.Split(p, "/") {
			if part == "" || part == "." || part == ".." || len(part) > 255 {
				t.Fatalf("bad path element %q in %q from %q", part, p, name)
			}
		}
	})
}
