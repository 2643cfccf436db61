// Package watch takes new files from watch folders and follows their jobs
// to the end. A file is taken only once its size and modification time have
// held still for the folder's stable_for; it is then moved into herd's work
// area (a rename, or copy-sync-verify-remove across file systems) before its
// job is queued, so nothing else picks it up. Each taken file is an item: a
// folder in the work area with item.json, rewritten atomically at every step,
// so a restart after a crash or power cut carries on where it stopped.
// Polling finds files on NFS/SMB, where inotify misses other clients'
// writes; fsnotify, where it works, only makes the next scan come sooner.
package watch

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/publish"
	"github.com/herdhq/herd/internal/store"
)

// Folders inside a watch folder that herd writes and never takes from.
const (
	DoneDir   = "done"
	FailedDir = "failed"
)

// Submitter is what the watcher needs from ingest.
type Submitter interface {
	Profile(name string) (*profile.Profile, error)
	ImportFile(ctx context.Context, path, name string, p *profile.Profile) (job.Job, bool, error)
}

// Watcher runs the watch folders.
type Watcher struct {
	folders   []config.Watch
	libraries map[string]*publish.Library
	notifiers map[string]*notifier
	work      string
	sub       Submitter
	st        store.Store
	files     pipeline.Storage
	log       *slog.Logger

	mu       sync.Mutex
	seen     map[string]observed // candidate files by absolute path
	kept     map[string]observed // keep-mode originals already taken
	inflight map[string]bool     // items whose deliveries a goroutine is running
	wake     chan struct{}
	running  sync.WaitGroup
}

// notifier is a plex, jellyfin or webhook publisher with its retry policy.
type notifier struct {
	typ        string
	n          publish.Notifier
	attempts   int
	retryAfter time.Duration
}

// maxDelivering is how many items deliver notifications at once.
const maxDelivering = 16

// maxRetryWait caps the doubling wait between delivery attempts.
const maxRetryWait = 15 * time.Minute

// backoff is the wait after the n-th failed attempt: first doubled n-1
// times, at most maxRetryWait.
func backoff(first time.Duration, n int) time.Duration {
	d := min(first, maxRetryWait)
	for i := 1; i < n && d < maxRetryWait; i++ {
		d *= 2
	}
	return min(d, maxRetryWait)
}

// finishEvery is how often items' jobs are looked at.
const finishEvery = 2 * time.Second

type observed struct {
	Size  int64     `json:"size"`
	MTime time.Time `json:"mtime"`
	since time.Time
}

// New checks the folders' profiles and publishers and returns a Watcher.
// work is the work area (on the data folder's file system).
func New(folders []config.Watch, pubs map[string]config.Publisher, work string, sub Submitter, st store.Store, files pipeline.Storage, log *slog.Logger) (*Watcher, error) {
	w := &Watcher{folders: folders, libraries: map[string]*publish.Library{}, notifiers: map[string]*notifier{},
		work: work, sub: sub, st: st, files: files,
		log: log.With("component", "watch"), seen: map[string]observed{}, kept: map[string]observed{},
		inflight: map[string]bool{}, wake: make(chan struct{}, 1)}
	for _, f := range folders {
		p, err := sub.Profile(f.Profile)
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", f.Path, err)
		}
		for _, name := range f.Publish {
			pc := pubs[name]
			switch pc.Type {
			case config.PublishLibrary:
				if p.Format != "mp4" && p.Format != "mkv" {
					return nil, fmt.Errorf("watch %s: publisher %s is a library, which takes one MP4 or MKV file; profile %s makes %s", f.Path, name, p.Name, p.Format)
				}
				lib, err := publish.NewLibrary(pc)
				if err != nil {
					return nil, err
				}
				w.libraries[name] = lib
			default:
				w.notifiers[name] = newNotifier(pc, pubs)
			}
		}
	}
	if err := os.MkdirAll(work, 0o750); err != nil {
		return nil, fmt.Errorf("create watch work area: %w", err)
	}
	if err := w.loadKept(); err != nil {
		return nil, err
	}
	return w, nil
}

