// Package campaign re-encodes what older versions of a profile made. A
// campaign lists, when it is made, the current job of every stream (an
// asset made with the profile) whose version is older than the profile's
// current one, then queues one new job per item, at most MaxRunning at a
// time and only inside its window. Each new job replaces its stream's
// output only when it succeeds, verified, in the transaction that ends it
// (the store's streams); until then the old output plays on. The old
// outputs are removed a while later (Keep), so a player in the middle of
// one is not cut off. Everything a campaign knows is in the store: a
// server that restarts picks up where it was, and a job queued twice for
// one item is the same job (the submitter's idempotency key).
package campaign

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/label"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/window"
)

// Defaults.
const (
	DefaultMaxRunning = 2
	MaxMaxRunning     = 1000
	// DefaultKeep is how long a replaced output stays playable.
	DefaultKeep = 24 * time.Hour
	// Tick is how often campaigns are stepped.
	Tick = 2 * time.Second
	// purgeEvery is how often replaced outputs past their keep time are removed.
	purgeEvery = time.Minute
)

// ErrInvalid is a request that cannot be a campaign; its message says why.
var ErrInvalid = errors.New("invalid campaign")

// Store is what campaigns need from the store.
type Store interface {
	GetJob(ctx context.Context, id string) (job.Job, error)
	CancelJob(ctx context.Context, id string, now time.Time) (job.Job, error)
	PublishedJobs(ctx context.Context, profile string) ([]job.Job, error)
	ReplacedBefore(ctx context.Context, before time.Time, limit int) ([]string, error)
	OutputsRemoved(ctx context.Context, id string, now time.Time) error
	CreateCampaign(ctx context.Context, c store.Campaign, jobIDs []string) error
	GetCampaign(ctx context.Context, id string) (store.Campaign, error)
	ListCampaigns(ctx context.Context, state string) ([]store.Campaign, error)
	CampaignItems(ctx context.Context, id string) ([]store.CampaignItem, error)
	SetCampaignState(ctx context.Context, id string, from []string, state string, now time.Time) (store.Campaign, error)
	AssignCampaignItem(ctx context.Context, id, jobID, newJobID, note string) (bool, error)
}

// Redoer queues a job's source again with its profile's current version
// (ingest.Submitter).
type Redoer interface {
	Redo(ctx context.Context, old job.Job) (job.Job, bool, error)
}

// Remover removes a job's outputs (pipeline.Storage).
type Remover interface {
	RemoveOutputs(ctx context.Context, jobID string) error
}

// Config is what a Service is made with.
type Config struct {
	Store    Store
	Redo     Redoer
	Profiles *profile.Set
	Files    Remover
	// Libraries are the names --library may give: the configured
	// publishers and watch folders.
	Libraries []string
	// Keep is how long a replaced job's outputs stay (0: DefaultKeep;
	// negative: removed at once).
	Keep time.Duration
	Log  *slog.Logger
}

// Service makes campaigns and runs them.
type Service struct {
	cfg  Config
	kick chan struct{}
	now  func() time.Time
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Keep == 0 {
		cfg.Keep = DefaultKeep
	}
	cfg.Keep = max(cfg.Keep, 0)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, kick: make(chan struct{}, 1), now: time.Now}
}

