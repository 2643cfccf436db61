package library

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/store"
)

// Health check results (store.LibraryFile.Check).
const (
	CheckPending = "pending"
	CheckOK      = "ok"
	CheckDamaged = "damaged"
	// CheckSkipped: larger or longer than herd decodes (its limits).
	CheckSkipped = "unchecked"
)

// StartCheck starts a health check of a library: its files are probed
// as a plan does (new and changed ones), then every one is decoded whole
// in the background, CheckConcurrency at a time, and those that do not
// decode cleanly are marked damaged with the first error. Nothing is
// changed on disk. A restart goes on with the files not yet checked.
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

// checker decodes the files of l whose check is pending, until ctx ends.
func (m *Manager) checker(ctx context.Context, l *lib) {
	log := m.log.With("library", l.Name)
	for {
		files, err := m.st.LibraryCheckPending(ctx, l.Name, 64)
		if err != nil && ctx.Err() == nil {
			log.Error("library check: list pending files", "err", err)
		}
		if len(files) == 0 || err != nil {
			select {
			case <-ctx.Done():
				return
			case <-l.checks:
			case <-time.After(m.Tick):
			}
			continue
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(m.CheckConcurrency, 1))
		for _, f := range files {
			g.Go(func() error { return m.checkOne(gctx, l, f) })
		}
		if err := g.Wait(); err != nil && ctx.Err() == nil {
			log.Error("library check", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(m.Tick):
			}
		}
	}
}

func (m *Manager) checkOne(ctx context.Context, l *lib, f store.LibraryFile) error {
	root, err := l.open()
	if err != nil {
		return err
	}
	defer root.Close()
	var damage string
	err = opened(root, f.Path, func(p string) (err error) {
		damage, err = m.probe.CheckDecode(ctx, p, m.limits)
		return err
	})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return m.st.SetLibraryCheck(ctx, l.Name, f.Path, "", "")
	case errors.Is(err, media.ErrNotChecked):
		return m.st.SetLibraryCheck(ctx, l.Name, f.Path, CheckSkipped, err.Error())
	case err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled):
		damage = "could not be checked: " + err.Error()
	case err != nil:
		return err
	}
	state := CheckOK
	if damage != "" {
		state = CheckDamaged
		m.log.Warn("library file does not decode cleanly", "library", l.Name, "path", f.Path, "error", damage)
	}
	return m.st.SetLibraryCheck(ctx, l.Name, f.Path, state, damage)
}