func newNotifier(pc config.Publisher, pubs map[string]config.Publisher) *notifier {
	n := &notifier{typ: pc.Type, attempts: pc.Attempts, retryAfter: time.Duration(pc.RetryAfter)}
	ms := publish.MediaServer{Name: pc.Name, URL: pc.URL, Token: pc.Token, Library: pc.Library,
		Root: pubs[pc.Library].Path, ServerRoot: pc.LibraryPath, Confirm: time.Duration(pc.ConfirmTimeout)}
	switch pc.Type {
	case config.PublishPlex:
		n.n = &publish.Plex{MediaServer: ms}
	case config.PublishJellyfin:
		n.n = &publish.Jellyfin{MediaServer: ms}
	default:
		n.n = &publish.Webhook{URL: pc.URL, Secret: pc.Secret, Agent: "herd"}
	}
	return n
}

// Item is one taken file, persisted as item.json in its work folder.
type Item struct {
	ID        string       `json:"id"`
	Folder    string       `json:"folder"` // the watch folder's path
	Origin    string       `json:"origin"` // slash path inside the folder
	Name      string       `json:"name"`   // the file's name in the work folder
	Size      int64        `json:"size"`
	MTime     time.Time    `json:"mtime"`
	State     string       `json:"state"`
	JobID     string       `json:"job_id,omitempty"`
	Duplicate bool         `json:"duplicate,omitempty"`
	FailedAt  string       `json:"failed_at,omitempty"` // where the file sits in failed/
	Published libraryFiles `json:"published,omitempty"` // library publisher -> path written
	DoneAt    string       `json:"done_at,omitempty"`   // where after_success: move puts the original
	Error     string       `json:"error,omitempty"`
	TakenAt   time.Time    `json:"taken_at"`
	NextTry   time.Time    `json:"next_try,omitzero"`
	Tries     int          `json:"tries,omitempty"`
	Pending   []Pending    `json:"pending,omitempty"` // notifications still to deliver
}

// libraryFiles maps library publishers to the files written for an item.
type libraryFiles map[string]string

// UnmarshalJSON also reads the list that herd wrote before it kept names:
// those items publish again, so the old paths are not needed.
func (l *libraryFiles) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '[' {
		*l = libraryFiles{}
		return nil
	}
	return json.Unmarshal(b, (*map[string]string)(l))
}

// Pending is one event still to deliver to one notifier.
type Pending struct {
	Publisher string    `json:"publisher"`
	Event     string    `json:"event"`
	EventID   string    `json:"event_id"`
	CreatedAt time.Time `json:"created_at"`
	Attempt   int       `json:"attempt"` // attempts made so far
	NextTry   time.Time `json:"next_try,omitzero"`
}

// Item states.
const (
	stateTaking    = "taking"    // being moved into the work area
	stateTaken     = "taken"     // in the work area, no job yet
	stateQueued    = "queued"    // its job exists
	stateFailed    = "failed"    // its job failed; the file is in failed/ until a retry succeeds
	statePublished = "published" // in the libraries; after_success is next
	stateNotifying = "notifying" // the original is dealt with; notifications remain
)

