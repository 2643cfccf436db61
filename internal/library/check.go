package library

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// Health check results (store.LibraryFile.Check): pending while a check
// waits or runs, then what the check task found (job.CheckResult).
const (
	CheckPending = "pending"
	CheckOK      = job.CheckOK
	CheckDamaged = job.CheckDamaged
	// CheckSkipped: larger or longer than herd decodes (its limits).
	CheckSkipped = job.CheckSkipped
)

// StartCheck starts a health check of a library: its files are probed
// as a plan does (new and changed ones), then every one is decoded whole
// by a worker that reads the library's folder: a job per file with one
// check task (job.KindCheck, needing job.LibraryNeed), at most
// CheckConcurrency of a library's at once so that checks take turns with
// other work. Those that do not decode cleanly are marked damaged with
// the first error. Nothing is changed on disk. A restart goes on with the
// checks not yet done. A check of the library already under way is
// joined, not started again: a file it checked is not checked twice.
func (m *Manager) StartCheck(ctx context.Context, name string) (Report, error) {
	l, err := m.get(name)
	if err != nil {
		return Report{}, err
	}
	if _, err := m.scanNow(ctx, l, true); err != nil {
		return Report{}, err
	}
	if _, err := m.st.StartLibraryCheck(ctx, l.Name); err != nil {
		return Report{}, err
	}
	select {
	case l.checks <- struct{}{}:
	default:
	}
	return m.Status(ctx, name)
}

// checker follows the health checks of l's files until ctx ends: it
// records what finished check jobs found and queues the next ones.
func (m *Manager) checker(ctx context.Context, l *lib) {
	log := m.log.With("library", l.Name)
	for {
		live, err := m.checkStep(ctx, l)
		if err != nil && ctx.Err() == nil {
			log.Error("library check", "err", err)
		}
		// While checks run, their ends are looked for often: one short
		// file's check takes well under a Tick.
		wait := m.Tick
		if live > 0 {
			wait = min(wait, checkFollowEvery)
		}
		select {
		case <-ctx.Done():
			return
		case <-l.checks:
		case <-time.After(wait):
		}
	}
}

// checkFollowEvery is how often running check jobs are looked at.
const checkFollowEvery = 500 * time.Millisecond

// checkStep records the results of l's finished check jobs and queues
// check jobs for pending files while fewer than CheckConcurrency run; it
// returns how many are queued or run.
func (m *Manager) checkStep(ctx context.Context, l *lib) (int, error) {
	limit := max(m.CheckConcurrency, 1)
	// The files with a job come first: at most limit of them are live, so
	// twice that many rows hold them and enough of the rest to fill the
	// free slots.
	files, err := m.st.LibraryCheckPending(ctx, l.Name, 2*limit)
	if err != nil {
		return 0, err
	}
	live := 0
	var errs []error
	for _, f := range files {
		if f.CheckJob == "" {
			continue
		}
		done, err := m.followCheck(ctx, l, f)
		if err != nil {
			errs = append(errs, err)
		}
		if !done {
			live++
		}
	}
	for _, f := range files {
		if f.CheckJob != "" || live >= limit {
			continue
		}
		queued, err := m.queueCheck(ctx, l, f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Path, err))
		}
		if queued {
			live++
		}
	}
	return live, errors.Join(errs...)
}

