// Package deliver delivers every job's events: to the publishers a
// submitter named (libraries, Plex, Jellyfin, webhooks from the
// configuration's publishers:) and to webhook subscriptions. It reads the
// store's outbox, where a job's events are written in the transaction that
// changes the job, so an event outlives a server killed before it was
// sent; each delivery is leased like a task, tried again with backoff,
// and every attempt is recorded on its job.
package deliver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/backoff"
	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/publish"
	"github.com/herdhq/herd/internal/store"
)

// Store is what delivery needs from the store.
type Store interface {
	GetJob(ctx context.Context, id string) (job.Job, error)
	ClaimOutbound(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]store.Outbound, error)
	ReleaseOutbound(ctx context.Context, owner string) (int, error)
	SettleOutbound(ctx context.Context, id string, attempt int, next time.Time) error
	PendingOutbound(ctx context.Context, eventID string) ([]store.Outbound, error)
	GetSubscription(ctx context.Context, id string) (store.Subscription, error)
	SubscriptionHealth(ctx context.Context, id string, failingSince, pausedAt *time.Time, note string) error
	AddDelivery(ctx context.Context, d store.Delivery) error
	Deliveries(ctx context.Context, jobID string) ([]store.Delivery, error)
}

// Tuning.
const (
	// Lease is how long a claimed delivery is this server's; a server that
	// dies holding one leaves it to another after this.
	Lease = 2 * time.Minute
	// batch is how many deliveries run at once.
	batch = 16
	// every is how often the outbox is read when nothing wakes the service.
	every = time.Second
	// maxWait caps the doubling wait between attempts.
	maxWait = 15 * time.Minute
	// firstWait is a subscription's first wait after a failure.
	firstWait = 5 * time.Second
	// PauseAfter is how long a subscription may fail before it is paused.
	PauseAfter = 24 * time.Hour
	// waitLibrary is how long a notifier waits for its event's library
	// copies before it looks again (it does not count as an attempt).
	waitLibrary = 2 * time.Second
)

// Service runs deliveries.
type Service struct {
	st        Store
	files     pipeline.Storage
	pubs      map[string]config.Publisher
	libraries map[string]*publish.Library
	notifiers map[string]publish.Notifier
	hooks     *Guard // API-made subscriptions go through it
	owner     string // this server, as the outbox's leases name it
	log       *slog.Logger
	now       func() time.Time
	wake      chan struct{}
}

// New returns the service for the configured publishers; webhooks of
// subscriptions go out through guard's client.
func New(st Store, owner string, files pipeline.Storage, pubs map[string]config.Publisher, guard *Guard, log *slog.Logger) (*Service, error) {
	s := &Service{st: st, owner: owner, files: files, pubs: pubs, libraries: map[string]*publish.Library{}, notifiers: map[string]publish.Notifier{},
		hooks: guard, log: log.With("component", "deliver"), now: time.Now, wake: make(chan struct{}, 1)}
	for name, pc := range pubs {
		if pc.Type == config.PublishLibrary {
			lib, err := publish.NewLibrary(pc)
			if err != nil {
				return nil, err
			}
			s.libraries[name] = lib
			continue
		}
		s.notifiers[name] = Notifier(pc, pubs)
	}
	return s, nil
}

// Notifier builds the notifier of a plex, jellyfin or webhook publisher.
func Notifier(pc config.Publisher, pubs map[string]config.Publisher) publish.Notifier {
	ms := publish.MediaServer{Name: pc.Name, URL: pc.URL, Token: pc.Token, Library: pc.Library,
		Root: pubs[pc.Library].Path, ServerRoot: pc.LibraryPath, Confirm: time.Duration(pc.ConfirmTimeout)}
	switch pc.Type {
	case config.PublishPlex:
		return &publish.Plex{MediaServer: ms}
	case config.PublishJellyfin:
		return &publish.Jellyfin{MediaServer: ms}
	}
	return &publish.Webhook{URL: pc.URL, Secret: pc.Secret, Agent: "herd"}
}

// Kick wakes the service: a job changed state.
func (s *Service) Kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends; deliveries in flight end with it and are
// tried again, not counted, after a restart.
func (s *Service) Run(ctx context.Context) error {
	if n, err := s.st.ReleaseOutbound(ctx, s.owner); err != nil {
		return err
	} else if n > 0 {
		s.log.Warn("deliveries were in flight when the server stopped; trying them again", "deliveries", n)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for s.round(ctx) == batch && ctx.Err() == nil {
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.wake:
		}
	}
}