// Run scans and finishes until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	if err := w.recover(ctx); err != nil {
		return err
	}
	defer w.running.Wait() // deliveries in flight see ctx end and stop
	for name, lib := range w.libraries {
		// Not waited for at shutdown: a hung network mount must not hang herd.
		go func() {
			// Temporary files of library writes a crash cut short.
			if n, err := lib.Sweep(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("could not look for leftover temporary files in a library", "publisher", name, "err", err)
			} else if n > 0 {
				w.log.Info("removed temporary files a crash left in a library", "publisher", name, "files", n)
			}
		}()
	}
	if fw, err := fsnotify.NewWatcher(); err != nil {
		w.log.Warn("file notifications unavailable; polling only", "err", err)
	} else {
		defer fw.Close()
		for _, f := range w.folders {
			if f.Notify != nil && !*f.Notify {
				continue
			}
			if err := fw.Add(f.Path); err != nil {
				w.log.Warn("file notifications unavailable for a folder; polling it", "folder", f.Path, "err", err)
			}
		}
		go func() {
			for {
				select {
				case _, ok := <-fw.Events:
					if !ok {
						return
					}
					w.poke()
				case _, ok := <-fw.Errors:
					if !ok {
						return
					}
				}
			}
		}()
	}
	next := make([]time.Time, len(w.folders))
	finish := time.NewTicker(finishEvery)
	defer finish.Stop()
	for {
		soonest := time.Now().Add(finishEvery)
		for i, f := range w.folders {
			if !time.Now().Before(next[i]) {
				w.scan(ctx, f)
				next[i] = time.Now().Add(time.Duration(f.PollInterval))
			}
			if next[i].Before(soonest) {
				soonest = next[i]
			}
		}
		scan := time.NewTimer(time.Until(soonest))
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
			// Something changed: scan every folder soon (stability still needs stable_for).
			for i := range next {
				next[i] = time.Time{}
			}
		case <-finish.C:
			w.finishAll(ctx)
		case <-scan.C:
		}
		scan.Stop()
	}
}

func (w *Watcher) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Ignored reports names that are partial, hidden or temporary.
func Ignored(name string) bool {
	lower := strings.ToLower(name)
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "~$") {
		return true
	}
	for _, suf := range []string{".part", ".crdownload", ".tmp", ".partial", ".download", ".!qb", ".filepart", ".error.txt"} {
		if strings.HasSuffix(lower, suf) {
			return true
		}
	}
	return false
}

// scan looks at every file of a folder and takes the ones that held still.
func (w *Watcher) scan(ctx context.Context, f config.Watch) {
	now := time.Now()
	present := map[string]bool{}
	err := filepath.WalkDir(f.Path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == f.Path {
				return err
			}
			return nil // a file that vanished while we looked
		}
		if d.IsDir() {
			if p != f.Path && (strings.HasPrefix(d.Name(), ".") || (filepath.Dir(p) == f.Path && (d.Name() == DoneDir || d.Name() == FailedDir))) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || Ignored(d.Name()) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		present[p] = true
		cur := observed{Size: info.Size(), MTime: info.ModTime()}
		w.mu.Lock()
		if k, ok := w.kept[p]; ok && k.Size == cur.Size && k.MTime.Equal(cur.MTime) {
			w.mu.Unlock()
			return nil // kept after an earlier job; unchanged
		}
		prev, ok := w.seen[p]
		if !ok || prev.Size != cur.Size || !prev.MTime.Equal(cur.MTime) {
			cur.since = now
			w.seen[p] = cur
			w.mu.Unlock()
			return nil
		}
		w.mu.Unlock()
		if now.Sub(prev.since) < time.Duration(f.StableFor) || cur.Size == 0 {
			return nil
		}
		if err := w.take(ctx, f, p, cur); err != nil {
			w.log.Error("could not take a file from a watch folder; will try again", "file", p, "err", err)
		}
		return nil
	})
	if err != nil {
		w.log.Warn("cannot read a watch folder; will look again", "folder", f.Path, "err", err)
	}
	w.mu.Lock()
	for p := range w.seen {
		if strings.HasPrefix(p, f.Path+string(filepath.Separator)) && !present[p] {
			delete(w.seen, p)
		}
	}
	w.mu.Unlock()
}

