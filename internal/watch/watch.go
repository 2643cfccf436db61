// Package watch takes new files from watch folders and follows their jobs
// to the end. A file is taken only once its size and modification time have
// held still for the folder's stable_for; it is then moved into herd's work
// area (a rename, or copy-sync-verify-remove across file systems) before its
// job is queued, so nothing else picks it up. Each taken file is an item: a
// folder in the work area with item.json, rewritten atomically at every step,
// so a restart after a crash or power cut carries on where it stopped.
// A file's job names the folder's publishers: package deliver delivers it
// like any job's, and the original is settled (after_success) once the job
// succeeded and its file is in the folder's libraries.
// Polling finds files on NFS/SMB, where inotify misses other clients'
// writes; fsnotify, where it works, only makes the next scan come sooner.
//
// Watch folders are written by others, so every scan, move and write in them
// (and in the work area) goes through safefs: a symbolic link or a folder
// swapped for one never leads herd outside the tree, and a move never
// replaces a file. A watched file named like one of herd's own files in the
// work area is kept there under a name herd chooses.
package watch

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/safefs"
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
	// ImportFile creates a new job with the id given, or returns the live
	// job the same content already has (with job.ErrConflict where that
	// job delivers to other publishers).
	ImportFile(ctx context.Context, root *os.Root, rel, name string, p *profile.Profile, opt ingest.Options, id string) (job.Job, bool, error)
}

// JobStore is what the watcher needs from the store: it follows its items'
// jobs, drops a job made from part of a file, and waits for their library
// deliveries, which the delivery service makes.
type JobStore interface {
	GetJob(ctx context.Context, id string) (job.Job, error)
	CancelJob(ctx context.Context, id string, now time.Time) (job.Job, error)
	Deliveries(ctx context.Context, jobID string) ([]store.Delivery, error)
	HandOff(ctx context.Context, eventID, jobID, event string, publishers []string, now time.Time) error
	PendingOutbound(ctx context.Context, eventID string) ([]store.Outbound, error)
}

// Watcher runs the watch folders.
type Watcher struct {
	folders []config.Watch
	pubs    map[string]config.Publisher
	work    string
	root    *os.Root // the work area
	sub     Submitter
	st      JobStore
	log     *slog.Logger

	mu   sync.Mutex
	seen map[string]observed // candidate files by absolute path
	kept map[string]observed // keep-mode originals already taken
	wake chan struct{}
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
func New(folders []config.Watch, pubs map[string]config.Publisher, work string, sub Submitter, st JobStore, log *slog.Logger) (*Watcher, error) {
	w := &Watcher{folders: folders, pubs: pubs, work: work, sub: sub, st: st,
		log: log.With("component", "watch"), seen: map[string]observed{}, kept: map[string]observed{},
		wake: make(chan struct{}, 1)}
	for _, f := range folders {
		p, err := sub.Profile(f.Profile)
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", f.Path, err)
		}
		for _, name := range f.Publish {
			if pubs[name].Type == config.PublishLibrary && p.Format != "mp4" && p.Format != "mkv" {
				return nil, fmt.Errorf("watch %s: publisher %s is a library, which takes one MP4 or MKV file; profile %s makes %s", f.Path, name, p.Name, p.Format)
			}
		}
	}
	if err := os.MkdirAll(work, 0o750); err != nil {
		return nil, fmt.Errorf("create watch work area: %w", err)
	}
	root, err := os.OpenRoot(work)
	if err != nil {
		return nil, fmt.Errorf("open watch work area: %w", err)
	}
	w.root = root // closed with the Watcher, when the garbage collector finds it
	if err := w.loadKept(); err != nil {
		return nil, err
	}
	return w, nil
}

