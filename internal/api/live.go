package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/store"
)

// The live views: what the web pages show, as JSON (GET) and as a stream of
// Server-Sent Events that sends a view again whenever it changes. The stream
// reads the store, not in-process signals, so it shows what every replica
// and worker did; it sends nothing while nothing changes. One poller per
// view (liveHub) reads the store for every stream open on that view.

// liveEvery is how often a view's poller looks for changes.
const liveEvery = time.Second

// sessionRecheck is how often a stream checks that the key or session it
// was opened with still lives (Server.recheck; tests shorten it).
const sessionRecheck = 30 * time.Second

// keepAlive is how often an idle stream sends a comment, so proxies keep it open.
const keepAlive = 15 * time.Second

// Dashboard is what the front page shows.
type Dashboard struct {
	Queue          protocol.QueueStats `json:"queue"`
	JobsByState    map[job.State]int   `json:"jobs_by_state"`
	Hours          []store.HourCount   `json:"hours"` // the last 24 clock hours, oldest first, zeros included
	EncodeSpeed    float64             `json:"encode_speed"`
	Workers        int                 `json:"workers"` // registered workers not revoked
	RecentFailures []jobview.JobView   `json:"recent_failures"`
}

// RunningTask is a task being run now, as the workers page shows it.
type RunningTask struct {
	ID        string     `json:"id"`
	JobID     string     `json:"job_id"`
	JobName   string     `json:"job_name"`
	Kind      job.Kind   `json:"kind"`
	Attempt   int        `json:"attempt"`
	Progress  float64    `json:"progress"`
	Speed     float64    `json:"speed,omitempty"`
	Worker    string     `json:"worker"`
	StartedAt *time.Time `json:"started_at,omitempty"`
}

// WorkerView is a registered worker with what it runs now.
type WorkerView struct {
	store.Worker
	Tasks   []string      `json:"running_tasks"`
	Running []RunningTask `json:"running"`
	// Outdated says, for a worker that last spoke an older protocol
	// version, that it is leased only finalize tasks until it is upgraded.
	Outdated string `json:"outdated,omitempty"`
}

// Workers is the workers page: registered workers, and tasks run by
// executors that do not register (a server's in-process workers, Kubernetes Jobs).
type Workers struct {
	Workers []WorkerView  `json:"workers"`
	Other   []RunningTask `json:"other_running"`
	// Unmet are capabilities that waiting jobs need and no worker has
	// proven (an AV1 ladder where no ffmpeg has libsvtav1).
	Unmet []UnmetNeed `json:"unmet_needs"`
}

func (s *Server) dashboard(ctx context.Context) (any, error) {
	st, err := s.st.Stats(ctx)
	if err != nil {
		return nil, err
	}
	d := Dashboard{Queue: queueStats(st), JobsByState: st.JobsByState, RecentFailures: []jobview.JobView{}}
	now := time.Now().UTC()
	first := now.Truncate(time.Hour).Add(-23 * time.Hour)
	got, err := s.st.Throughput(ctx, first)
	if err != nil {
		return nil, err
	}
	for i := range 24 {
		h := store.HourCount{Hour: first.Add(time.Duration(i) * time.Hour)}
		if k := slices.IndexFunc(got, func(c store.HourCount) bool { return c.Hour.Equal(h.Hour) }); k >= 0 {
			h = got[k]
		}
		d.Hours = append(d.Hours, h)
	}
	running, err := s.st.RunningTasks(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range running {
		if t.Kind.Encodes() {
			d.EncodeSpeed += t.Speed
		}
	}
	ws, err := s.st.ListWorkers(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if w.State != store.WorkerRevoked {
			d.Workers++
		}
	}
	failed, _, err := s.st.ListJobs(ctx, store.ListOptions{State: job.Failed, Limit: 5})
	if err != nil {
		return nil, err
	}
	for _, j := range failed {
		d.RecentFailures = append(d.RecentFailures, jobview.View(j, nil))
	}
	return d, nil
}

func (s *Server) workers(ctx context.Context) (any, error) {
	ws, err := s.st.ListWorkers(ctx)
	if err != nil {
		return nil, err
	}
	running, err := s.st.RunningTasks(ctx)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	view := func(t job.Task) (RunningTask, error) {
		name, ok := names[t.JobID]
		if !ok {
			j, err := s.st.GetJob(ctx, t.JobID)
			if err != nil && !errors.Is(err, job.ErrNotFound) {
				return RunningTask{}, err
			}
			name = j.Source.Name
			names[t.JobID] = name
		}
		return RunningTask{ID: t.ID, JobID: t.JobID, JobName: name, Kind: t.Kind, Attempt: t.Attempt, Progress: t.Progress,
			Speed: t.Speed, Worker: t.Worker, StartedAt: t.StartedAt}, nil
	}
	out := Workers{Workers: make([]WorkerView, 0, len(ws)), Other: []RunningTask{}}
	if out.Unmet, err = s.unmetNeeds(ctx); err != nil {
		return nil, err
	}
	mine := map[string]bool{}
	for _, w := range ws {
		v := WorkerView{Worker: w, Tasks: []string{}, Running: []RunningTask{}, Outdated: protocol.Outdated(w.Version)}
		if v.Caps == nil {
			v.Caps = []string{}
		}
		for _, t := range running {
			if strings.HasPrefix(t.LeaseOwner, store.WorkerOwnerPrefix(w.Name)) {
				rt, err := view(t)
				if err != nil {
					return nil, err
				}
				v.Tasks, v.Running = append(v.Tasks, t.ID), append(v.Running, rt)
				mine[t.ID] = true
			}
		}
		out.Workers = append(out.Workers, v)
	}
	for _, t := range running {
		if !mine[t.ID] {
			rt, err := view(t)
			if err != nil {
				return nil, err
			}
			out.Other = append(out.Other, rt)
		}
	}
	return out, nil
}

// JobPage is one job with its tasks and deliveries: what GET /api/v1/jobs/{id}
// answers and the job view's stream sends. The web UI renders a job
// page's first paint from it, before its script opens that stream.
func (s *Server) JobPage(ctx context.Context, id string) (jobview.JobView, error) {
	j, err := s.st.GetJob(ctx, id)
	if err != nil {
		return jobview.JobView{}, err
	}
	tasks, err := s.st.Tasks(ctx, id)
	if err != nil {
		return jobview.JobView{}, err
	}
	v := jobview.View(j, tasks)
	// Only a job that has not ended asks the workers; a failure to read
	// them leaves the note out rather than the page.
	if v.Waiting, err = s.jobWaiting(ctx, j, tasks); err != nil {
		s.log.Warn("could not tell whether a job waits for an encoder no worker has", "job_id", id, "err", err)
	}
	v.Deliveries, err = s.st.Deliveries(ctx, id)
	return v, err
}

// jobList is a page of jobs, filtered by the request's state and profile.
func (s *Server) jobList(ctx context.Context, opt store.ListOptions) (any, error) {
	jobs, next, err := s.st.ListJobs(ctx, opt)
	if err != nil {
		return nil, err
	}
	out := make([]jobview.JobView, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, jobview.View(j, nil))
	}
	return map[string]any{"jobs": out, "next": next}, nil
}