// take moves (or, for keep, copies) a stable file into the work area and
// queues its job.
func (w *Watcher) take(ctx context.Context, f config.Watch, path string, cur observed) error {
	rel, err := filepath.Rel(f.Path, path)
	if err != nil {
		return err
	}
	it := &Item{ID: job.NewID("w"), Folder: f.Path, Origin: filepath.ToSlash(rel), Name: filepath.Base(path),
		Size: cur.Size, MTime: cur.MTime, State: stateTaking, TakenAt: time.Now().UTC()}
	dir := filepath.Join(w.work, it.ID)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if err := w.save(it); err != nil {
		return err
	}
	if err := w.bringIn(f, it); err != nil {
		return err
	}
	w.mu.Lock()
	delete(w.seen, path)
	w.mu.Unlock()
	w.log.Info("took a file from a watch folder", "file", path, "item", it.ID)
	w.submit(ctx, f, it)
	return nil
}

// bringIn puts the item's file into its work folder: moved, or for keep copied.
func (w *Watcher) bringIn(f config.Watch, it *Item) error {
	src := filepath.Join(it.Folder, filepath.FromSlash(it.Origin))
	dst := filepath.Join(w.work, it.ID, it.Name)
	if f.AfterSuccess == config.AfterKeep {
		if err := copyFile(src, dst); err != nil {
			return err
		}
		if err := w.keep(src, observed{Size: it.Size, MTime: it.MTime}); err != nil {
			return err
		}
	} else if err := moveFile(src, dst); err != nil {
		return err
	}
	it.State = stateTaken
	return w.save(it)
}

// submit queues the item's job, or recognises content already done.
func (w *Watcher) submit(ctx context.Context, f config.Watch, it *Item) {
	p, err := w.sub.Profile(f.Profile)
	if err == nil {
		var j job.Job
		var created bool
		j, created, err = w.sub.ImportFile(ctx, filepath.Join(w.work, it.ID, it.Name), it.Name, p)
		if err == nil {
			it.JobID, it.State = j.ID, stateQueued
			// The same bytes with the same profile already had a job before this file came.
			it.Duplicate = !created && j.CreatedAt.Before(it.TakenAt)
			if it.Duplicate {
				w.log.Info("the same content was already submitted with this profile; not queued again", "file", it.Origin, "job_id", j.ID)
			}
			if err := w.save(it); err != nil {
				w.log.Error("save watch item", "item", it.ID, "err", err)
			}
			return
		}
	}
	if errors.Is(err, ingest.ErrEmpty) || errors.Is(err, ingest.ErrTooLarge) || errors.Is(err, ingest.ErrUnknownProfile) {
		it.Error = err.Error()
		w.fail(f, it)
		return
	}
	w.log.Warn("could not queue a watched file; will try again", "item", it.ID, "err", err)
}

// finishAll follows every item's job.
func (w *Watcher) finishAll(ctx context.Context) {
	entries, err := os.ReadDir(w.work)
	if err != nil {
		w.log.Error("read watch work area", "err", err)
		return
	}
	for _, e := range entries {
		if !e.IsDir() || ctx.Err() != nil {
			continue
		}
		w.mu.Lock()
		busy := w.inflight[e.Name()]
		w.mu.Unlock()
		if busy {
			continue
		}
		it, err := w.load(e.Name())
		if err != nil {
			continue
		}
		f, ok := w.folder(it.Folder)
		if !ok {
			continue // its folder left the configuration; kept for when it returns
		}
		switch it.State {
		case stateTaken:
			w.submit(ctx, f, it)
		case stateQueued, stateFailed, statePublished, stateNotifying:
			w.follow(ctx, f, it)
		}
	}
}

func (w *Watcher) folder(path string) (config.Watch, bool) {
	for _, f := range w.folders {
		if f.Path == path {
			return f, true
		}
	}
	return config.Watch{}, false
}