// round runs the due deliveries of one claim and says how many there were.
func (s *Service) round(ctx context.Context) int {
	due, err := s.st.ClaimOutbound(ctx, s.owner, s.now(), Lease, batch)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("read the deliveries due", "err", err)
		}
		return 0
	}
	// Library copies first: a notifier of the same event waits for them.
	first, then := []store.Outbound{}, []store.Outbound{}
	for _, o := range due {
		if !o.Subscription && s.libraries[o.Target] != nil {
			first = append(first, o)
		} else {
			then = append(then, o)
		}
	}
	for _, group := range [][]store.Outbound{first, then} {
		var wg sync.WaitGroup
		for _, o := range group {
			wg.Go(func() {
				next, attempt := s.deliver(ctx, o)
				if ctx.Err() != nil {
					return // its lease is given back at the next start, or runs out
				}
				if err := s.st.SettleOutbound(context.WithoutCancel(ctx), o.ID, attempt, next); err != nil {
					s.log.Error("settle a delivery", "job_id", o.JobID, "target", o.Target, "err", err)
				}
			})
		}
		wg.Wait()
	}
	return len(due)
}

// deliver tries o once; it returns when to try again (zero: never) and
// the attempts made.
func (s *Service) deliver(ctx context.Context, o store.Outbound) (time.Time, int) {
	j, err := s.st.GetJob(ctx, o.JobID)
	if errors.Is(err, job.ErrNotFound) {
		return time.Time{}, o.Attempt
	}
	if err != nil {
		return s.now().Add(firstWait), o.Attempt
	}
	if o.Subscription {
		return s.toSubscription(ctx, o, j)
	}
	return s.toPublisher(ctx, o, j)
}

// event is what a notifier or webhook is sent.
func (s *Service) event(ctx context.Context, o store.Outbound, j job.Job) publish.Event {
	view, _ := json.Marshal(jobview.View(j, nil))
	ev := publish.Event{ID: o.EventID, Type: o.Event, CreatedAt: o.CreatedAt, Job: view}
	if ds, err := s.st.Deliveries(ctx, j.ID); err == nil {
		for _, d := range ds {
			if d.Type == config.PublishLibrary && d.OK && d.Event == job.EventSucceeded {
				if ev.Files == nil {
					ev.Files = map[string]string{}
				}
				ev.Files[d.Publisher] = d.Detail
			}
		}
	}
	return ev
}

func (s *Service) record(ctx context.Context, d store.Delivery) {
	d.At = s.now()
	if err := s.st.AddDelivery(context.WithoutCancel(ctx), d); err != nil {
		s.log.Error("record a delivery on its job", "job_id", d.JobID, "publisher", d.Publisher, "err", err)
	}
}

// toPublisher delivers to a configured publisher: a library copies the
// job's file on success; a notifier is told of the events it wants, after
// its event's library copies.
func (s *Service) toPublisher(ctx context.Context, o store.Outbound, j job.Job) (time.Time, int) {
	pc, ok := s.pubs[o.Target]
	if !ok {
		s.record(ctx, store.Delivery{JobID: j.ID, Publisher: o.Target, Type: "unknown", Event: o.Event, Attempt: o.Attempt + 1, Final: true,
			Detail: "no publisher of this name is configured any more; not delivered"})
		return time.Time{}, o.Attempt + 1
	}
	attempt := o.Attempt + 1
	var detail string
	var err error
	if lib := s.libraries[o.Target]; lib != nil {
		if o.Event != job.EventSucceeded {
			return time.Time{}, o.Attempt
		}
		detail, err = s.toLibrary(ctx, lib, j)
		if err == nil {
			s.log.Info("published into a library", "job_id", j.ID, "publisher", o.Target, "path", detail)
		}
	} else {
		n := s.notifiers[o.Target]
		if !n.Wants(o.Event) {
			return time.Time{}, o.Attempt
		}
		if o.Event == job.EventSucceeded && s.librariesPending(ctx, o) {
			return s.now().Add(waitLibrary), o.Attempt
		}
		detail, err = n.Notify(ctx, s.event(ctx, o, j))
	}
	if err != nil && ctx.Err() != nil {
		return time.Time{}, o.Attempt
	}
	d := store.Delivery{JobID: j.ID, Publisher: o.Target, Type: pc.Type, Event: o.Event, Attempt: attempt, OK: err == nil, Final: true, Detail: detail}
	next := time.Time{}
	if err != nil {
		d.Detail = err.Error()
		attempts := pc.Attempts
		switch {
		case publish.IsPermanent(err):
			d.Detail += "; not retried"
		case pc.Type != config.PublishLibrary && attempt >= attempts:
			d.Detail += fmt.Sprintf("; gave up after %d attempts", attempt)
		default: // a library copy is tried until it is made: it is the job's result
			d.Final = false
			wait := backoff.Delay(time.Duration(pc.RetryAfter), maxWait, attempt)
			next = s.now().Add(wait)
			d.Detail += fmt.Sprintf("; next try in %s", wait.Round(time.Second/10))
		}
		s.log.Warn("a delivery failed", "job_id", j.ID, "publisher", o.Target, "attempt", attempt, "err", d.Detail)
	}
	s.record(ctx, d)
	return next, attempt
}

