// Package deliver delivers every job's events: to the publishers a
// submitter named (libraries, Plex, Jellyfin, webhooks from the
// configuration's publishers:) and to webhook subscriptions. It reads the
// store's outbox, where a job's events are written in the transaction that
// changes the job, so an event outlives a server killed before it was
// sent; each delivery is leased like a task, tried again with backoff,
// and every attempt is recorded on its job.
package deliver

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
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
	RenewOutbound(ctx context.Context, id, owner string, until time.Time) (bool, error)
	SettleOutbound(ctx context.Context, id, owner string, attempt int, next time.Time) (bool, error)
	PruneOutbound(ctx context.Context, before time.Time) (int, error)
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
	// every is how often the outbox is read.
	every = time.Second
	// maxWait caps the doubling wait between attempts.
	maxWait = 15 * time.Minute
	// firstWait is a subscription's first wait after a failure.
	firstWait = 5 * time.Second
	// PauseAfter is how long a subscription may fail before it is paused.
	PauseAfter = 24 * time.Hour
	// waitLibrary is how long a notifier waits for its event's library
	// copies before it looks again (it does not count as an attempt).
	waitLibrary = time.Second
	// libraryAttempts bounds a library copy's attempts: at the longest
	// wait, about a day of them.
	libraryAttempts = 100
	// Keep is how long delivered events stay in the outbox (each attempt
	// stays on its job).
	Keep = 7 * 24 * time.Hour
	// pruneEvery is how often ended deliveries older than Keep are deleted.
	pruneEvery = time.Hour
)

// Service runs deliveries.
type Service struct {
	st        Store
	files     pipeline.Storage
	pubs      map[string]config.Publisher
	libraries map[string]*publish.Library
	notifiers map[string]publish.Notifier
	hooks     *http.Client // API-made subscriptions go through it (Guard.Client)
	owner     string       // this server, as the outbox's leases name it
	log       *slog.Logger
	now       func() time.Time
}

// New returns the service for the configured publishers; webhooks of
// subscriptions go out through guard's client. libraries are the folders
// of the configuration's libraries (libraries:), by name, which media
// server publishers may index.
func New(st Store, owner string, files pipeline.Storage, pubs map[string]config.Publisher, libraries map[string]string, guard *Guard, log *slog.Logger) (*Service, error) {
	s := &Service{st: st, owner: owner, files: files, pubs: pubs, libraries: map[string]*publish.Library{}, notifiers: map[string]publish.Notifier{},
		hooks: guard.Client(30 * time.Second), log: log.With("component", "deliver"), now: time.Now}
	for name, pc := range pubs {
		if pc.Type == config.PublishLibrary {
			lib, err := publish.NewLibrary(pc)
			if err != nil {
				return nil, err
			}
			s.libraries[name] = lib
			continue
		}
		s.notifiers[name] = notifier(pc, pubs, libraries)
	}
	return s, nil
}

// notifier builds the notifier of a plex, jellyfin or webhook publisher.
// A media server indexes a library publisher's folder, or a library's.
func notifier(pc config.Publisher, pubs map[string]config.Publisher, libraries map[string]string) publish.Notifier {
	if pc.Type == config.PublishPlex || pc.Type == config.PublishJellyfin {
		root := libraries[pc.Library]
		if lib, ok := pubs[pc.Library]; ok && lib.Type == config.PublishLibrary {
			root = lib.Path
		}
		return publish.NewMediaServer(pc, root)
	}
	events := pc.Events
	if len(events) == 0 {
		events = config.DefaultWebhookEvents
	}
	return &publish.Webhook{URL: pc.URL, Secret: pc.Secret, Agent: "herd", Events: events}
}

