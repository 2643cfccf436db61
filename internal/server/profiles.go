package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/herdhq/herd/internal/profile"
)

// reloadQuiet is how long the profiles folder must stay unchanged after a
// change before it is read again: an editor saves in several writes.
const reloadQuiet = 300 * time.Millisecond

// reloadRetry is how soon a reload that could not store the versions (a
// database that is away) is tried again.
const reloadRetry = 5 * time.Second

// profileReloader reads the profiles folder again when a file in it
// changes (fsnotify, where it works) or the server gets SIGHUP, and makes
// what parses the current versions. A file that does not parse is refused
// on its own, with its name and line in the log, and the version it had
// stays current; jobs already submitted keep the version they were
// submitted with whatever happens.
type profileReloader struct {
	dir      string
	versions *profile.Versions
	// check refuses a set the server cannot run with (its default profile gone).
	check func(*profile.Set) error
	log   *slog.Logger
	hup   chan os.Signal
}

// newProfileReloader takes SIGHUP from now on, for the rest of the
// process: from before the server says it is serving, and through its
// shutdown, so that no SIGHUP ends it.
func newProfileReloader(dir string, versions *profile.Versions, check func(*profile.Set) error, log *slog.Logger) *profileReloader {
	r := &profileReloader{dir: dir, versions: versions, check: check, log: log, hup: make(chan os.Signal, 1)}
	signal.Notify(r.hup, syscall.SIGHUP)
	return r
}

func (r *profileReloader) Run(ctx context.Context) error {

	var (
		changed <-chan fsnotify.Event
		failed  <-chan error
	)
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		r.log.Warn("cannot make the profiles folder; profiles are read again only on SIGHUP", "dir", r.dir, "err", err)
	} else if fw, err := fsnotify.NewWatcher(); err != nil {
		r.log.Warn("cannot watch the profiles folder; profiles are read again only on SIGHUP", "err", err)
	} else {
		defer fw.Close()
		if err := fw.Add(r.dir); err != nil {
			r.log.Warn("cannot watch the profiles folder; profiles are read again only on SIGHUP", "dir", r.dir, "err", err)
		} else {
			changed, failed = fw.Events, fw.Errors
		}
	}
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.hup:
			if !r.reload(ctx) {
				quiet.Reset(reloadRetry)
			}
		case _, ok := <-changed:
			if !ok {
				changed = nil
				continue
			}
			quiet.Reset(reloadQuiet)
		case err, ok := <-failed:
			if !ok {
				failed = nil
				continue
			}
			// Events may have been lost (an overflowing queue): read it all.
			r.log.Warn("watching the profiles folder", "dir", r.dir, "err", err)
			quiet.Reset(reloadQuiet)
		case <-quiet.C:
			if !r.reload(ctx) {
				quiet.Reset(reloadRetry)
			}
		}
	}
}

// reload reads the folder and records what changed. It is false when the
// versions could not be stored, and the reload should be tried again.
func (r *profileReloader) reload(ctx context.Context) bool {
	prev := r.versions.Current
	next, errs := profile.Reload(r.dir, prev)
	for _, err := range errs {
		r.log.Error("profile refused; its previous version stays current", "dir", r.dir, "err", err)
	}
	if err := r.check(next); err != nil {
		r.log.Error("profiles not reloaded; the previous ones stay current", "dir", r.dir, "err", err)
		return true
	}
	was := map[string]int{}
	for _, p := range prev.All() {
		was[p.Name] = p.Version
	}
	if err := r.versions.Record(ctx, next); err != nil {
		if ctx.Err() != nil {
			return true
		}
		r.log.Error("profiles not reloaded; the previous ones stay current, and herd tries again", "err", err, "in", reloadRetry)
		return false
	}
	for _, p := range r.versions.Current.All() {
		if v, ok := was[p.Name]; !ok || v != p.Version {
			r.log.Info("profile changed: new jobs use this version, jobs already submitted keep theirs", "profile", p.Name, "version", p.Version, "was", v)
		}
		delete(was, p.Name)
	}
	for name := range was {
		r.log.Info("profile removed: jobs already submitted with it still run", "profile", name)
	}
	return true
}

// checkProfiles refuses a profile set without a profile the server's
// settings name: the default profile, and each watch folder's.
func checkProfiles(cfg Config) func(*profile.Set) error {
	return func(s *profile.Set) error {
		if _, ok := s.Get(cfg.DefaultProfile); cfg.DefaultProfile != "" && !ok {
			return fmt.Errorf("--default-profile %q: no such profile; herd profiles lists them", cfg.DefaultProfile)
		}
		for _, w := range cfg.Watch {
			if _, ok := s.Get(w.Profile); w.Profile != "" && !ok {
				return fmt.Errorf("watch folder %s: no such profile %q; herd profiles lists them", w.Path, w.Profile)
			}
		}
		return nil
	}
}