// librariesPending reports whether o's event (a success: libraries copy
// nothing else) still has library copies to make, which its notifier waits for (a media server is told to scan the
// file once it is there).
func (s *Service) librariesPending(ctx context.Context, o store.Outbound) bool {
	pending, err := s.st.PendingOutbound(ctx, o.EventID)
	if err != nil {
		return false
	}
	for _, p := range pending {
		if p.ID != o.ID && !p.Subscription && s.libraries[p.Target] != nil {
			return true
		}
	}
	return false
}

// toLibrary copies the job's MP4 or MKV into a library, named from the
// source's name.
func (s *Service) toLibrary(ctx context.Context, lib *publish.Library, j job.Job) (string, error) {
	var outs []pipeline.Output
	if err := json.Unmarshal(j.Outputs, &outs); err != nil {
		return "", fmt.Errorf("read the job's outputs: %w", err)
	}
	for _, out := range outs {
		if out.Kind != "mp4" && out.Kind != "mkv" {
			continue
		}
		f, err := s.files.Open(ctx, pipeline.OutputsKey(j.ID)+"/"+out.Path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		return lib.Put(ctx, publish.LibraryPath(lib.Kind, j.Source.Name, filepath.Ext(out.Path)), f)
	}
	return "", job.Permanent("not_delivered", errors.New("the job has no MP4 or MKV output to put in a library"))
}

// toSubscription sends a subscription its event, signed with its secret.
// A subscription that has failed for PauseAfter is paused with a note.
func (s *Service) toSubscription(ctx context.Context, o store.Outbound, j job.Job) (time.Time, int) {
	sub, err := s.st.GetSubscription(ctx, o.Target)
	if errors.Is(err, job.ErrNotFound) {
		return time.Time{}, o.Attempt
	}
	if err != nil {
		return s.now().Add(firstWait), o.Attempt
	}
	if sub.PausedAt != nil {
		return time.Time{}, o.Attempt
	}
	hook := &publish.Webhook{URL: sub.URL, Secret: sub.Secret, Agent: "herd"}
	if sub.Origin != "config" {
		hook.Client = s.hooks.Client(30 * time.Second)
	}
	attempt := o.Attempt + 1
	detail, err := hook.Notify(ctx, s.event(ctx, o, j))
	if err != nil && ctx.Err() != nil {
		return time.Time{}, o.Attempt
	}
	d := store.Delivery{JobID: j.ID, Publisher: sub.Name, Type: "subscription", Event: o.Event, Attempt: attempt, OK: err == nil, Final: true, Detail: detail}
	now := s.now()
	next := time.Time{}
	if err == nil && sub.FailingSince != nil {
		s.health(ctx, sub.ID, nil, nil, "")
	}
	if err != nil {
		d.Detail = err.Error()
		since := now
		if sub.FailingSince != nil {
			since = *sub.FailingSince
		}
		switch {
		case now.Sub(since) >= PauseAfter:
			note := fmt.Sprintf("paused at %s: every delivery since %s failed (last: %s); resume it once the receiver works",
				now.UTC().Format(time.RFC3339), since.UTC().Format(time.RFC3339), d.Detail)
			s.health(ctx, sub.ID, &since, &now, note)
			d.Detail += "; the subscription is paused"
			s.log.Warn("a subscription was paused", "subscription", sub.ID, "since", since)
		case publish.IsPermanent(err) || errors.Is(err, ErrRefused):
			d.Detail += "; not retried"
			s.health(ctx, sub.ID, &since, nil, "")
		default:
			d.Final = false
			wait := backoff.Delay(firstWait, maxWait, attempt)
			next = now.Add(wait)
			d.Detail += fmt.Sprintf("; next try in %s", wait.Round(time.Second/10))
			if sub.FailingSince == nil {
				s.health(ctx, sub.ID, &since, nil, "")
			}
		}
		s.log.Warn("a subscription's delivery failed", "job_id", j.ID, "subscription", sub.ID, "attempt", attempt, "err", d.Detail)
	}
	s.record(ctx, d)
	return next, attempt
}

func (s *Service) health(ctx context.Context, id string, since, paused *time.Time, note string) {
	if err := s.st.SubscriptionHealth(context.WithoutCancel(ctx), id, since, paused, note); err != nil && !errors.Is(err, job.ErrNotFound) {
		s.log.Error("record a subscription's health", "subscription", id, "err", err)
	}
}