func (s *Server) getDashboard(w http.ResponseWriter, r *http.Request) {
	s.serveView(w, r, s.dashboard)
}

func (s *Server) listWorkers(w http.ResponseWriter, r *http.Request) {
	s.serveView(w, r, s.workers)
}

func (s *Server) setWorkerState(state string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := s.st.SetWorkerState(r.Context(), name, state, time.Now()); err != nil {
			if errors.Is(err, job.ErrNotFound) {
				writeError(w, http.StatusNotFound, "not_found", "no such worker")
				return
			}
			s.storeError(w, r, err)
			return
		}
		s.kick.Kick()
		wk, err := s.st.GetWorker(r.Context(), name)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, wk)
	}
}

func (s *Server) serveView(w http.ResponseWriter, r *http.Request, view func(context.Context) (any, error)) {
	v, err := view(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// listOptions reads state, profile, limit and cursor from the query.
func listOptions(r *http.Request) (store.ListOptions, error) {
	q := r.URL.Query()
	opt := store.ListOptions{Profile: q.Get("profile"), Cursor: q.Get("cursor")}
	if v := q.Get("state"); v != "" {
		st, err := job.ParseState(v)
		if err != nil {
			return opt, err
		}
		opt.State = st
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return opt, errors.New("limit must be a number from 1 to 500")
		}
		opt.Limit = n
	}
	return opt, nil
}

// events streams one view as Server-Sent Events: ?view=jobs (with the
// job-list filters), job (&id=), dashboard, workers or campaigns. Each event's data is
// the view's JSON, sent at once and then whenever it changes.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var view liveView
	name := q.Get("view")
	var key string // which poller serves this stream: one per view and query
	switch name {
	case "", "jobs":
		opt, err := listOptions(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		name, view = "jobs", func(ctx context.Context) (any, error) { return s.jobList(ctx, opt) }
		key = "jobs?" + url.Values{"state": {string(opt.State)}, "profile": {opt.Profile}, "cursor": {opt.Cursor}, "limit": {strconv.Itoa(opt.Limit)}}.Encode()
	case "job":
		id := q.Get("id")
		if _, err := s.st.GetJob(r.Context(), id); err != nil {
			s.storeError(w, r, err)
			return
		}
		view, key = func(ctx context.Context) (any, error) { return s.JobPage(ctx, id) }, "job?id="+url.QueryEscape(id)
	case "dashboard":
		view, key = s.dashboard, name
	case "workers":
		view, key = s.workers, name
	case "campaigns":
		view, key = s.campaignList, name
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "view must be jobs, job, dashboard, workers or campaigns")
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not hold events back
	w.WriteHeader(http.StatusOK)
	// send writes and flushes; false once the client is gone. A client that
	// stops reading must not hold the stream (or shutdown) forever.
	send := func(msg string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := io.WriteString(w, msg) //nolint:gosec // G705: a text/event-stream of server-made events, never rendered as HTML
		return err == nil && rc.Flush() == nil
	}
	if !send("retry: 2000\n\n") {
		return
	}

	// One poller per view feeds every stream open on it (liveHub); this
	// stream only writes what it is handed.
	sub, leave := s.live.subscribe(key, view)
	defer leave()
	// A stream ends with the key or session it was made with (revoked,
	// signed out elsewhere, or expired); the browser's reconnect then meets
	// the sign-in check, a client's the key check.
	recheck := time.NewTicker(s.recheck)
	defer recheck.Stop()
	idle := time.NewTicker(keepAlive)
	defer idle.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-recheck.C:
			if !s.stillValid(r.Context(), r) {
				return
			}
		case ev := <-sub.ch:
			if ev.gone {
				send("event: gone\ndata: {}\n\n")
				return
			}
			if !send("event: " + name + "\ndata: " + string(ev.data) + "\n\n") {
				return
			}
			idle.Reset(keepAlive)
		case <-idle.C:
			if !send(": keep-alive\n\n") {
				return
			}
		}
	}
}