// Request asks for a campaign.
type Request = jobview.CampaignRequest

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Create checks req, finds the outputs it redoes, and (unless it is a dry
// run) stores the campaign, which the Service then runs. It returns the
// campaign and the jobs whose outputs it redoes.
func (s *Service) Create(ctx context.Context, req Request) (store.Campaign, []job.Job, error) {
	p, ok := s.cfg.Profiles.Get(req.Profile)
	if !ok {
		return store.Campaign{}, nil, invalid("no profile %q: choose one of %s", req.Profile, strings.Join(s.cfg.Profiles.Names(), ", "))
	}
	from := max(req.FromVersion, 1)
	switch {
	case req.FromVersion < 0:
		return store.Campaign{}, nil, invalid("from_version is a version number, 1 or more")
	case from >= p.Version:
		return store.Campaign{}, nil, invalid("profile %s is at version %d: a campaign redoes what versions %d to %d made, so edit the profile first (or give a lower --from-version)",
			p.Name, p.Version, from, p.Version-1)
	case req.MaxRunning < 0 || req.MaxRunning > MaxMaxRunning:
		return store.Campaign{}, nil, invalid("max_running is between 1 and %d", MaxMaxRunning)
	case req.Library != "" && !slices.Contains(s.cfg.Libraries, req.Library):
		return store.Campaign{}, nil, invalid("no publisher or watch folder is named %q (the configuration has %s)", req.Library, orNone(s.cfg.Libraries))
	}
	if req.Window != "" {
		if _, err := window.Parse(req.Window); err != nil {
			return store.Campaign{}, nil, invalid("%v", err)
		}
	}
	if err := label.Check(req.Labels); err != nil {
		return store.Campaign{}, nil, invalid("%v", err)
	}
	c := store.Campaign{
		ID: job.NewID("c"), Profile: p.Name, FromVersion: from, ToVersion: p.Version, State: store.CampaignRunning,
		Filter: store.CampaignFilter{Library: req.Library, Query: req.Query, Labels: req.Labels},
		Window: req.Window, MaxRunning: cmp.Or(req.MaxRunning, DefaultMaxRunning), CreatedAt: s.now().UTC(),
	}
	published, err := s.cfg.Store.PublishedJobs(ctx, p.Name)
	if err != nil {
		return store.Campaign{}, nil, err
	}
	var redo []job.Job
	ids := []string{}
	for _, j := range published {
		if j.ProfileVersion >= from && j.ProfileVersion < p.Version && c.Filter.Matches(j) {
			redo = append(redo, j)
			ids = append(ids, j.ID)
		}
	}
	if len(redo) == 0 {
		return store.Campaign{}, nil, invalid("none of the %d published outputs of profile %s made with versions %d to %d matches: nothing to redo",
			len(published), p.Name, from, p.Version-1)
	}
	c.Counts = store.CampaignCounts{Total: len(redo), Pending: len(redo)}
	if req.DryRun {
		return c, redo, nil
	}
	if err := s.cfg.Store.CreateCampaign(ctx, c, ids); err != nil {
		return store.Campaign{}, nil, err
	}
	s.cfg.Log.Info("campaign made", "campaign", c.ID, "profile", c.Profile, "from_version", from, "to_version", p.Version, "outputs", len(redo))
	s.Kick()
	return c, redo, nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// Pause stops a running campaign queueing jobs; the ones queued already run on.
func (s *Service) Pause(ctx context.Context, id string) (store.Campaign, error) {
	return s.cfg.Store.SetCampaignState(ctx, id, []string{store.CampaignRunning}, store.CampaignPaused, s.now())
}

// Resume lets a paused campaign queue jobs again.
func (s *Service) Resume(ctx context.Context, id string) (store.Campaign, error) {
	c, err := s.cfg.Store.SetCampaignState(ctx, id, []string{store.CampaignPaused}, store.CampaignRunning, s.now())
	if err == nil {
		s.Kick()
	}
	return c, err
}

// Cancel ends a campaign: nothing more is queued, and its jobs that have
// not finished are canceled. What it replaced stays replaced; every other
// output stays as it was.
func (s *Service) Cancel(ctx context.Context, id string) (store.Campaign, error) {
	c, err := s.cfg.Store.SetCampaignState(ctx, id, []string{store.CampaignRunning, store.CampaignPaused}, store.CampaignCanceled, s.now())
	if err != nil {
		return c, err
	}
	items, err := s.cfg.Store.CampaignItems(ctx, id)
	if err != nil {
		return c, err
	}
	for _, it := range items {
		if it.State != string(job.Queued) && it.State != string(job.Running) {
			continue
		}
		if _, err := s.cfg.Store.CancelJob(ctx, it.NewJobID, s.now()); err != nil && !errors.Is(err, job.ErrConflict) {
			return c, fmt.Errorf("cancel job %s: %w", it.NewJobID, err)
		}
	}
	return s.cfg.Store.GetCampaign(ctx, id)
}

// Kick steps the campaigns now rather than at the next tick.
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run steps every running campaign each Tick, and removes replaced outputs
// past their keep time each minute, until ctx ends.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(Tick)
	defer t.Stop()
	var purged time.Time
	for {
		if err := s.Step(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn("campaigns: step", "err", err)
		}
		if time.Since(purged) >= purgeEvery {
			purged = time.Now()
			if err := s.Purge(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Log.Warn("campaigns: remove replaced outputs", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// Step queues what each running campaign has room for, and marks done the
// ones with nothing left to queue or wait for.
func (s *Service) Step(ctx context.Context) error {
	cs, err := s.cfg.Store.ListCampaigns(ctx, store.CampaignRunning)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cs {
		if err := s.step(ctx, c); err != nil {
			errs = append(errs, fmt.Errorf("campaign %s: %w", c.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) step(ctx context.Context, c store.Campaign) error {
	n := c.Counts
	if n.Pending == 0 {
		if n.Running == 0 {
			if _, err := s.cfg.Store.SetCampaignState(ctx, c.ID, []string{store.CampaignRunning}, store.CampaignDone, s.now()); err != nil {
				return err
			}
			s.cfg.Log.Info("campaign done", "campaign", c.ID, "replaced", n.Succeeded, "failed", n.Failed, "skipped", n.Skipped)
		}
		return nil
	}
	if w, err := window.Parse(c.Window); err == nil && !w.Contains(s.now()) {
		return nil
	}
	room := c.MaxRunning - n.Running
	if room <= 0 {
		return nil
	}
	items, err := s.cfg.Store.CampaignItems(ctx, c.ID)
	if err != nil {
		return err
	}
	for _, it := range items {
		if room == 0 {
			break
		}
		if it.State != store.ItemPending {
			continue
		}
		if err := s.queue(ctx, c, it); err != nil {
			return err
		}
		room--
	}
	return nil
}

// queue makes (or finds, after a crash between the two writes) the job
// that redoes one item, and records it on the item.
func (s *Service) queue(ctx context.Context, c store.Campaign, it store.CampaignItem) error {
	old, err := s.cfg.Store.GetJob(ctx, it.JobID)
	if errors.Is(err, job.ErrNotFound) {
		_, err = s.cfg.Store.AssignCampaignItem(ctx, c.ID, it.JobID, "", "the job is gone")
		return err
	}
	if err != nil {
		return err
	}
	nj, created, err := s.cfg.Redo.Redo(ctx, old)
	if errors.Is(err, ingest.ErrUnknownProfile) || errors.Is(err, ingest.ErrBadOption) {
		s.cfg.Log.Warn("campaign item skipped", "campaign", c.ID, "job_id", old.ID, "err", err)
		_, err = s.cfg.Store.AssignCampaignItem(ctx, c.ID, it.JobID, "", err.Error())
		return err
	}
	if err != nil {
		return fmt.Errorf("queue the redo of %s: %w", old.ID, err)
	}
	if _, err := s.cfg.Store.AssignCampaignItem(ctx, c.ID, it.JobID, nj.ID, ""); err != nil {
		return err
	}
	s.cfg.Log.Info("campaign queued a job", "campaign", c.ID, "replaces", old.ID, "job_id", nj.ID, "new", created)
	return nil
}

// Purge removes the outputs of jobs replaced more than Keep ago.
func (s *Service) Purge(ctx context.Context) error {
	now := s.now()
	for {
		ids, err := s.cfg.Store.ReplacedBefore(ctx, now.Add(-s.cfg.Keep), 100)
		if err != nil || len(ids) == 0 {
			return err
		}
		for _, id := range ids {
			if err := s.cfg.Files.RemoveOutputs(ctx, id); err != nil {
				return fmt.Errorf("remove the outputs of %s: %w", id, err)
			}
			if err := s.cfg.Store.OutputsRemoved(ctx, id, now); err != nil {
				return err
			}
			s.cfg.Log.Info("replaced outputs removed", "job_id", id)
		}
	}
}