// Item is one taken file, persisted as item.json in its work folder.
type Item struct {
	ID        string    `json:"id"`
	Folder    string    `json:"folder"`         // the watch folder's path
	Origin    string    `json:"origin"`         // slash path inside the folder
	Name      string    `json:"name"`           // the file's own name
	Held      string    `json:"held,omitempty"` // its name in the work folder, where Name is one herd keeps for itself
	Size      int64     `json:"size"`
	MTime     time.Time `json:"mtime"`
	State     string    `json:"state"`
	JobID     string    `json:"job_id,omitempty"`
	NextJobID string    `json:"next_job_id,omitempty"` // the id its job is being created with; saved before it is
	Duplicate bool      `json:"duplicate,omitempty"`
	FailedAt  string    `json:"failed_at,omitempty"` // where the file sits in failed/
	Note      string    `json:"note,omitempty"`      // where its FILE.error.txt is; empty: beside FailedAt's origin, as herd used to write it
	DoneAt    string    `json:"done_at,omitempty"`   // where after_success: move puts the original
	Error     string    `json:"error,omitempty"`
	TakenAt   time.Time `json:"taken_at"`
	NextTry   time.Time `json:"next_try,omitzero"`
	// HandedOff lists the "event publisher" pairs handed to the delivery
	// service for the item (see handOff).
	HandedOff []string `json:"handed_off,omitempty"`
	// Undelivered: its job succeeded but a library could not take its
	// file; no retry of the job can change that.
	Undelivered bool `json:"undelivered,omitempty"`
	// Pending are notifications an older herd had still to deliver
	// itself; they are handed to the delivery service.
	Pending []Pending `json:"pending,omitempty"`
}

// Pending is one event an older herd still had to deliver to one notifier.
type Pending struct {
	Publisher string `json:"publisher"`
	Event     string `json:"event"`
	EventID   string `json:"event_id"` // kept: receivers de-duplicate on it
}

// Item states.
const (
	stateTaking    = "taking"    // being moved into the work area
	stateTaken     = "taken"     // in the work area, no job yet
	stateQueued    = "queued"    // its job exists
	stateFailed    = "failed"    // its job failed; the file is in failed/ until a retry succeeds
	statePublished = "published" // in its libraries; after_success is next
	// stateNotifying: an older herd's item whose original was dealt with,
	// and whose notifications remained; they are handed off.
	stateNotifying = "notifying"
)

