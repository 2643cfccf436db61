package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/store/pgtest"
)

func TestMain(m *testing.M) {
	Shim() // the overhead scenario runs this test binary as ffmpeg's stand-in
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// TestQuick runs every scenario in the quick mode (make bench-quick), so
// that the benchmarks cannot rot: each must finish, fill its tables, measure
// its targets and render; the checks are on what must hold whatever the
// machine (no double claim, SSIM of real encodes, herd's rungs as good as
// the same settings by hand), never on speed.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herd and runs ffmpeg, HandBrakeCLI and PostgreSQL")
	}
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if !have(tool) {
			t.Skipf("%s is not installed (make test installs it)", tool)
		}
	}
	dir := t.TempDir()
	herd := filepath.Join(dir, "herd")
	// -race, as cmd/herd's tests build it: the packages come from the build cache.
	out, err := exec.Command("go", "build", "-race", "-o", herd, "../../cmd/herd").CombinedOutput()
	require.NoError(t, err, string(out))

	var log bytes.Buffer
	opt := Options{Herd: herd, Work: filepath.Join(dir, "work"), Cache: filepath.Join(dir, "cache"),
		Sample: "../media/testdata/movie-hello.mp4", Quick: true, Log: &log}
	if _, err := pgtest.NewDatabase(); err == nil {
		opt.Postgres = pgtest.NewDatabase
	} else if os.Getenv("HERD_REQUIRE_POSTGRES") != "" {
		t.Fatalf("PostgreSQL is required here: %v", err)
	}
	if !have("HandBrakeCLI") {
		if os.Getenv("HERD_REQUIRE_HANDBRAKE") != "" {
			t.Fatal("HandBrakeCLI is required here (HERD_REQUIRE_HANDBRAKE is set): apt-get install handbrake-cli")
		}
		t.Log("HandBrakeCLI is not installed: the library scenario is left out (make test installs it)")
		for _, n := range Names() {
			if n != "library" {
				opt.Only = append(opt.Only, n)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r, err := Run(ctx, opt)
	t.Log(log.String())
	require.NoError(t, err)

	var md bytes.Buffer
	require.NoError(t, r.Markdown(&md))
	for _, s := range r.Sections {
		require.NoError(t, s.Err, s.Key)
		require.NotEmpty(t, s.Targets, "%s measured no target", s.Key)
		require.NotEmpty(t, s.About, s.Key)
		require.Contains(t, md.String(), s.Title)
		for _, tb := range s.Tables {
			require.NotEmpty(t, tb.Rows, "%s: %s is empty", s.Key, tb.Title)
			for _, row := range tb.Rows {
				require.Len(t, row, len(tb.Header), "%s: %s", s.Key, tb.Title)
			}
		}
		for _, tg := range s.Targets {
			if strings.HasPrefix(tg.What, "0 double claims") {
				require.True(t, tg.Met, "%s: %s", tg.What, tg.Got)
			}
		}
	}
	want := len(opt.Only)
	if want == 0 {
		want = len(Names())
	}
	require.Len(t, r.Sections, want)

	// SSIM of every rung of every method, and of the library outputs, is a
	// real measurement of a real encode; herd's rungs match the same
	// settings typed by hand.
	ssims := section(t, r, "ladder").Tables[1]
	for _, row := range ssims.Rows {
		for _, c := range row[1:4] {
			v, err := strconv.ParseFloat(c, 64)
			require.NoError(t, err, c)
			require.Greater(t, v, 0.9, "SSIM of %s", row[0])
			require.LessOrEqual(t, v, 1.0)
		}
		herdV, _ := strconv.ParseFloat(row[1], 64)
		single, _ := strconv.ParseFloat(row[2], 64)
		require.InDelta(t, single, herdV, 0.01, "herd's %s rung against the same settings by hand", row[0])
	}
	if s := findSection(r, "library"); s != nil {
		for _, row := range s.Tables[0].Rows {
			v, err := strconv.ParseFloat(row[len(row)-1], 64)
			require.NoError(t, err)
			require.Greater(t, v, 0.9, row[0])
		}
	}
	// The chunked setups were split; every setup's top rung is a real encode.
	chunks := section(t, r, "chunks")
	for _, row := range chunks.Tables[0].Rows {
		n, err := strconv.Atoi(row[len(row)-1])
		require.NoError(t, err)
		if strings.Contains(row[0], "in chunks") {
			require.GreaterOrEqual(t, n, 2, "chunk tasks of %s", row[0])
		} else {
			require.Zero(t, n, "chunk tasks of %s", row[0])
		}
	}
	for _, row := range chunks.Tables[1].Rows {
		v, err := strconv.ParseFloat(row[1], 64)
		require.NoError(t, err)
		require.Greater(t, v, 0.9, "SSIM of %s", row[0])
	}
	// Both per-title jobs succeeded, the search ran and its cost was
	// measured from the tools' CPU.
	if s := findSection(r, "pertitle"); s != nil {
		for _, row := range s.Tables[1].Rows {
			require.True(t, strings.HasSuffix(row[4], " %"), "bytes saved on %s: %v", row[0], row)
		}
		require.NotEmpty(t, s.Tables[2].Rows, "the search's rungs")
		for _, row := range s.Tables[0].Rows {
			if row[2] == ptAuto {
				require.Regexp(t, `^\d+ % \(\d+\.\d\d s ÷ \d+\.\d\d s\)$`, row[9], "search ÷ encode (CPU)")
				require.NotContains(t, row[9], "(0.00 s ÷", "the search's tools' CPU")
			}
		}
	}
	// herd ran ffmpeg and ffprobe through the shim: tool time was measured.
	for _, row := range section(t, r, "overhead").Tables[0].Rows {
		n, err := strconv.Atoi(row[len(row)-1])
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, 3, "tool runs of a %s job", row[0])
	}
}

func section(t *testing.T, r *Report, key string) *Section {
	t.Helper()
	s := findSection(r, key)
	require.NotNil(t, s, "no %s section", key)
	return s
}

func findSection(r *Report, key string) *Section {
	for _, s := range r.Sections {
		if s.Key == key {
			return s
		}
	}
	return nil
}

func TestCovered(t *testing.T) {
	at := func(s float64) time.Time { return time.Unix(1000, 0).Add(time.Duration(s * float64(time.Second))) }
	iv := func(a, b float64) interval { return interval{at(a), at(b)} }
	for _, c := range []struct {
		name string
		ivs  []interval
		want float64
	}{
		{"none", nil, 0},
		{"one inside", []interval{iv(1, 2)}, 1},
		{"overlapping count once", []interval{iv(1, 3), iv(2, 4)}, 3},
		{"nested", []interval{iv(1, 5), iv(2, 3)}, 4},
		{"apart, unsorted", []interval{iv(6, 7), iv(1, 2)}, 2},
		{"clipped to the window", []interval{iv(-5, 1), iv(9, 20)}, 2},
		{"outside", []interval{iv(-5, -1), iv(11, 12)}, 0},
		{"touching", []interval{iv(1, 2), iv(2, 3)}, 2},
	} {
		got := covered(c.ivs, at(0), at(10))
		require.InDelta(t, c.want, got.Seconds(), 1e-6, c.name)
	}
}

func TestShimRecordsAndPassesThrough(t *testing.T) {
	if !have("ffprobe") {
		t.Skip("no ffprobe")
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "tools.log")
	_, ffprobe, err := shimDir(dir, logPath)
	require.NoError(t, err)
	cmd := exec.Command(ffprobe, "-version")
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // as herd runs its tools: no variable of the bench's
	out, err := cmd.Output()
	require.NoError(t, err)
	require.Contains(t, string(out), "ffprobe version")
	cmd = exec.Command(ffprobe, "-v", "error", filepath.Join(dir, "missing.mp4"))
	err = cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "the tool's failure comes through")
	spans, err := readShimLog(logPath)
	require.NoError(t, err)
	require.Len(t, spans["ffprobe"], 2)
	for _, s := range spans["ffprobe"] {
		require.True(t, s.to.After(s.from))
	}
}
