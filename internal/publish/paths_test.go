package publish

import "testing"

func TestServerPaths(t *testing.T) {
	for _, tc := range []struct{ p, from, to, want string }{
		{"/srv/lib/Movies/A (2001)/A (2001).mkv", "/srv/lib", "/data", "/data/Movies/A (2001)/A (2001).mkv"},
		{"/srv/lib/Movies/a.mkv", "/srv/lib", "", "/srv/lib/Movies/a.mkv"},
		{"/srv/lib/Movies/a.mkv", "/srv/lib", `D:\Media\`, `D:\Media\Movies\a.mkv`},
		{"/elsewhere/a.mkv", "/srv/lib", "/data", "/elsewhere/a.mkv"},
	} {
		if got := mapPath(tc.p, tc.from, tc.to); got != tc.want {
			t.Errorf("mapPath(%q, %q, %q) = %q, want %q", tc.p, tc.from, tc.to, got, tc.want)
		}
	}
	for _, tc := range []struct {
		p, dir string
		want   bool
	}{
		{"/data/movies/a.mkv", "/data/movies", true},
		{"/data/movies/a.mkv", "/data/movies/", true},
		{"/data/movies2/a.mkv", "/data/movies", false},
		{"/data/movies", "/data/movies", false},
		{`D:\Media\Movies\a.mkv`, `D:\Media`, true},
		{"/a.mkv", "/", false},
	} {
		if got := under(tc.p, tc.dir); got != tc.want {
			t.Errorf("under(%q, %q) = %v", tc.p, tc.dir, got)
		}
	}
	if d := dirOf(`D:\Media\Movies\a.mkv`); d != `D:\Media\Movies` {
		t.Error(d)
	}
}