// Run scans and finishes until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	if err := w.recover(ctx); err != nil {
		return err
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
// The folder is read through a root, so a folder inside it swapped for a
// link never leads the scan outside.
func (w *Watcher) scan(ctx context.Context, f config.Watch) {
	now := time.Now()
	present := map[string]bool{}
	root, err := os.OpenRoot(f.Path)
	if err == nil {
		defer root.Close()
		err = fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
			if err != nil {
				if rel == "." {
					return err
				}
				return nil // a file that vanished while we looked
			}
			if d.IsDir() {
				if rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == DoneDir || rel == FailedDir) {
					return fs.SkipDir
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
			p := filepath.Join(f.Path, filepath.FromSlash(rel))
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
	}
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

// Names herd keeps for itself in an item's work folder.
const (
	itemFile = "item.json"
	keptFile = "kept.json" // in the work area itself, but reserved in items too
)

// heldName is the name a file named name gets in its work folder: its own,
// unless herd keeps that name for itself.
func heldName(name string) string {
	if strings.EqualFold(name, itemFile) || strings.EqualFold(name, keptFile) || strings.HasPrefix(name, safefs.TempPrefix) {
		return "original" + strings.ToLower(filepath.Ext(name))
	}
	return ""
}

// held is the item's file's name in its work folder.
func (it *Item) held() string { return cmp.Or(it.Held, it.Name) }

// take moves (or, for keep, copies) a stable file into the work area and
// queues its job.
func (w *Watcher) take(ctx context.Context, f config.Watch, path string, cur observed) error {
	rel, err := filepath.Rel(f.Path, path)
	if err != nil {
		return err
	}
	it := &Item{ID: job.NewID("w"), Folder: f.Path, Origin: filepath.ToSlash(rel), Name: filepath.Base(path),
		Size: cur.Size, MTime: cur.MTime, State: stateTaking, TakenAt: time.Now().UTC()}
	it.Held = heldName(it.Name)
	if err := w.root.MkdirAll(it.ID, 0o750); err != nil {
		return err
	}
	if err := w.save(it); err != nil {
		return err
	}
	if err := w.bringIn(f, it); err != nil {
		w.abandon(it, err)
		return err
	}
	w.mu.Lock()
	delete(w.seen, path)
	w.mu.Unlock()
	w.log.Info("took a file from a watch folder", "file", path, "item", it.ID)
	w.submit(ctx, f, it)
	return nil
}

// abandon forgets an item whose file could not be brought in, unless its
// file is in the work area after all (then recover deals with it). When
// the file was swapped for something else during the move (why), what
// came in instead is not the item's file: it is removed with the item.
func (w *Watcher) abandon(it *Item, why error) {
	held := filepath.Join(it.ID, it.held())
	if errors.Is(why, safefs.ErrChanged) {
		if err := w.root.RemoveAll(held); err != nil {
			w.log.Warn("remove what was swapped in for a watched file", "item", it.ID, "err", err)
			return
		}
	}
	if _, err := w.root.Lstat(held); errors.Is(err, fs.ErrNotExist) {
		w.forget(it)
	}
}

// bringIn puts the item's file into its work folder: moved, or for keep copied.
func (w *Watcher) bringIn(f config.Watch, it *Item) error {
	fr, err := os.OpenRoot(it.Folder)
	if err != nil {
		return err
	}
	defer fr.Close()
	src := filepath.FromSlash(it.Origin)
	dst := filepath.Join(it.ID, it.held())
	if f.AfterSuccess == config.AfterKeep {
		// A copy already there was checked before it got its name: a restart
		// after the copy and before this item was saved.
		if err := safefs.Copy(fr, src, w.root, dst); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := w.keep(filepath.Join(it.Folder, src), observed{Size: it.Size, MTime: it.MTime}); err != nil {
			return err
		}
	} else if err := safefs.Move(fr, src, w.root, dst); err != nil {
		return err
	}
	it.State = stateTaken
	return w.save(it)
}

// stillWritten reports whether the item's moved file changed since herd
// last looked at it: a writer that held it open across the move (a copy
// that stalled for longer than stable_for) is still at it, through the
// same open file, in the work area. It then records what it saw, and the
// item waits until the file holds still for the folder's stable_for again.
// A kept original's copy is herd's own, and changes nobody can make.
func (w *Watcher) stillWritten(f config.Watch, it *Item) bool {
	if f.AfterSuccess == config.AfterKeep {
		return false
	}
	st, err := w.root.Lstat(filepath.Join(it.ID, it.held()))
	if err != nil || !st.Mode().IsRegular() || (st.Size() == it.Size && st.ModTime().Equal(it.MTime)) {
		return false
	}
	w.log.Warn("a watched file is still being written after herd took it; waiting until it holds still",
		"file", it.Origin, "item", it.ID, "size", st.Size(), "was", it.Size, "stable_for", time.Duration(f.StableFor))
	it.Size, it.MTime = st.Size(), st.ModTime()
	it.NextTry = time.Now().Add(time.Duration(f.StableFor))
	return true
}

// submit queues the item's job, or recognises content already done. The
// file must be what it was when herd took it, before and after the copy
// the job is made from; otherwise it waits (see stillWritten).
//
// The job's id is chosen and saved on the item (NextJobID) before the job
// is created, so herd stopping after the job is in the store and before the
// item says so never leads to a second job: the next submit finds the job
// by that id, whatever became of it meanwhile. The content's idempotency
// key would not do: it finds only live jobs, and a job that failed in the
// meantime (its attempts spent on the same crashes) would get a twin.
func (w *Watcher) submit(ctx context.Context, f config.Watch, it *Item) {
	if time.Now().Before(it.NextTry) {
		return
	}
	if w.stillWritten(f, it) {
		w.dropNext(ctx, it) // made from a part of the file before herd stopped
		if err := w.save(it); err != nil {
			w.log.Error("save watch item", "item", it.ID, "err", err)
		}
		return
	}
	if it.NextJobID != "" {
		j, err := w.st.GetJob(ctx, it.NextJobID)
		switch {
		case err == nil:
			// Created before herd stopped: it is this item's own job.
			w.log.Info("found the job of a watched file that herd stopped while queueing", "file", it.Origin, "job_id", j.ID, "state", j.State)
			w.queued(it, j, false)
			return
		case !errors.Is(err, job.ErrNotFound):
			w.log.Warn("could not look for a watched file's job; will try again", "item", it.ID, "job_id", it.NextJobID, "err", err)
			return
		}
	} else {
		it.NextJobID = job.NewID("j")
		if err := w.save(it); err != nil {
			w.log.Error("save watch item", "item", it.ID, "err", err)
			return
		}
	}
	p, err := w.sub.Profile(f.Profile)
	if err == nil {
		var j job.Job
		var created bool
		opt := ingest.Options{Publish: f.Publish, Labels: f.Labels, Watch: &job.WatchOrigin{Folder: it.Folder, File: it.Origin}}
		j, created, err = w.sub.ImportFile(ctx, w.root, filepath.Join(it.ID, it.held()), it.Name, p, opt, it.NextJobID)
		if errors.Is(err, job.ErrConflict) && j.ID != "" {
			// Another's live job makes the same from the same bytes, for
			// other publishers or labels: like any duplicate, this file
			// waits for it, then delivers it to the folder's publishers.
			created, err = false, nil
		}
		if err == nil && w.stillWritten(f, it) {
			// What the job was made from is a part of the file.
			if created {
				w.drop(ctx, j.ID)
			}
			it.NextJobID = ""
			if err := w.save(it); err != nil {
				w.log.Error("save watch item", "item", it.ID, "err", err)
			}
			return
		}
		if err == nil {
			// Not made now: the same bytes with the same profile already
			// had a job (the item's own, made before a crash, was found by
			// NextJobID above).
			w.queued(it, j, !created)
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

// queued notes the item's job on it.
func (w *Watcher) queued(it *Item, j job.Job, duplicate bool) {
	it.JobID, it.NextJobID, it.State, it.NextTry = j.ID, "", stateQueued, time.Time{}
	it.Duplicate = duplicate
	if it.Duplicate {
		w.log.Info("the same content was already submitted with this profile; not queued again", "file", it.Origin, "job_id", j.ID)
	}
	if err := w.save(it); err != nil {
		w.log.Error("save watch item", "item", it.ID, "err", err)
	}
}

// dropNext cancels the job an item's last submit may have created before
// herd stopped, and forgets its id, so the next submit makes a new one.
func (w *Watcher) dropNext(ctx context.Context, it *Item) {
	if it.NextJobID == "" {
		return
	}
	w.drop(ctx, it.NextJobID)
	it.NextJobID = ""
}

// finishAll follows every item's job.
func (w *Watcher) finishAll(ctx context.Context) {
	entries, err := fs.ReadDir(w.root.FS(), ".")
	if err != nil {
		w.log.Error("read watch work area", "err", err)
		return
	}
	for _, e := range entries {
		if !e.IsDir() || ctx.Err() != nil {
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
	if it.State == stateQueued && w.stillWritten(f, it) {
		// Its job was made from a part of the file: a new one is made once
		// the file holds still; the old one is canceled unless it was
		// another's (the same bytes came before).
		if !it.Duplicate {
			w.drop(ctx, it.JobID)
		}
		it.State, it.JobID, it.Duplicate = stateTaken, "", false
		if err := w.save(it); err != nil {
			w.log.Error("save watch item", "item", it.ID, "err", err)
		}
		return
	}
	j, err := w.st.GetJob(ctx, it.JobID)
	if errors.Is(err, job.ErrNotFound) {
		switch it.State {
		case statePublished, stateNotifying:
			w.finish(f, it)
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
	if len(it.Pending) > 0 && !w.handOffPending(ctx, it, j) {
		return
	}
	switch j.State {
	case job.Succeeded:
		if it.State == stateQueued || it.State == stateFailed {
			done, err := w.delivered(ctx, f, it, j)
			if err != nil {
				it.Error, it.Undelivered = err.Error(), true
				w.fail(f, it)
				return
			}
			if !done {
				return
			}
			it.State, it.Error = statePublished, ""
			if err := w.save(it); err != nil {
				w.log.Error("save watch item", "item", it.ID, "err", err)
				return
			}
		}
		switch it.State {
		case statePublished:
			w.finish(f, it)
		case stateNotifying:
			w.forget(it) // an older herd's: its original was dealt with
		}
	case job.Failed, job.Canceled:
		if it.State != stateFailed {
			event := job.EventFailed
			if j.State == job.Canceled {
				event = job.EventCanceled
			}
			if !w.handOff(ctx, f, it, j, event) {
				return
			}
			it.Error = cmp.Or(j.Error, "the job was "+string(j.State))
			w.fail(f, it)
		}
	default:
		if it.State == stateFailed { // retried
			it.State = stateQueued
			if err := w.save(it); err != nil {
				w.log.Error("save watch item", "item", it.ID, "err", err)
			}
		}
	}
}

// handOffPending gives the delivery service the notifications an older
// herd had still to make itself for the item, under their own event ids.
func (w *Watcher) handOffPending(ctx context.Context, it *Item, j job.Job) bool {
	for _, p := range it.Pending {
		id := cmp.Or(p.EventID, handOffEvent(it, j, p.Event))
		if err := w.st.HandOff(ctx, id, j.ID, p.Event, []string{p.Publisher}, time.Now().UTC()); err != nil {
			w.log.Warn("could not hand a watched file's notifications to the delivery service; will try again", "job_id", j.ID, "err", err)
			return false
		}
	}
	it.Pending = nil
	if err := w.save(it); err != nil {
		w.log.Error("save watch item", "item", it.ID, "err", err)
		return false
	}
	return true
}

// handOffEvent is the id of the event the item hands off for its job: the
// same on every try, so the outbox takes it once.
func handOffEvent(it *Item, j job.Job, event string) string {
	return job.DerivedID("evt", it.ID, j.ID, event)
}

// handOff gives the delivery service the job's event for the folder's
// publishers that will not hear of it otherwise: those the job does not
// name (made by an older herd, or before the folder's publish list grew),
// or every one of the folder's when the job is another's (a duplicate).
// It reports whether that is done (false: try again later).
func (w *Watcher) handOff(ctx context.Context, f config.Watch, it *Item, j job.Job, event string) bool {
	var names []string
	for _, name := range f.Publish {
		if (it.Duplicate || !slices.Contains(j.Publish, name)) && !slices.Contains(it.HandedOff, event+" "+name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return true
	}
	if err := w.st.HandOff(ctx, handOffEvent(it, j, event), j.ID, event, names, time.Now().UTC()); err != nil {
		w.log.Warn("could not hand a watched file's publishers to the delivery service; will try again", "job_id", j.ID, "err", err)
		return false
	}
	for _, name := range names {
		it.HandedOff = append(it.HandedOff, event+" "+name)
	}
	if err := w.save(it); err != nil {
		w.log.Error("save watch item", "item", it.ID, "err", err)
		return false
	}
	return true
}

// delivered reports whether the succeeded job's file is in every library
// the item's file goes to, which the delivery service copies it to
// (after_success waits for them); an error says a library gave up on it.
func (w *Watcher) delivered(ctx context.Context, f config.Watch, it *Item, j job.Job) (bool, error) {
	if !w.handOff(ctx, f, it, j, job.EventSucceeded) {
		return false, nil
	}
	var libs, ours []string // ours: handed off by the item, so its own outbox rows say when they end
	if !it.Duplicate {
		libs = slices.Clone(j.Publish)
	}
	for _, h := range it.HandedOff {
		if name, ok := strings.CutPrefix(h, job.EventSucceeded+" "); ok {
			libs, ours = append(libs, name), append(ours, name)
		}
	}
	libs = slices.DeleteFunc(libs, func(name string) bool { return w.pubs[name].Type != config.PublishLibrary })
	if len(libs) == 0 {
		return true, nil
	}
	pending, err := w.st.PendingOutbound(ctx, handOffEvent(it, j, job.EventSucceeded))
	if err != nil {
		w.log.Warn("could not read a watched file's deliveries; will try again", "job_id", j.ID, "err", err)
		return false, nil
	}
	ds, err := w.st.Deliveries(ctx, j.ID)
	if err != nil {
		w.log.Warn("could not read a watched file's deliveries; will try again", "job_id", j.ID, "err", err)
		return false, nil
	}
	for _, name := range libs {
		if slices.Contains(ours, name) && slices.ContainsFunc(pending, func(o store.Outbound) bool { return o.Target == name }) {
			return false, nil // our copy is not made yet
		}
		// The last attempt that ended it: ours, when the item handed it off.
		i := -1
		for k, d := range slices.Backward(ds) {
			if d.Publisher == name && d.Event == job.EventSucceeded && d.Final {
				i = k
				break
			}
		}
		switch {
		case i < 0:
			return false, nil // not copied yet
		case !ds[i].OK:
			return false, fmt.Errorf("the job succeeded, but its file could not be put in library %s: %s", name, ds[i].Detail)
		}
	}
	return true, nil
}

// drop cancels a job made from a file that was still being written. One
// already ended is left as it is; its outputs are never published.
func (w *Watcher) drop(ctx context.Context, id string) {
	_, err := w.st.CancelJob(ctx, id, time.Now().UTC())
	switch {
	case err == nil:
		w.log.Info("canceled a job made from a file still being written", "job_id", id)
	case !errors.Is(err, job.ErrConflict) && !errors.Is(err, job.ErrNotFound):
		w.log.Warn("could not cancel a job made from a file still being written", "job_id", id, "err", err)
	}
}

// settle applies after_success to the original. Where a file goes is
// saved before it moves, so a crash in the middle (a copy across file
// systems) finishes that move instead of making a second copy; a file
// already gone means this already happened.
func (w *Watcher) settle(f config.Watch, it *Item) bool {
	fr, err := os.OpenRoot(f.Path)
	if err != nil {
		w.log.Error("cannot open a watch folder to settle a finished file; will try again", "item", it.ID, "err", err)
		return false
	}
	defer fr.Close()
	held := filepath.Join(w.work, it.ID, it.held())
	if it.FailedAt != "" {
		held = it.FailedAt
		if r, note, err := w.where(fr, f, w.note(f, it)); err == nil {
			_ = r.Remove(note)
		}
	}
	hr, hrel, err := w.where(fr, f, held)
	if err != nil {
		w.log.Error("a finished file is recorded outside its watch folder and the work area; leaving it", "item", it.ID, "err", err)
		return false
	}
	switch f.AfterSuccess {
	case config.AfterMove:
		if it.DoneAt == "" {
			rel, err := freeName(fr, filepath.Join(DoneDir, filepath.FromSlash(it.Origin)), "")
			if err != nil {
				w.log.Error("cannot choose a name in done/; will try again", "item", it.ID, "err", err)
				return false
			}
			it.DoneAt = filepath.Join(f.Path, rel)
			if err := w.save(it); err != nil {
				w.log.Error("save watch item", "item", it.ID, "err", err)
				return false
			}
		}
		dr, drel, err := w.where(fr, f, it.DoneAt)
		if err == nil {
			err = moveTo(hr, hrel, dr, drel)
		}
		if err != nil {
			if errors.Is(err, fs.ErrExist) {
				it.DoneAt = "" // something else took the name: choose another next time
				_ = w.save(it)
			}
			w.log.Error("move a finished file to done/; will try again", "item", it.ID, "err", err)
			return false
		}
	case config.AfterDelete, config.AfterKeep:
		if err := hr.Remove(hrel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.log.Error("remove a finished file; will try again", "item", it.ID, "err", err)
			return false
		}
	}
	return true
}

// finish settles the original and forgets the item.
func (w *Watcher) finish(f config.Watch, it *Item) {
	if w.settle(f, it) {
		w.forget(it)
	}
}

func (w *Watcher) forget(it *Item) {
	if err := w.root.RemoveAll(it.ID); err != nil {
		w.log.Error("remove a watch item", "item", it.ID, "err", err)
	}
}

// where finds the root an absolute path recorded on an item lies in, the
// work area or the watch folder fr, and its name inside that root.
func (w *Watcher) where(fr *os.Root, f config.Watch, path string) (*os.Root, string, error) {
	for _, c := range []struct {
		dir  string
		root *os.Root
	}{{w.work, w.root}, {f.Path, fr}} {
		if rel, err := filepath.Rel(c.dir, path); err == nil && filepath.IsLocal(rel) {
			return c.root, rel, nil
		}
	}
	return nil, "", fmt.Errorf("%s is neither in the watch folder nor in the work area", path)
}

// noteSuffix ends the name of the note beside a failed file.
const noteSuffix = ".error.txt"

// note is where the item's FILE.error.txt goes.
func (w *Watcher) note(f config.Watch, it *Item) string {
	if it.Note != "" {
		return it.Note
	}
	// Chosen before herd kept the note's name: the origin's name in failed/.
	return filepath.Join(f.Path, FailedDir, filepath.FromSlash(it.Origin)) + noteSuffix
}

// fail moves the file to failed/ with FILE.error.txt; the item stays, so a
// retried job that succeeds finishes it.
func (w *Watcher) fail(f config.Watch, it *Item) {
	fr, err := os.OpenRoot(f.Path)
	if err != nil {
		w.log.Error("cannot open a watch folder to move a failed file; will try again", "item", it.ID, "err", err)
		return
	}
	defer fr.Close()
	held := filepath.Join(w.work, it.ID, it.held())
	fresh := it.FailedAt == "" // the note's name was chosen now: nothing of herd's is there
	if fresh {
		// The file and its note get names that are both free.
		rel, err := freeName(fr, filepath.Join(FailedDir, filepath.FromSlash(it.Origin)), noteSuffix)
		if err != nil {
			w.log.Error("cannot choose a name in failed/; will try again", "item", it.ID, "err", err)
			return
		}
		it.FailedAt = held // keep: the original stays where it was; the copy waits here
		if f.AfterSuccess != config.AfterKeep {
			it.FailedAt = filepath.Join(f.Path, rel)
		}
		it.Note = filepath.Join(f.Path, rel) + noteSuffix
		// Saved before the move, so a crash in the middle finishes it.
		if err := w.save(it); err != nil {
			w.log.Error("save watch item", "item", it.ID, "err", err)
			return
		}
	}
	hr, hrel, err := w.where(fr, f, held)
	var fa *os.Root
	var farel string
	if err == nil {
		fa, farel, err = w.where(fr, f, it.FailedAt)
	}
	if err == nil {
		err = moveTo(hr, hrel, fa, farel)
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			it.FailedAt, it.Note = "", "" // something else took the name: choose another next time
			_ = w.save(it)
		}
		w.log.Error("move a failed file to failed/; will try again", "item", it.ID, "err", err)
		return
	}
	msg := fmt.Sprintf("herd could not process %s\njob: %s\nerror: %s\n\nFix the cause, then run: herd retry %s\n", it.Origin, it.JobID, it.Error, it.JobID)
	switch {
	case it.JobID == "":
		msg = fmt.Sprintf("herd could not queue %s\nerror: %s\n", it.Origin, it.Error)
	case it.Undelivered:
		msg = fmt.Sprintf("herd made %s but could not deliver it\njob: %s\nerror: %s\n\nFix the cause, then move this file back into the watch folder: herd delivers the job's output again, without encoding it again.\n", it.Origin, it.JobID, it.Error)
	}
	if nr, note, err := w.where(fr, f, w.note(f, it)); err == nil {
		if err := nr.MkdirAll(filepath.Dir(note), 0o755); err == nil {
			write := safefs.WriteFile // herd's own note from an earlier failure
			if fresh {
				write = safefs.WriteNew
			}
			if err := write(nr, note, []byte(msg), 0o600); err != nil {
				w.log.Warn("could not write the note beside a failed file", "item", it.ID, "err", err)
			}
		}
	}
	it.State = stateFailed
	if it.JobID == "" || it.Undelivered {
		w.forget(it) // no retry of a job can finish it
		return
	}
	if err := w.save(it); err != nil {
		w.log.Error("save watch item", "item", it.ID, "err", err)
	}
	w.log.Warn("a watched file failed; moved to failed/", "file", it.Origin, "job_id", it.JobID, "err", it.Error)
}

// recover finishes what a crash interrupted: items still being taken are
// taken again from wherever the file is.
func (w *Watcher) recover(ctx context.Context) error {
	entries, err := fs.ReadDir(w.root.FS(), ".")
	if err != nil {
		return fmt.Errorf("read watch work area: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			if strings.HasPrefix(e.Name(), safefs.TempPrefix) {
				_ = w.root.Remove(e.Name()) // a write of kept.json cut short
			}
			continue
		}
		it, err := w.load(e.Name())
		if err != nil {
			// Created but never described, so nothing was moved into it yet;
			// anything else is left alone for a person to look at.
			if inside, _ := fs.ReadDir(w.root.FS(), e.Name()); errors.Is(err, fs.ErrNotExist) && !slices.ContainsFunc(inside, func(d os.DirEntry) bool { return !strings.HasPrefix(d.Name(), safefs.TempPrefix) }) {
				_ = w.root.RemoveAll(e.Name())
			} else {
				w.log.Error("a watch item cannot be read; leaving it for a person to look at", "item", filepath.Join(w.work, e.Name()), "err", err)
			}
			continue
		}
		f, ok := w.folder(it.Folder)
		if !ok || it.State != stateTaking {
			continue
		}
		// The move happened if a regular file is there (something swapped
		// in is not). It may have grown since it was taken: a writer that
		// still holds it open (submit waits for it to hold still).
		if st, err := w.root.Lstat(filepath.Join(it.ID, it.held())); err == nil && st.Mode().IsRegular() && f.AfterSuccess != config.AfterKeep {
			// The move happened. Across file systems the original may still
			// be there: the copy was checked before it got its name, so the
			// original goes, unless it changed since.
			if fr, err := os.OpenRoot(it.Folder); err == nil {
				src := filepath.FromSlash(it.Origin)
				if st, err := fr.Lstat(src); err == nil && st.Mode().IsRegular() && st.Size() == it.Size && st.ModTime().Equal(it.MTime) {
					err = fr.Remove(src)
					_ = fr.Close() // a directory handle: its close has nothing to report
					if err != nil {
						return fmt.Errorf("remove a watched file already copied into the work area: %w", err)
					}
				} else {
					_ = fr.Close()
				}
			}
			it.State = stateTaken
			if err := w.save(it); err != nil {
				return err
			}
			continue
		}
		// Anything but a regular file at the file's place was swapped in
		// during the move (see abandon): not the item's file. (For keep, a
		// copy only gets its name once whole; bringIn takes it as it is.)
		if st, err := w.root.Lstat(filepath.Join(it.ID, it.held())); err == nil && !st.Mode().IsRegular() {
			_ = w.root.RemoveAll(filepath.Join(it.ID, it.held()))
		}
		if err := w.bringIn(f, it); err != nil {
			w.log.Warn("a file being taken when herd stopped is gone; forgetting it", "item", it.ID, "file", it.Origin, "err", err)
			w.abandon(it, err)
		}
	}
	return nil
}

func (w *Watcher) save(it *Item) error {
	data, err := json.MarshalIndent(it, "", "  ")
	if err != nil {
		return err
	}
	return safefs.WriteFile(w.root, filepath.Join(it.ID, itemFile), data, 0o600)
}

func (w *Watcher) load(id string) (*Item, error) {
	data, err := w.root.ReadFile(filepath.Join(id, itemFile))
	if err != nil {
		return nil, err
	}
	var it Item
	if err := json.Unmarshal(data, &it); err != nil {
		return nil, err
	}
	return &it, nil
}

func (w *Watcher) loadKept() error {
	data, err := w.root.ReadFile(keptFile)
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
	return safefs.WriteFile(w.root, keptFile, data, 0o600)
}

// maxNumbered is how far freeName counts before giving up.
const maxNumbered = 10000

// freeName is rel inside r, or when something is there (or at rel+also),
// rel with a number added.
func freeName(r *os.Root, rel, also string) (string, error) {
	ext := filepath.Ext(rel)
	base := strings.TrimSuffix(rel, ext)
	for i := 1; i <= maxNumbered; i++ {
		free := true
		for _, name := range []string{rel, rel + also} {
			_, err := r.Lstat(name)
			if err == nil {
				free = false
			} else if !errors.Is(err, fs.ErrNotExist) {
				return "", err // a folder on the way leads outside, or cannot be read
			}
		}
		if free {
			return rel, nil
		}
		rel = fmt.Sprintf("%s (%d)%s", base, i, ext)
	}
	return "", fmt.Errorf("%d files are already named like %s", maxNumbered, filepath.Base(base+ext))
}

// moveTo moves src inside from to dst inside to, making dst's folder; a
// src already gone was moved before. It never replaces anything at dst.
func moveTo(from *os.Root, src string, to *os.Root, dst string) error {
	if from == to && src == dst {
		return nil
	}
	if _, err := from.Lstat(src); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := to.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return safefs.Move(from, src, to, dst)
}
