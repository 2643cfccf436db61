package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/publish/publishtest"
	"github.com/herdhq/herd/internal/testenv"
)

// libraryReport is what herd library status -o json prints.
type libraryReport struct {
	Counts map[string]int
	Probed int
	Queued int
	Saved  int64
	Bytes  int64
	Files  []struct {
		Path, State, Note string
		JobID             string `json:"job_id"`
	}
}

// libraryStatus runs herd library what (status, plan, scan) on name.
func (s *server) libraryStatus(what, name string) libraryReport {
	s.t.Helper()
	out, stderr, code := s.herd("library", what, name, "-o", "json")
	require.Equal(s.t, 0, code, stderr)
	var r libraryReport
	require.NoError(s.t, json.Unmarshal([]byte(out), &r), out)
	return r
}

// waitLibrary waits until library name's status is done.
func (s *server) waitLibrary(name string, within time.Duration, done func(libraryReport) bool) libraryReport {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := s.libraryStatus("status", name)
		if done(r) {
			return r
		}
		require.True(s.t, time.Now().Before(deadline), "library %s not done: %+v", name, r)
		time.Sleep(300 * time.Millisecond)
	}
}

func (r libraryReport) file(t *testing.T, p string) (state, note, jobID string) {
	t.Helper()
	for _, f := range r.Files {
		if f.Path == p {
			return f.State, f.Note, f.JobID
		}
	}
	t.Fatalf("no file %s in %+v", p, r.Files)
	return "", "", ""
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// A library of H.264, MPEG-4 Part 2 and HEVC files with a rule that
// wants HEVC: plan shows what a scan would do and changes nothing; the
// scan converts exactly what matches, puts each new file in place of its
// original (an extension change too) with the original's owner, mode and
// modification time, keeps the originals in the trash, never writes
// through a hard link, keeps the original where the new file is not
// smaller by min_savings, and lists a file that does not probe; a second
// scan probes nothing and queues nothing, and a copy of a file herd made
// is known for one.
func TestLibraryReplacesByRule(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("keeping another user's owner needs root")
	}
	dir := t.TempDir()
	lib := filepath.Join(dir, "Movies")
	outside := filepath.Join(dir, "seeding")
	require.NoError(t, os.MkdirAll(filepath.Join(lib, "Heat (1995)"), 0o755))
	require.NoError(t, os.MkdirAll(outside, 0o755))
	src := func(name string, codec ...string) string {
		p := filepath.Join(lib, name)
		require.NoError(t, testenv.FFmpeg(append(append([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=2",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2"}, codec...), p)...))
		return p
	}
	heat := src("Heat (1995)/Heat.mkv", "-c:v", "libx264", "-crf", "8", "-preset", "ultrafast", "-c:a", "aac")
	old := src("Old.avi", "-c:v", "mpeg4", "-q:v", "2", "-c:a", "mp3")
	src("Done.mp4", "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-c:a", "aac")
	tiny := src("Tiny.mkv", "-c:v", "libx264", "-crf", "51", "-preset", "ultrafast", "-an")
	require.NoError(t, os.WriteFile(filepath.Join(lib, "Broken.mkv"), []byte("not a film"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(lib, "notes.txt"), []byte("not media"), 0o644))
	// Heat is seeded from another folder: a hard link, whose bytes must stay.
	require.NoError(t, os.Link(heat, filepath.Join(outside, "Heat.mkv")))
	heatSHA, oldSHA, tinySHA := sha256File(t, heat), sha256File(t, old), sha256File(t, tiny)
	mtime := time.Date(2020, 5, 17, 12, 0, 0, 0, time.UTC)
	require.NoError(t, os.Chown(heat, 1234, 5678))
	require.NoError(t, os.Chmod(heat, 0o640))
	require.NoError(t, os.Chtimes(heat, mtime, mtime))

	// Plex indexes the library, mounted at /data/movies in its container.
	plex := publishtest.Plex(t, "plex-token", publishtest.Library{Key: "1", Title: "Movies", Type: "movie", Server: "/data/movies", Local: lib})
	cfg := filepath.Join(dir, "herd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`libraries:
  - name: movies
    path: `+lib+`
    rule: 'video.codec != "hevc"'
    profile: archive-hevc
    min_savings: 10%
    keep_originals: 14d
    max_running: 3
publishers:
  plex: {type: plex, url: "`+plex.URL+`", token: plex-token, library: movies, library_path: /data/movies, confirm_timeout: 20s}
`), 0o644))
	s := startServer(t, filepath.Join(dir, "data"), "--config", cfg)
	status := func(what string) libraryReport { return s.libraryStatus(what, "movies") }

	// Nothing happens until asked: the plan probes every file and says
	// what a scan would do, and queues nothing; the scan then queues
	// exactly what the plan said.
	out, stderr, code := s.herd("library", "plan", "movies")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "probed 5 new or changed files; nothing queued or changed")
	require.Contains(t, out, "estimated to become")
	r := status("status")
	require.Equal(t, map[string]int{"planned": 3, "skipped": 1, "unprobeable": 1}, r.Counts, "%+v", r.Files)
	st, note, _ := r.file(t, "Broken.mkv")
	require.Equal(t, "unprobeable", st)
	require.NotEmpty(t, note)
	st, _, _ = r.file(t, "Done.mp4")
	require.Equal(t, "skipped", st)
	out, stderr, code = s.herd("jobs", "-o", "json")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, `"jobs": []`, "a plan queues nothing")
	var planned []string
	for _, f := range r.Files {
		if f.State == "planned" {
			planned = append(planned, f.Path)
		}
	}
	r = status("scan")
	require.Equal(t, 0, r.Probed, "the plan probed them all")
	require.Equal(t, 3, r.Queued)
	var queued []string
	for _, f := range r.Files {
		if f.State == "queued" {
			queued = append(queued, f.Path)
		}
	}
	require.Equal(t, planned, queued, "the scan does what the plan said")

	// Wait for the three matching files to be done.
	r = s.waitLibrary("movies", 3*time.Minute, func(r libraryReport) bool { return r.Counts["queued"] == 0 && r.Counts["matched"] == 0 })
	require.Equal(t, map[string]int{"replaced": 2, "kept": 1, "skipped": 1, "unprobeable": 1}, r.Counts, "%+v", r.Files)

	// Heat: HEVC now, the original's owner, mode and time; the original in the trash; the seeding copy untouched.
	st, note, jobID := r.file(t, "Heat (1995)/Heat.mkv")
	require.Equal(t, "replaced", st)
	require.Contains(t, note, ".herd-trash/Heat (1995)/Heat.mkv")
	fi, err := os.Stat(heat)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	require.True(t, fi.ModTime().Equal(mtime), "mtime %v", fi.ModTime())
	require.Equal(t, uint32(1234), fi.Sys().(*syscall.Stat_t).Uid)
	require.Equal(t, uint32(5678), fi.Sys().(*syscall.Stat_t).Gid)
	require.Equal(t, "hevc", probeCodec(t, heat))
	require.NotEqual(t, heatSHA, sha256File(t, heat))
	require.Equal(t, heatSHA, sha256File(t, filepath.Join(outside, "Heat.mkv")), "the hard-linked copy keeps its bytes")
	require.Equal(t, heatSHA, sha256File(t, filepath.Join(lib, ".herd-trash", "Heat (1995)", "Heat.mkv")), "the original, in the trash")
	// Plex was asked to scan the new files' folders, and listed them; the job says so.
	require.Eventually(t, func() bool {
		calls := plex.Calls()
		return slices.Contains(calls, "1 /data/movies/Heat (1995)") && slices.Contains(calls, "1 /data/movies")
	}, 30*time.Second, 200*time.Millisecond, "Plex told of both folders: %v", plex.Calls())
	require.Eventually(t, func() bool {
		out, _, _ := s.herd("job", jobID)
		return strings.Contains(out, "refreshed Plex section Movies")
	}, 30*time.Second, 200*time.Millisecond)
	out, stderr, code = s.herd("job", jobID)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "library movies")
	require.Contains(t, out, "replaced Heat (1995)/Heat.mkv")

	// Old.avi became Old.mkv; the AVI is in the trash.
	st, _, _ = r.file(t, "Old.mkv")
	require.Equal(t, "replaced", st)
	require.NoFileExists(t, old)
	require.Equal(t, "hevc", probeCodec(t, filepath.Join(lib, "Old.mkv")))
	require.Equal(t, oldSHA, sha256File(t, filepath.Join(lib, ".herd-trash", "Old.avi")))

	// Tiny: HEVC would not be 10% smaller; the original stays as it was.
	st, note, _ = r.file(t, "Tiny.mkv")
	require.Equal(t, "kept", st)
	require.Contains(t, note, "not 10% smaller")
	require.Equal(t, tinySHA, sha256File(t, tiny))
	require.Positive(t, r.Saved)

	// Nothing half-made is left beside the originals.
	require.NoError(t, filepath.Walk(lib, func(p string, info os.FileInfo, err error) error {
		require.NoError(t, err)
		require.False(t, strings.HasPrefix(info.Name(), ".herd-") && info.Name() != ".herd-trash", "left behind: %s", p)
		return nil
	}))

	// Scanned again: nothing is new, nothing is queued; a copy of a file
	// herd made is herd's, by its tag, and never matches.
	r = status("scan")
	require.Equal(t, 0, r.Probed, "%+v", r.Files)
	require.Equal(t, 0, r.Queued)
	later := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(filepath.Join(lib, "Done.mp4"), later, later))
	r = status("scan")
	require.Equal(t, 1, r.Probed, "only the changed file")
	copyFile(t, filepath.Join(lib, "Old.mkv"), filepath.Join(lib, "Copy of Old.mkv"))
	r = status("scan")
	require.Equal(t, 1, r.Probed)
	require.Equal(t, 0, r.Queued)
	st, _, _ = r.file(t, "Copy of Old.mkv")
	require.Equal(t, "herd", st)

	out, stderr, code = s.herd("library", "status")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "movies")
	require.Contains(t, out, `video.codec != "hevc"`)

	// The Libraries page shows the library and its files, and scans it.
	ctx := browser(t)
	signIn(t, ctx, s, s.token())
	testenv.WaitJS(t, ctx, "the dashboard", `location.pathname === "/"`, 10*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/libraries")))
	testenv.WaitJS(t, ctx, "the library's files", `document.querySelector('#l-files tr[data-file="Heat (1995)/Heat.mkv"][data-state="replaced"]')`, 15*time.Second)
	require.Contains(t, evalJS[string](t, ctx, `document.querySelector('#l-rows tr[data-library="movies"]').innerText`), "2 replaced, 1 kept")
	require.Contains(t, evalJS[string](t, ctx, `document.querySelector('#l-files tr[data-file="Tiny.mkv"]').innerText`), "not 10% smaller")
	require.NoError(t, chromedp.Run(ctx, chromedp.Click(`#l-rows tr[data-library="movies"] button[aria-label="Scan now movies"]`, chromedp.ByQuery)))
	testenv.WaitJS(t, ctx, "the scan", `!document.querySelector('#l-rows tr[data-library="movies"] button[aria-label="Scan now movies"]').disabled`, 15*time.Second)
	shot(t, ctx, "libraries")
	axeAudit(t, ctx, "the libraries page")
}

func probeCodec(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name", "-of", "csv=p=0", p).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o644))
}

// The real server SIGKILLed again and again while a library is being
// converted, same-name replacements and extension changes alike: after
// the last restart every file is in exactly one good state (the new file
// in place, the original once in the trash), nothing half-written is
// left, and no file was encoded twice. (Every point of a replacement's
// journal is crashed in turn in package library's tests.)
func TestLibrarySurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lib := filepath.Join(dir, "Movies")
	require.NoError(t, os.MkdirAll(lib, 0o755))
	originals := map[string]string{} // the final name → the original's name
	sums := map[string]string{}
	for i, name := range []string{"A.mkv", "B.avi", "C.mkv", "D.avi"} {
		codec := []string{"-c:v", "libx264", "-crf", "8", "-preset", "ultrafast"}
		if strings.HasSuffix(name, ".avi") {
			codec = []string{"-c:v", "mpeg4", "-q:v", "2"}
		}
		p := filepath.Join(lib, name)
		require.NoError(t, testenv.FFmpeg(append(append([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=" + []string{"2", "3", "2.5", "1.5"}[i]}, codec...), p)...))
		originals[strings.TrimSuffix(name, filepath.Ext(name))+".mkv"] = name
		sums[name] = sha256File(t, p)
	}
	cfg := filepath.Join(dir, "herd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("libraries:\n  - {name: movies, path: "+lib+", rule: 'video.codec != \"hevc\"', profile: archive-hevc, max_running: 4}\n"), 0o644))
	data := filepath.Join(dir, "data")
	// Every kill counts as an attempt of the tasks it interrupts (a task
	// that takes the server down with it must not run forever), so the cap
	// is above the number of kills: on a slow machine one encode can be cut
	// by every one of them.
	args := []string{"--config", cfg, "--max-attempts", "8"}
	s := startServer(t, data, args...)
	_, stderr, code := s.herd("library", "scan", "movies")
	require.Equal(t, 0, code, stderr)
	for _, wait := range []time.Duration{700 * time.Millisecond, 1500 * time.Millisecond, 2500 * time.Millisecond, 400 * time.Millisecond} {
		time.Sleep(wait)
		require.NoError(t, s.cmd.Process.Signal(syscall.SIGKILL))
		_ = s.cmd.Wait()
		s = startServer(t, data, args...)
	}
	r := s.waitLibrary("movies", 3*time.Minute, func(r libraryReport) bool { return r.Counts["replaced"] == 4 })
	require.Equal(t, map[string]int{"replaced": 4}, r.Counts, "%+v", r.Files)
	for final, orig := range originals {
		require.Equal(t, "hevc", probeCodec(t, filepath.Join(lib, final)), final)
		require.Equal(t, sums[orig], sha256File(t, filepath.Join(lib, ".herd-trash", orig)), "%s: the original, in the trash", orig)
		if final != orig {
			require.NoFileExists(t, filepath.Join(lib, orig))
		}
	}
	entries, err := os.ReadDir(lib)
	require.NoError(t, err)
	require.Len(t, entries, 5, "the four files and the trash, nothing half-written")
	out, stderr, code := s.herd("jobs", "-o", "json")
	require.Equal(t, 0, code, stderr)
	var list struct{ Jobs []jobJSON }
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list.Jobs, 4, "one job a file, however often the server was killed")
}

// checkLibrary makes a library of a good file, a damaged copy and an
// empty one; it returns the library's folder and the files' hashes.
func checkLibrary(t *testing.T, dir string) (string, map[string]string) {
	t.Helper()
	lib := filepath.Join(dir, "Shows")
	require.NoError(t, os.MkdirAll(filepath.Join(lib, "S01"), 0o755))
	good := filepath.Join(lib, "S01", "Good.mkv")
	require.NoError(t, testenv.FFmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=2", "-c:v", "libx264", "-preset", "ultrafast", good))
	bad := filepath.Join(lib, "S01", "Bad.mkv")
	b, err := os.ReadFile(good)
	require.NoError(t, err)
	for i := len(b) / 3; i < len(b)/3+len(b)/4; i++ {
		b[i] ^= byte(i*7 + 13) // damage a quarter of the file
	}
	require.NoError(t, os.WriteFile(bad, b, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(lib, "Empty.mp4"), nil, 0o644))
	sums := map[string]string{}
	for _, p := range []string{good, bad} {
		sums[p] = sha256File(t, p)
	}
	return lib, sums
}

// requireChecked asserts what herd library check --wait printed of the
// checkLibrary library (out; "" when it was followed otherwise), that
// nothing in it changed, and that each file was checked by one check job
// of the library, run by worker; it returns the jobs' ids by file.
func requireChecked(t *testing.T, s *server, out string, sums map[string]string, worker string) map[string]string {
	t.Helper()
	if out != "" {
		require.Contains(t, out, "3 checked, 2 damaged, 0 to check")
		require.Regexp(t, `S01/Bad.mkv\s+\S`, out)
		require.Regexp(t, `Empty.mp4\s+the file is empty`, out)
		require.NotRegexp(t, `Good.mkv`, out)
		require.NotContains(t, out, "/proc/", "no machine's path in the errors")
	}
	for p, sum := range sums {
		require.Equal(t, sum, sha256File(t, p), "nothing changed")
	}
	out, stderr, code := s.herd("jobs", "-o", "json")
	require.Equal(t, 0, code, stderr)
	var list struct{ Jobs []jobJSON }
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	var names []string
	ids := map[string]string{}
	for _, j := range list.Jobs {
		names = append(names, j.Source.Name)
		ids[j.Source.Name] = j.ID
		require.Equal(t, "succeeded", j.State, "a damaged file is a check that succeeded")
		require.Equal(t, "shows", j.Labels["library"])
		full := s.job(j.ID)
		require.Len(t, full.Tasks, 1)
		require.Equal(t, "check", full.Tasks[0].Kind)
		require.Contains(t, full.Tasks[0].Worker, worker)
		shown, stderr, code := s.herd("job", j.ID)
		require.Equal(t, 0, code, stderr)
		require.Contains(t, shown, "Health check:  "+j.Source.Name+" in library shows")
		if j.Source.Name == "S01/Good.mkv" {
			require.Regexp(t, `Found:\s+ok\n`, shown)
		} else {
			require.Regexp(t, `Found:\s+damaged: \S`, shown)
		}
	}
	require.ElementsMatch(t, []string{"S01/Good.mkv", "S01/Bad.mkv", "Empty.mp4"}, names, "a check job a file")
	out, stderr, code = s.herd("jobs")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "health check (shows)")
	return ids
}

// herd library check decodes every file of a library and reports the
// ones that do not decode cleanly, with the first error, changing
// nothing: each file a job with one check task, which the server's own
// workers run, reading the library where it is.
func TestLibraryCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lib, sums := checkLibrary(t, dir)
	cfg := filepath.Join(dir, "herd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("libraries:\n  - {name: shows, path: "+lib+", rule: 'false', profile: mp4-library}\n"), 0o644))
	s := startServer(t, filepath.Join(dir, "data"), "--config", cfg)
	out, stderr, code := s.herd("library", "check", "shows", "--wait")
	require.Equal(t, 1, code, "damaged files: exit 1\n%s%s", out, stderr)
	ids := requireChecked(t, s, out, sums, "local")

	// The job page says what the check found.
	ctx := browser(t)
	signIn(t, ctx, s, s.token())
	testenv.WaitJS(t, ctx, "the dashboard", `location.pathname === "/"`, 10*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/jobs/"+ids["Empty.mp4"])))
	testenv.WaitJS(t, ctx, "the check's finding", `document.getElementById('j-profile').textContent.startsWith('health check (shows): damaged (the file is empty')`, 15*time.Second)
	// The Libraries page shows each file's health, linked to its check.
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/libraries")))
	testenv.WaitJS(t, ctx, "the files' health", `document.querySelector('#l-files tr[data-file="S01/Bad.mkv"] td[data-check="damaged"] a[href="/jobs/`+ids["S01/Bad.mkv"]+`"]') !== null`, 15*time.Second)
	require.Contains(t, evalJS[string](t, ctx, `document.getElementById('l-summary').textContent`), "Health check: 3 checked, 2 damaged, 0 to check")
	require.Equal(t, "ok", evalJS[string](t, ctx, `document.querySelector('#l-files tr[data-file="S01/Good.mkv"] td[data-check]').dataset.check`))
	axeAudit(t, ctx, "the libraries page with health checks")
}

// A library's health checks are worker tasks: with no worker that reads
// the library they wait, and herd workers says what to start; a remote
// worker started with --library NAME=PATH (its own mount of the folder)
// then runs them, reading the files in place, none sent over the wire.
func TestLibraryCheckOnRemoteWorker(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lib, sums := checkLibrary(t, dir)
	// The worker's mount of the same folder, by another path.
	mount := filepath.Join(dir, "mnt", "shows")
	require.NoError(t, os.MkdirAll(filepath.Dir(mount), 0o755))
	require.NoError(t, os.Symlink(lib, mount))
	cfg := filepath.Join(dir, "herd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("libraries:\n  - {name: shows, path: "+lib+", rule: 'false', profile: mp4-library}\n"), 0o644))
	s := startServer(t, filepath.Join(dir, "data"), "--config", cfg, "--local-workers", "0")
	out, stderr, code := s.herd("library", "check", "shows")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "0 checked, 0 damaged, 3 to check")
	require.Contains(t, out, "waiting for a worker that reads library shows")
	require.Eventually(t, func() bool {
		out, _, _ := s.herd("workers")
		return strings.Contains(out, "No worker has capability library:shows, which 3 waiting job(s) need") &&
			strings.Contains(out, "start a worker where the library's folder is mounted: herd worker --library shows=PATH")
	}, 30*time.Second, 200*time.Millisecond, "the check jobs wait, and herd workers says why")
	w := s.startWorker(t, "nas", "--library", "shows="+mount)
	// The worker runs the waiting checks. They are followed by status: a
	// check run now would join them while they run, but start anew once
	// they ended, and a short file's check ends in milliseconds.
	type checkedFile struct {
		Path, Check string
		CheckNote   string `json:"check_note"`
	}
	var st struct {
		Checks map[string]int
		Files  []checkedFile
	}
	require.Eventually(t, func() bool {
		out, _, code := s.herd("library", "status", "shows", "-o", "json")
		st.Checks, st.Files = nil, nil
		return code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.Checks["pending"] == 0
	}, 60*time.Second, 200*time.Millisecond, "the worker checks every file")
	require.Equal(t, map[string]int{"ok": 1, "damaged": 2}, st.Checks)
	empty := slices.IndexFunc(st.Files, func(f checkedFile) bool { return f.Path == "Empty.mp4" })
	require.GreaterOrEqual(t, empty, 0, "Empty.mp4 is listed")
	require.Contains(t, st.Files[empty].CheckNote, "the file is empty")
	_ = requireChecked(t, s, "", sums, "nas")
	require.Contains(t, w.logs.String(), `"kind":"check"`)
	cached, err := os.ReadDir(filepath.Join(w.dir, "cache"))
	if !errors.Is(err, fs.ErrNotExist) {
		require.NoError(t, err)
	}
	require.Empty(t, cached, "no file was sent to the worker")
}

// The real server killed (SIGKILL, by itself: HERD_FAILPOINT) at each
// point of a replacement's journal, a same-name replacement and an
// extension change alike, then started again: every file ends replaced,
// its original once in the trash, nothing half-written left, one job a
// file.
func TestLibrarySIGKILLAtEachStep(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"placing", "ready", "linked", "trashed", "placed", "moved"} {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			lib := filepath.Join(dir, "Movies")
			require.NoError(t, os.MkdirAll(lib, 0o755))
			sums := map[string]string{}
			for name, codec := range map[string][]string{
				"A.mkv": {"-c:v", "libx264", "-crf", "8", "-preset", "ultrafast"},
				"B.avi": {"-c:v", "mpeg4", "-q:v", "2"},
			} {
				p := filepath.Join(lib, name)
				require.NoError(t, testenv.FFmpeg(append(append([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=1.5"}, codec...), p)...))
				sums[name] = sha256File(t, p)
			}
			cfg := filepath.Join(dir, "herd.yaml")
			require.NoError(t, os.WriteFile(cfg, []byte("libraries:\n  - {name: movies, path: "+lib+", rule: 'video.codec != \"hevc\"', profile: archive-hevc, max_running: 2}\n"), 0o644))
			data := filepath.Join(dir, "data")
			s := startServerEnv(t, data, []string{"HERD_FAILPOINT=library:" + point}, "--config", cfg)
			_, stderr, code := s.herd("library", "scan", "movies")
			require.Equal(t, 0, code, stderr)
			exited := make(chan error, 1)
			go func() { exited <- s.cmd.Wait() }()
			select {
			case err := <-exited:
				require.ErrorContains(t, err, "killed", "the server killed itself at %s", point)
			case <-time.After(90 * time.Second):
				t.Fatalf("the server did not reach %s", point)
			}
			s = startServer(t, data, "--config", cfg)
			s.waitLibrary("movies", 90*time.Second, func(r libraryReport) bool { return r.Counts["replaced"] == 2 })
			for _, f := range []string{"A.mkv", "B.mkv"} {
				require.Equal(t, "hevc", probeCodec(t, filepath.Join(lib, f)), f)
			}
			for orig, sum := range sums {
				require.Equal(t, sum, sha256File(t, filepath.Join(lib, ".herd-trash", orig)), "%s: the original, in the trash", orig)
			}
			entries, err := os.ReadDir(lib)
			require.NoError(t, err)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			require.ElementsMatch(t, []string{"A.mkv", "B.mkv", ".herd-trash"}, names, "nothing half-written")
			out, stderr, code := s.herd("jobs", "-o", "json")
			require.Equal(t, 0, code, stderr)
			var list struct{ Jobs []jobJSON }
			require.NoError(t, json.Unmarshal([]byte(out), &list))
			require.Len(t, list.Jobs, 2, "one job a file")
		})
	}
}
