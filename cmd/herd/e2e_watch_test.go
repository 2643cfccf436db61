package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/publish"
	"github.com/herdhq/herd/internal/testenv"
)

// toneClip makes a distinct short clip (the tone's frequency differs).
func toneClip(t *testing.T, path string, freq int) {
	t.Helper()
	require.NoError(t, testenv.ToneClip(path, freq))
}

// libraryWatcher records every visible (not hidden) file in a library with
// the size it had when first seen, to prove no file was ever visible before
// it was whole.
type libraryWatcher struct {
	mu    sync.Mutex
	first map[string]int64
	stop  chan struct{}
	done  chan struct{}
}

func watchLibrary(root string) *libraryWatcher {
	lw := &libraryWatcher{first: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(lw.done)
		for {
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
					return nil
				}
				if info, err := d.Info(); err == nil {
					lw.mu.Lock()
					if _, ok := lw.first[p]; !ok {
						lw.first[p] = info.Size()
					}
					lw.mu.Unlock()
				}
				return nil
			})
			select {
			case <-lw.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return lw
}

func (lw *libraryWatcher) close() map[string]int64 {
	close(lw.stop)
	<-lw.done
	return lw.first
}

func regularFiles(t *testing.T, root string) []string {
	var out []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func workItems(t *testing.T, data string) []string {
	entries, err := os.ReadDir(filepath.Join(data, "watch"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// SIGKILL herd again and again while files arrive, encode and publish;
// after the last restart every file is published exactly once, none is
// lost, the work area is empty, no temporary file is left in the library,
// no half-written file was ever visible there, and every job's webhook
// event arrived (at least once, with one delivery id per event).
func TestWatchFolderSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, in, lib, stage := filepath.Join(dir, "data"), filepath.Join(dir, "in"), filepath.Join(dir, "lib"), filepath.Join(dir, "stage")
	for _, d := range []string{in, lib, stage} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	var hookMu sync.Mutex
	// job id + event type -> delivery id: a job that ran out of attempts
	// sends job.failed, and job.succeeded once `herd retry` finishes it.
	hookIDs := map[string]string{}
	hookBad := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev publish.Event
		_ = json.Unmarshal(body, &ev)
		var j struct{ ID string }
		_ = json.Unmarshal(ev.Job, &j)
		hookMu.Lock()
		defer hookMu.Unlock()
		key := j.ID + " " + string(ev.Type)
		if !publish.Verify("k1ll-m3", body, r.Header.Get(publish.HeaderTimestamp), r.Header.Get(publish.HeaderSignature), time.Now(), publish.ReplayWindow) || (ev.Type != job.EventSucceeded && ev.Type != job.EventFailed) {
			hookBad++
		} else if prev, ok := hookIDs[key]; ok && prev != ev.ID {
			hookBad++ // a second event of the same kind for the same job
		} else {
			hookIDs[key] = ev.ID
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	cfg := filepath.Join(dir, "herd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`local_workers: 2
watch:
  - path: %s
    profile: mp4-library
    stable_for: 2s
    poll_interval: 200ms
    after_success: move
    publish: [movies, hook]
publishers:
  movies:
    type: library
    path: %s
  hook:
    type: webhook
    url: %s
    secret: k1ll-m3
    retry_after: 200ms
`, in, lib, hook.URL)), 0o644))

	const n = 8
	for i := range n {
		toneClip(t, filepath.Join(stage, fmt.Sprintf("Killed Movie %d (%d).mp4", i, 2000+i)), 300+70*i)
	}
	lw := watchLibrary(lib)
	// Files arrive one after another, each written in pieces, as a copy over
	// the network would. stable_for (2s) leaves the writer a wide margin on a
	// loaded machine: a file still being written is never "stable" to herd.
	arrived := make(chan struct{})
	go func() {
		defer close(arrived)
		for i := range n {
			name := fmt.Sprintf("Killed Movie %d (%d).mp4", i, 2000+i)
			b, _ := os.ReadFile(filepath.Join(stage, name))
			f, err := os.Create(filepath.Join(in, name))
			if err != nil {
				return
			}
			for off := 0; off < len(b); off += len(b)/3 + 1 {
				_, _ = f.Write(b[off:min(off+len(b)/3+1, len(b))])
				time.Sleep(150 * time.Millisecond)
			}
			_ = f.Close()
			time.Sleep(400 * time.Millisecond)
		}
	}()

	s := startServer(t, data, "--config", cfg)
	libCount := func() int {
		lw.mu.Lock()
		defer lw.mu.Unlock()
		return len(lw.first)
	}
	doneCount := func() int { return len(regularFiles(t, filepath.Join(in, "done"))) }
	// failedNotes lists the notes of files that ran out of attempts.
	failedNotes := func() []string {
		var notes []string
		for _, f := range regularFiles(t, filepath.Join(in, "failed")) {
			if strings.HasSuffix(f, ".error.txt") {
				notes = append(notes, filepath.Join(in, "failed", f))
			}
		}
		return notes
	}
	// ended: every file is in done/ or failed/, so no moment in a file's
	// life is left to wait for (a file killed on every try of one task
	// waits in failed/ until `herd retry`).
	ended := func() bool { return doneCount()+len(failedNotes()) >= n }
	running := func() bool {
		resp, body := s.get("/api/v1/jobs?state=running", nil)
		var list struct{ Jobs []jobJSON }
		return resp.StatusCode == http.StatusOK && json.Unmarshal(body, &list) == nil && len(list.Jobs) > 0
	}
	// Each kill waits for a moment in a file's life: just taken, encoding,
	// publishing, partly done, or the first instants after a restart.
	points := []struct {
		what string
		when func() bool
	}{
		{"a file was just taken", func() bool { return len(workItems(t, data)) > 0 }},
		{"a job is encoding", running},
		{"during recovery", nil},
		{"a job is encoding", running},
		{"the first file is in the library", func() bool { return libCount() >= 1 }},
		{"during recovery", nil},
		{"a few files are published", func() bool { return libCount() >= 3 }},
		{"a job is encoding", running},
		{"most originals are in done/", func() bool { return doneCount() >= n-3 }},
	}
	for i, p := range points {
		deadline := time.Now().Add(90 * time.Second)
		if p.when == nil {
			time.Sleep(150 * time.Millisecond)
		}
		for p.when != nil && !p.when() && !ended() {
			require.True(t, time.Now().Before(deadline), "waiting for: %s", p.what)
			time.Sleep(20 * time.Millisecond)
		}
		require.NoError(t, s.cmd.Process.Signal(syscall.SIGKILL))
		_ = s.cmd.Wait()
		t.Logf("kill %d (%s): %d items in the work area, %d files in done/, %d in the library", i+1, p.what,
			len(workItems(t, data)), doneCount(), libCount())
		s = startServer(t, data, "--config", cfg)
	}
	<-arrived
	// settled waits until every file is in done/ or (while failures are
	// allowed) failed/, and only failed items wait in the work area.
	settled := func(allowFailed bool) []string {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			failed := failedNotes()
			if doneCount()+len(failed) == n && len(workItems(t, data)) == len(failed) && (allowFailed || len(failed) == 0) {
				return failed
			}
			if time.Now().After(deadline) {
				var stuck []string
				for _, id := range workItems(t, data) {
					b, _ := os.ReadFile(filepath.Join(data, "watch", id, "item.json"))
					stuck = append(stuck, string(b))
				}
				_, jobs := s.get("/api/v1/jobs?limit=100", nil)
				t.Fatalf("not finished: done/ %v, work area %v, in/ %v\njobs: %s", regularFiles(t, filepath.Join(in, "done")), stuck, regularFiles(t, in), jobs)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// A task killed mid-run counts as an attempt (the run might have been
	// what crashed the server), so a job killed in the middle of the same task
	// on every try runs out of attempts: its file waits in failed/, saying
	// so, until `herd retry`. That is the only failure allowed here.
	retried := map[string]bool{}
	for _, note := range settled(true) {
		b, err := os.ReadFile(note)
		require.NoError(t, err)
		require.Contains(t, string(b), "the server restarted while this task ran", "%s", b)
		m := regexp.MustCompile(`job: (\S+)`).FindStringSubmatch(string(b))
		require.NotNil(t, m, "%s", b)
		t.Logf("%s ran out of attempts to kills; retrying it", filepath.Base(note))
		_, stderr, code := s.herd("retry", m[1])
		require.Equal(t, 0, code, stderr)
		retried[m[1]] = true
	}
	settled(false) // the retried files finish too
	seen := lw.close()

	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("Killed Movie %d (%d)/Killed Movie %d (%d).mp4", i, 2000+i, i, 2000+i))
	}
	require.ElementsMatch(t, want, regularFiles(t, lib), "each file published exactly once, no temporary file left")
	for p, size := range seen {
		st, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, st.Size(), size, "%s was visible before it was whole", p)
	}
	var done []string
	for i := range n {
		done = append(done, fmt.Sprintf("Killed Movie %d (%d).mp4", i, 2000+i))
	}
	require.ElementsMatch(t, done, regularFiles(t, filepath.Join(in, "done")), "every original in done/, none twice")
	require.ElementsMatch(t, []string{}, filterOut(regularFiles(t, in), "done/"), "nothing left in the watch folder")

	resp, body := s.get("/api/v1/jobs?limit=100", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var list struct{ Jobs []jobJSON }
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Jobs, n, "one job per file")
	for _, j := range list.Jobs {
		require.Equal(t, "succeeded", j.State, j.Error)
	}
	// The delivery service tells the webhook after the library copy, on
	// its own schedule: the original may be in done/ a moment before.
	delivered := func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		for _, j := range list.Jobs {
			if _, ok := hookIDs[j.ID+" "+job.EventSucceeded]; !ok {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(30 * time.Second); !delivered() && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	hookMu.Lock()
	defer hookMu.Unlock()
	require.Zero(t, hookBad)
	for _, j := range list.Jobs {
		require.Contains(t, hookIDs, j.ID+" "+job.EventSucceeded, "every job's event was delivered")
	}
	for key := range hookIDs {
		id, typ, _ := strings.Cut(key, " ")
		require.True(t, typ == job.EventSucceeded || retried[id], "%s: only a job that ran out of attempts sends job.failed", key)
	}
}

func filterOut(names []string, prefix string) []string {
	out := []string{}
	for _, n := range names {
		if !strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// A failed watched file goes to failed/ with a note; `herd retry` brings it
// back: when the retried job succeeds it is published, moved to done/, and
// the note is removed.
func TestWatchRetryBringsFailedFileBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, in, lib := filepath.Join(dir, "data"), filepath.Join(dir, "in"), filepath.Join(dir, "lib")
	require.NoError(t, os.MkdirAll(in, 0o755))
	cfg := filepath.Join(dir, "herd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("watch:\n  - {path: %s, profile: mp4-library, stable_for: 300ms, poll_interval: 200ms, publish: [movies]}\npublishers:\n  movies: {type: library, path: %s}\n", in, lib)), 0o644))
	s := startServer(t, data, "--config", cfg, "--local-workers", "0") // no worker yet: the job waits
	toneClip(t, filepath.Join(in, "Second Chance (2011).mp4"), 900)

	var id string
	require.Eventually(t, func() bool {
		out, _, code := s.herd("jobs", "-o", "json")
		var list struct{ Jobs []jobJSON }
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Jobs) == 0 {
			return false
		}
		id = list.Jobs[0].ID
		return true
	}, 30*time.Second, 100*time.Millisecond, "the file was taken and queued")
	_, stderr, code := s.herd("cancel", id)
	require.Equal(t, 0, code, stderr)
	note := filepath.Join(in, "failed", "Second Chance (2011).mp4.error.txt")
	require.Eventually(t, func() bool { _, err := os.Stat(note); return err == nil }, 30*time.Second, 100*time.Millisecond)
	b, err := os.ReadFile(note)
	require.NoError(t, err)
	require.Contains(t, string(b), "herd retry "+id)
	require.FileExists(t, filepath.Join(in, "failed", "Second Chance (2011).mp4"))

	s.startWorker(t, "rescuer")
	_, stderr, code = s.herd("retry", id)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "succeeded", s.waitFinal(id).State)
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(in, "done", "Second Chance (2011).mp4"))
		return err == nil && len(workItems(t, data)) == 0
	}, 30*time.Second, 100*time.Millisecond, "the file moved from failed/ to done/")
	require.FileExists(t, filepath.Join(lib, "Second Chance (2011)", "Second Chance (2011).mp4"))
	require.NoFileExists(t, note)
	require.NoFileExists(t, filepath.Join(in, "failed", "Second Chance (2011).mp4"))
	out, stderr, code := s.herd("job", id)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `(?s)DELIVERIES.*movies\s+library\s+job.succeeded\s+1\s+ok\s+/.*Second Chance \(2011\)\.mp4`, out, "the library write shows on the job")
}