func (w *Watcher) follow(ctx context.Context, f config.Watch, it *Item) {
	j, err := w.st.GetJob(ctx, it.JobID)
	if errors.Is(err, job.ErrNotFound) {
		switch it.State {
		case statePublished, stateNotifying:
			w.finish(f, it) // done but for the notifications, which need the job
		case stateFailed:
			w.forget(it) // in failed/ with its note; without a job nothing can retry it
		default:
			it.Error = "its job is gone from the database"
			w.fail(f, it)
		}
		return
	}
	if err != nil {
		return
	}
	switch j.State {
	case job.Succeeded:
		if it.State == stateQueued || it.State == stateFailed {
			if time.Now().Before(it.NextTry) {
				return
			}
			if !it.Duplicate {
				if err := w.publish(ctx, f, it, j); err != nil {
					it.Tries++
					it.Error = err.Error()
					it.NextTry = time.Now().Add(min(backoff(2*time.Second, it.Tries), 10*time.Minute))
					w.log.Error("publishing failed; will retry", "job_id", j.ID, "err", err, "in", time.Until(it.NextTry).Round(time.Second))
					_ = w.save(it)
					return
				}
				w.queue(f, it, publish.JobSucceeded)
			}
			it.State, it.Error, it.Tries, it.NextTry = statePublished, "", 0, time.Time{}
			if err := w.save(it); err != nil {
				w.log.Error("save watch item", "item", it.ID, "err", err)
				return
			}
		}
		if it.State == statePublished {
			if !w.settle(f, it) {
				return
			}
			it.State = stateNotifying
			if err := w.save(it); err != nil {
				w.log.Error("save watch item", "item", it.ID, "err", err)
				return
			}
		}
	case job.Failed, job.Canceled:
		if it.State != stateFailed {
			it.Error = cmp.Or(j.Error, "the job was "+string(j.State))
			w.fail(f, it)
			return
		}
	default:
		if it.State == stateFailed { // retried
			it.State = stateQueued
			_ = w.save(it)
		}
	}
	w.deliver(ctx, it, j)
}

// publish writes the job's outputs to the folder's libraries, recording
// each write on the job.
func (w *Watcher) publish(ctx context.Context, f config.Watch, it *Item, j job.Job) error {
	it.Published = libraryFiles{}
	if !slices.ContainsFunc(f.Publish, func(name string) bool { return w.libraries[name] != nil }) {
		return nil // only notifiers: the outputs stay where the job put them
	}
	var outs []pipeline.Output
	if err := json.Unmarshal(j.Outputs, &outs); err != nil {
		return fmt.Errorf("read the job's outputs: %w", err)
	}
	var main *pipeline.Output
	for i := range outs {
		if outs[i].Kind == "mp4" || outs[i].Kind == "mkv" {
			main = &outs[i]
			break
		}
	}
	if main == nil {
		return errors.New("the job has no MP4 or MKV output to put in a library")
	}
	for _, name := range f.Publish {
		lib := w.libraries[name]
		if lib == nil {
			continue
		}
		dst, err := w.put(ctx, lib, pipeline.OutputsKey(j.ID)+"/"+main.Path, publish.LibraryPath(lib.Kind, it.Name, filepath.Ext(main.Path)))
		d := store.Delivery{JobID: j.ID, Publisher: name, Type: config.PublishLibrary, Event: publish.JobSucceeded,
			Attempt: it.Tries + 1, OK: err == nil, Final: err == nil, Detail: dst, At: time.Now()}
		if err != nil {
			d.Detail = err.Error() + "; will retry"
		}
		w.record(ctx, d)
		if err != nil {
			return err
		}
		it.Published[name] = dst
		w.log.Info("published into a library", "job_id", j.ID, "path", dst)
	}
	return nil
}

// put copies one stored output into a library as rel.
func (w *Watcher) put(ctx context.Context, lib *publish.Library, key, rel string) (string, error) {
	o, err := w.files.Open(ctx, key)
	if err != nil {
		return "", err
	}
	defer o.Close()
	return lib.Put(ctx, rel, o)
}

func (w *Watcher) record(ctx context.Context, d store.Delivery) {
	if err := w.st.AddDelivery(context.WithoutCancel(ctx), d); err != nil {
		w.log.Error("record a delivery on its job", "job_id", d.JobID, "publisher", d.Publisher, "err", err)
	}
}