// followCheck records what f's check job found, once it has ended; done
// is false while it waits or runs. What it records goes only to a file
// whose check still waits for that job.
func (m *Manager) followCheck(ctx context.Context, l *lib, f store.LibraryFile) (done bool, err error) {
	j, err := m.st.GetJob(ctx, f.CheckJob)
	if errors.Is(err, job.ErrNotFound) {
		// Recorded, then not made (a crash between the two): make it again.
		_, err := m.st.SetLibraryCheckJob(ctx, l.Name, f.Path, f.CheckJob, "")
		return true, err
	}
	if err != nil {
		return false, err
	}
	finish := func(state, note string) (bool, error) {
		_, err := m.st.FinishLibraryCheck(ctx, l.Name, f.Path, j.ID, state, note)
		return true, err
	}
	switch j.State {
	case job.Succeeded:
		tasks, err := m.st.Tasks(ctx, j.ID)
		if err != nil {
			return false, err
		}
		var res job.CheckResult
		for _, t := range tasks {
			if t.Kind == job.KindCheck {
				if err := json.Unmarshal(t.Result, &res); err != nil {
					return finish(CheckSkipped, "could not be checked: its check's result cannot be read")
				}
			}
		}
		if res.State == CheckDamaged {
			m.log.Warn("library file does not decode cleanly", "library", l.Name, "path", f.Path, "error", res.Note, "job_id", j.ID)
		}
		return finish(res.State, res.Note)
	case job.Failed:
		// Not the file's fault, as far as anyone knows: the check could not
		// run (no mount, a worker gone). A file that is gone is forgotten
		// by the next scan; until then it is not checked.
		if gone, err := m.gone(l, f.Path); err != nil {
			return false, err
		} else if gone {
			return finish("", "")
		}
		return finish(CheckSkipped, "could not be checked: "+j.Error+" (herd library check "+l.Name+" tries again once the check under way has ended)")
	case job.Canceled:
		return finish("", "")
	}
	return false, nil
}

// gone says whether the file rel is no longer in l's folder.
func (m *Manager) gone(l *lib, rel string) (bool, error) {
	root, err := l.open()
	if err != nil {
		return false, err
	}
	defer root.Close()
	_, err = root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return false, err
}

// queueCheck makes f's check job: its id is recorded on f first, so that
// a restart finds the job, or makes it when the crash came before it.
// queued is false when f's check no longer waits for one.
func (m *Manager) queueCheck(ctx context.Context, l *lib, f store.LibraryFile) (queued bool, err error) {
	id := job.NewID("j")
	if ok, err := m.st.SetLibraryCheckJob(ctx, l.Name, f.Path, "", id); err != nil || !ok {
		return false, err
	}
	asset, err := m.checkAsset(ctx, l)
	if err != nil {
		return true, err
	}
	j := job.Job{ID: id, IdempotencyKey: "check:" + id, Labels: l.jobLabels(),
		Source: job.Source{AssetID: asset, Name: f.Path, Size: f.Size, Library: l.Name}}
	task := job.Task{ID: job.NewID("t"), Kind: job.KindCheck, MaxAttempts: job.DefaultMaxAttempts, Needs: []string{job.LibraryNeed(l.Name)}}
	if _, _, err := m.st.CreateJob(ctx, j, []job.Task{task}, m.now().UTC()); err != nil {
		return true, err
	}
	if m.Wake != nil {
		m.Wake()
	}
	return true, nil
}

// checkAsset is the asset l's check jobs name: a health check's source is
// not stored, so its job stands on the library's own asset, which stands
// for the folder (job.Source.Library). Stored once, then remembered (only
// l's checker asks).
func (m *Manager) checkAsset(ctx context.Context, l *lib) (string, error) {
	if l.asset == "" {
		a, err := m.st.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: l.Name, SHA256: "library:" + l.Name, CreatedAt: m.now().UTC()})
		if err != nil {
			return "", err
		}
		l.asset = a.ID
	}
	return l.asset, nil
}

// dropCheck cancels the check job of f, whose file went or was replaced
// (the check would say nothing of what is there now).
func (m *Manager) dropCheck(ctx context.Context, f store.LibraryFile) {
	if f.CheckJob == "" || f.Check != CheckPending {
		return
	}
	if _, err := m.st.CancelJob(ctx, f.CheckJob, m.now().UTC()); err != nil && !errors.Is(err, job.ErrNotFound) && !errors.Is(err, job.ErrConflict) {
		m.log.Warn("library: could not cancel the check of a file that went", "library", f.Library, "path", f.Path, "job_id", f.CheckJob, "err", err)
	}
}