// Run delivers until ctx ends. Up to batch deliveries run at once, each
// as soon as a slot is free, so one slow receiver holds up only itself;
// one cut off by the end of ctx is tried again, uncounted, at the next
// start (this server gives back its leases then) or by another server
// once its lease runs out.
func (s *Service) Run(ctx context.Context) error {
	if n, err := s.st.ReleaseOutbound(ctx, s.owner); err != nil {
		return err
	} else if n > 0 {
		s.log.Warn("deliveries were in flight when the server stopped; trying them again", "deliveries", n)
	}
	for name, lib := range s.libraries {
		// Not waited for: a hung network mount must hold up only its own
		// copies, not every delivery.
		go func() {
			if n, err := lib.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("sweep a library's unfinished copies", "publisher", name, "err", err)
			} else if n > 0 {
				s.log.Info("removed unfinished library copies a stopped server left", "publisher", name, "files", n)
			}
		}()
	}
	slots := make(chan struct{}, batch)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(every)
	defer t.Stop()
	pruned := time.Time{}
	for {
		if free := batch - len(slots); free > 0 {
			for _, o := range s.claim(ctx, free) {
				slots <- struct{}{}
				wg.Go(func() {
					defer func() { <-slots }()
					s.run(ctx, o)
				})
			}
		}
		if now := s.now(); now.Sub(pruned) > pruneEvery {
			pruned = now
			if n, err := s.st.PruneOutbound(ctx, now.Add(-Keep)); err != nil && ctx.Err() == nil {
				s.log.Warn("prune delivered events", "err", err)
			} else if n > 0 {
				s.log.Debug("pruned delivered events", "rows", n)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// claim leases up to n due deliveries.
func (s *Service) claim(ctx context.Context, n int) []store.Outbound {
	due, err := s.st.ClaimOutbound(ctx, s.owner, s.now(), Lease, n)
	if err != nil && ctx.Err() == nil {
		s.log.Error("read the deliveries due", "err", err)
	}
	return due
}

// round runs one claim's deliveries to the end, library copies first: the
// tests' way of running the service one step at a time. It says how many
// there were.
func (s *Service) round(ctx context.Context) int {
	due := s.claim(ctx, batch)
	slices.SortStableFunc(due, func(a, b store.Outbound) int {
		return cmp.Compare(s.isLibrary(b), s.isLibrary(a))
	})
	libs := 0
	for libs < len(due) && s.isLibrary(due[libs]) == 1 {
		libs++
	}
	for _, group := range [][]store.Outbound{due[:libs], due[libs:]} {
		var wg sync.WaitGroup
		for _, o := range group {
			wg.Go(func() { s.run(ctx, o) })
		}
		wg.Wait()
	}
	return len(due)
}

func (s *Service) isLibrary(o store.Outbound) int {
	if !o.Subscription && s.libraries[o.Target] != nil {
		return 1
	}
	return 0
}

// run makes one delivery, keeping its lease while it runs, and settles it.
func (s *Service) run(ctx context.Context, o store.Outbound) {
	renewCtx, stop := context.WithCancel(ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-t.C:
				if ok, err := s.st.RenewOutbound(renewCtx, o.ID, s.owner, s.now().Add(Lease)); err == nil && !ok {
					s.log.Warn("lost the lease of a delivery in flight", "job_id", o.JobID, "target", o.Target)
				}
			}
		}
	}()
	next, attempt := s.deliver(ctx, o)
	stop()
	<-renewed
	if attempt == interrupted {
		return // uncounted: tried again after the restart
	}
	ok, err := s.st.SettleOutbound(context.WithoutCancel(ctx), o.ID, s.owner, attempt, next)
	switch {
	case err != nil:
		s.log.Error("settle a delivery", "job_id", o.JobID, "target", o.Target, "err", err)
	case !ok:
		s.log.Warn("a delivery's lease passed to another server before it ended; its outcome stays theirs", "job_id", o.JobID, "target", o.Target)
	}
}

// interrupted is deliver's attempt count for a delivery the end of its
// context cut off before it had an outcome.
const interrupted = -1

// deliver tries o once; it returns when to try again (zero: never) and
// the attempts made.
func (s *Service) deliver(ctx context.Context, o store.Outbound) (time.Time, int) {
	j, err := s.st.GetJob(ctx, o.JobID)
	if errors.Is(err, job.ErrNotFound) {
		return time.Time{}, o.Attempt
	}
	if err != nil {
		if ctx.Err() != nil {
			return time.Time{}, interrupted
		}
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
	ev := publish.Event{ID: o.EventID, Type: o.Event, CreatedAt: o.CreatedAt, Job: view, Data: o.Data, Watch: j.Watch}
	var notice store.FilesNotice
	if !o.Subscription && len(o.Data) > 0 && json.Unmarshal(o.Data, &notice) == nil && len(notice.Files) > 0 {
		// A notice of files written outside a publisher (a library's
		// replacement): they are the event's files.
		ev.Files, ev.Data = notice.Files, nil
		return ev
	}
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
		return time.Time{}, interrupted
	}
	d := store.Delivery{JobID: j.ID, Publisher: o.Target, Type: pc.Type, Event: o.Event, Attempt: attempt, OK: err == nil, Final: true, Detail: detail}
	next := time.Time{}
	if err != nil {
		d.Detail = err.Error()
		attempts := pc.Attempts
		switch {
		case publish.IsPermanent(err):
			d.Detail += "; not retried"
		case pc.Type == config.PublishLibrary && attempt >= libraryAttempts, pc.Type != config.PublishLibrary && attempt >= attempts:
			d.Detail += fmt.Sprintf("; gave up after %d attempts", attempt)
		default:
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
		hook.Client = s.hooks
	}
	attempt := o.Attempt + 1
	detail, err := hook.Notify(ctx, s.event(ctx, o, j))
	if err != nil && ctx.Err() != nil {
		return time.Time{}, interrupted
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
		case publish.IsPermanent(err) || errors.Is(err, ErrRefused):
			d.Detail += "; not retried" // about this event: the subscription is not failing for it
		case now.Sub(since) >= PauseAfter:
			note := fmt.Sprintf("paused at %s: every delivery since %s failed (last: %s); resume it once the receiver works",
				now.UTC().Format(time.RFC3339), since.UTC().Format(time.RFC3339), d.Detail)
			s.health(ctx, sub.ID, &since, &now, note)
			d.Detail += "; the subscription is paused"
			s.log.Warn("a subscription was paused", "subscription", sub.ID, "since", since)
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