// queue adds an event for each of the folder's notifiers that wants it.
func (w *Watcher) queue(f config.Watch, it *Item, event string) {
	now := time.Now().UTC()
	id := job.NewID("evt")
	for _, name := range f.Publish {
		if n := w.notifiers[name]; n != nil && n.n.Wants(event) {
			it.Pending = append(it.Pending, Pending{Publisher: name, Event: event, EventID: id, CreatedAt: now})
		}
	}
}

// deliver runs the item's due notifications in a goroutine that owns the
// item until it ends; the item is forgotten once it is finished and nothing
// is pending.
func (w *Watcher) deliver(ctx context.Context, it *Item, j job.Job) {
	now := time.Now()
	due := false
	for _, p := range it.Pending {
		due = due || !now.Before(p.NextTry)
	}
	if !due {
		if len(it.Pending) == 0 && it.State == stateNotifying {
			w.forget(it)
		}
		return
	}
	w.mu.Lock()
	if len(w.inflight) >= maxDelivering {
		w.mu.Unlock()
		return // the next round starts it
	}
	w.inflight[it.ID] = true
	w.mu.Unlock()
	w.running.Add(1)
	go func() {
		defer w.running.Done()
		defer func() {
			w.mu.Lock()
			delete(w.inflight, it.ID)
			w.mu.Unlock()
		}()
		view, _ := json.Marshal(api.View(j, nil))
		var left []Pending
		for _, p := range it.Pending {
			n := w.notifiers[p.Publisher]
			if n == nil {
				continue // the publisher left the configuration
			}
			if time.Now().Before(p.NextTry) || ctx.Err() != nil {
				left = append(left, p)
				continue
			}
			ev := publish.Event{ID: p.EventID, Type: p.Event, CreatedAt: p.CreatedAt, Job: view,
				Watch: &publish.WatchInfo{Folder: it.Folder, File: it.Origin}, Files: it.Published}
			detail, err := n.n.Notify(ctx, ev)
			if err != nil && ctx.Err() != nil {
				left = append(left, p) // stopping: this try does not count
				continue
			}
			p.Attempt++
			d := store.Delivery{JobID: j.ID, Publisher: p.Publisher, Type: n.typ, Event: p.Event, Attempt: p.Attempt,
				OK: err == nil, Final: true, Detail: detail, At: time.Now()}
			if err != nil {
				d.Detail = err.Error()
				switch {
				case publish.IsPermanent(err):
					d.Detail += "; not retried"
				case p.Attempt >= n.attempts:
					d.Detail += fmt.Sprintf("; gave up after %d attempts", p.Attempt)
				default:
					d.Final = false
					wait := backoff(n.retryAfter, p.Attempt)
					p.NextTry = time.Now().Add(wait)
					d.Detail += fmt.Sprintf("; next try in %s", wait.Round(time.Second/10))
					left = append(left, p)
				}
				w.log.Warn("a delivery failed", "job_id", j.ID, "publisher", p.Publisher, "attempt", p.Attempt, "err", d.Detail)
			} else {
				w.log.Info("delivered", "job_id", j.ID, "publisher", p.Publisher, "detail", detail)
			}
			w.record(ctx, d)
		}
		it.Pending = left
		if len(left) == 0 && it.State == stateNotifying {
			w.forget(it)
			return
		}
		if err := w.save(it); err != nil {
			w.log.Error("save watch item", "item", it.ID, "err", err)
		}
	}()
}

// settle applies after_success to the original. Where a file goes is
// saved before it moves, so a crash in the middle (a copy across file
// systems) finishes that move instead of making a second copy; a file
// already gone means this already happened.
func (w *Watcher) settle(f config.Watch, it *Item) bool {
	held := filepath.Join(w.work, it.ID, it.Name)
	if it.FailedAt != "" {
		held = it.FailedAt
		_ = os.Remove(failedNote(f, it))
	}
	switch f.AfterSuccess {
	case config.AfterMove:
		if it.DoneAt == "" {
			it.DoneAt = freeName(filepath.Join(f.Path, DoneDir, filepath.FromSlash(it.Origin)))
			if err := w.save(it); err != nil {
				w.log.Error("save watch item", "item", it.ID, "err", err)
				return false
			}
		}
		if err := moveTo(held, it.DoneAt); err != nil {
			w.log.Error("move a finished file to done/; will try again", "item", it.ID, "err", err)
			return false
		}
	case config.AfterDelete, config.AfterKeep:
		if err := os.Remove(held); err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.log.Error("remove a finished file; will try again", "item", it.ID, "err", err)
			return false
		}
	}
	return true
}

// finish settles the original and forgets the item, notifications or not.
func (w *Watcher) finish(f config.Watch, it *Item) {
	if w.settle(f, it) {
		w.forget(it)
	}
}

func (w *Watcher) forget(it *Item) {
	if err := os.RemoveAll(filepath.Join(w.work, it.ID)); err != nil {
		w.log.Error("remove a watch item", "item", it.ID, "err", err)
	}
}

func failedNote(f config.Watch, it *Item) string {
	return filepath.Join(f.Path, FailedDir, filepath.FromSlash(it.Origin)) + ".error.txt"
}

// fail moves the file to failed/ with FILE.error.txt; the item stays, so a
// retried job that succeeds finishes it.
func (w *Watcher) fail(f config.Watch, it *Item) {
	held := filepath.Join(w.work, it.ID, it.Name)
	was := it.State
	if it.FailedAt == "" {
		it.FailedAt = held // keep: the original stays where it was; the copy waits here
		if f.AfterSuccess != config.AfterKeep {
			it.FailedAt = freeName(filepath.Join(f.Path, FailedDir, filepath.FromSlash(it.Origin)))
		}
		// Saved before the move, so a crash in the middle finishes it.
		if err := w.save(it); err != nil {
			w.log.Error("save watch item", "item", it.ID, "err", err)
			return
		}
	}
	if err := moveTo(held, it.FailedAt); err != nil {
		w.log.Error("move a failed file to failed/; will try again", "item", it.ID, "err", err)
		return
	}
	note := failedNote(f, it)
	msg := fmt.Sprintf("herd could not process %s\njob: %s\nerror: %s\n\nFix the cause, then run: herd retry %s\n", it.Origin, it.JobID, it.Error, it.JobID)
	if it.JobID == "" {
		msg = fmt.Sprintf("herd could not queue %s\nerror: %s\n", it.Origin, it.Error)
	}
	if err := os.MkdirAll(filepath.Dir(note), 0o755); err == nil {
		_ = writeAtomic(note, []byte(msg))
	}
	it.State = stateFailed
	if it.JobID == "" {
		w.forget(it) // no job to retry
		return
	}
	if was != stateFailed {
		w.queue(f, it, publish.JobFailed)
	}
	if err := w.save(it); err != nil {
		w.log.Error("save watch item", "item", it.ID, "err", err)
	}
	w.log.Warn("a watched file failed; moved to failed/", "file", it.Origin, "job_id", it.JobID, "err", it.Error)
}

// recover finishes what a crash interrupted: items still being taken are
// taken again from wherever the file is.
func (w *Watcher) recover(ctx context.Context) error {
	entries, err := os.ReadDir(w.work)
	if err != nil {
		return fmt.Errorf("read watch work area: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				_ = os.Remove(filepath.Join(w.work, e.Name())) // a write of kept.json cut short
			}
			continue
		}
		dir := filepath.Join(w.work, e.Name())
		it, err := w.load(e.Name())
		if err != nil {
			// Created but never described, so nothing was moved into it yet;
			// anything else is left alone for a person to look at.
			if inside, _ := os.ReadDir(dir); errors.Is(err, fs.ErrNotExist) && !slices.ContainsFunc(inside, func(d os.DirEntry) bool { return !strings.HasPrefix(d.Name(), ".tmp-") }) {
				_ = os.RemoveAll(dir)
			} else {
				w.log.Error("a watch item cannot be read; leaving it for a person to look at", "item", dir, "err", err)
			}
			continue
		}
		f, ok := w.folder(it.Folder)
		if !ok || it.State != stateTaking {
			continue
		}
		held := filepath.Join(dir, it.Name)
		if _, err := os.Stat(held); err == nil && f.AfterSuccess != config.AfterKeep {
			// The move happened. Across file systems the original may still
			// be there: the copy was checked before it got its name, so the
			// original goes, unless it changed since.
			src := filepath.Join(it.Folder, filepath.FromSlash(it.Origin))
			if st, err := os.Stat(src); err == nil && st.Size() == it.Size && st.ModTime().Equal(it.MTime) {
				if err := os.Remove(src); err != nil {
					return fmt.Errorf("remove a watched file already copied into the work area: %w", err)
				}
			}
			it.State = stateTaken
			if err := w.save(it); err != nil {
				return err
			}
			continue
		}
		if err := w.bringIn(f, it); err != nil {
			w.log.Warn("a file being taken when herd stopped is gone; forgetting it", "item", it.ID, "file", it.Origin, "err", err)
			_ = os.RemoveAll(dir)
		}
	}
	return nil
}

func (w *Watcher) save(it *Item) error {
	data, err := json.MarshalIndent(it, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(w.work, it.ID, "item.json"), data)
}

func (w *Watcher) load(id string) (*Item, error) {
	data, err := os.ReadFile(filepath.Join(w.work, id, "item.json"))
	if err != nil {
		return nil, err
	}
	var it Item
	if err := json.Unmarshal(data, &it); err != nil {
		return nil, err
	}
	return &it, nil
}

const keptFile = "kept.json"

func (w *Watcher) loadKept() error {
	data, err := os.ReadFile(filepath.Join(w.work, keptFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(data, &w.kept)
}

// keep remembers a kept original, so it is not taken again while unchanged.
func (w *Watcher) keep(path string, o observed) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.kept[path] = o
	data, err := json.Marshal(w.kept)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(w.work, keptFile), data)
}

// writeAtomic writes a small file under a temporary name, syncs it and
// renames it into place.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return blob.SyncDir(filepath.Dir(path))
}

// moveFile renames src to dst, or across file systems copies, syncs,
// checks and removes src. dst is written under a temporary name first, so
// a crash leaves either the original or a whole copy.
func moveFile(src, dst string) error {
	err := os.Rename(src, dst)
	if err == nil {
		return blob.SyncDir(filepath.Dir(dst))
	}
	var le *os.LinkError
	if !errors.As(err, &le) || !errors.Is(le.Err, syscall.EXDEV) {
		return err
	}
	if err := copyFile(src, dst); err != nil {
		return err
	}
	return os.Remove(src)
}

// copyFile copies src to dst (synced, renamed into place) and checks the
// copy, read back from disk, against the SHA-256 of what was read.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	part := dst + ".part"
	out, err := os.Create(part)
	if err != nil {
		return err
	}
	defer os.Remove(part)
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", filepath.Base(src), err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	a := hex.EncodeToString(h.Sum(nil))
	b, err := blob.FileSHA256(part)
	if err != nil {
		return err
	}
	if a != b {
		return fmt.Errorf("the copy of %s differs from the original (the file changed while copying?)", filepath.Base(src))
	}
	if err := os.Rename(part, dst); err != nil {
		return err
	}
	return blob.SyncDir(filepath.Dir(dst))
}

// freeName is dst, or when something is there, dst with a number added.
func freeName(dst string) string {
	ext := filepath.Ext(dst)
	base := strings.TrimSuffix(dst, ext)
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			return dst
		}
		dst = fmt.Sprintf("%s (%d)%s", base, i, ext)
	}
}

// moveTo moves src to dst, making dst's folder; a src already gone was
// moved before. Across file systems a half-made dst is simply replaced.
func moveTo(src, dst string) error {
	if src == dst {
		return nil
	}
	if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return moveFile(src, dst)
}
