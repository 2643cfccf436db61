package api

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/store"
)

// UnmetNeed is a capability that waiting tasks need and no worker has
// proven: without one, those tasks wait forever.
type UnmetNeed struct {
	Capability string   `json:"capability"` // e.g. av1, nvenc:hevc
	Encoder    string   `json:"encoder"`    // ffmpeg's encoder that proves it, e.g. libsvtav1
	Jobs       []string `json:"jobs"`       // ids of waiting jobs that need it (at most maxUnmetJobs)
}

// maxUnmetJobs bounds the waiting jobs checked and listed per state.
const maxUnmetJobs = 50

// aliveWithin is how recently a registered worker must have been heard
// from (a claim's long poll, or a heartbeat while it is busy, both far
// more often) for its capabilities to count: one that died without being
// drained proves nothing.
const aliveWithin = 10 * time.Minute

// proven is every capability a worker that takes new tasks has proven: the
// active registered workers' that are alive and speak the server's
// protocol (an older one only finalizes), and those of the executors that
// do not register (Deps.OtherCaps).
func (s *Server) proven(ctx context.Context) (map[string]bool, error) {
	ws, err := s.st.ListWorkers(ctx)
	if err != nil {
		return nil, err
	}
	caps := map[string]bool{}
	for _, c := range s.otherCaps {
		caps[c] = true
	}
	for _, w := range ws {
		if w.State == store.WorkerActive && w.LastSeen != nil && time.Since(*w.LastSeen) < aliveWithin && protocol.Outdated(w.Version) == "" {
			for _, c := range w.Caps {
				caps[c] = true
			}
		}
	}
	return caps, nil
}

// unmet lists the needs of tasks that still wait to run (pending or
// queued) which no proven capability meets, sorted.
func unmet(tasks []job.Task, proven map[string]bool) []string {
	var out []string
	for _, t := range tasks {
		if t.State != job.TaskPending && t.State != job.TaskQueued {
			continue
		}
		for _, n := range t.Needs {
			if n != "" && !proven[n] && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// encoderFor is ffmpeg's encoder whose trial encode proves capability c.
func encoderFor(c string) string {
	for _, e := range media.SoftwareEncoders() {
		if media.SoftwareCap(e.Codec) == c {
			return e.Encoder
		}
	}
	for _, e := range media.HWEncoders() {
		if media.HWCap(e.Family, e.Codec) == c {
			return e.Encoder
		}
	}
	return c
}

// waitingNote says why a job's tasks cannot run: what they need that no
// worker has, and what to do about it. Empty when nothing is missing.
func waitingNote(needs []string) string {
	if len(needs) == 0 {
		return ""
	}
	var parts []string
	for _, n := range needs {
		parts = append(parts, fmt.Sprintf("%s (the %s encoder)", n, encoderFor(n)))
	}
	return "waiting for a worker that can encode with " + strings.Join(parts, " and ") +
		": no worker has proven it by a trial encode. Start one whose ffmpeg has it (herd worker --check lists what a worker proves), or cancel the job"
}

// jobWaiting is the waiting note of a job that has not ended.
func (s *Server) jobWaiting(ctx context.Context, j job.Job, tasks []job.Task) (string, error) {
	if j.State != job.Queued && j.State != job.Running {
		return "", nil
	}
	proven, err := s.proven(ctx)
	if err != nil {
		return "", err
	}
	return waitingNote(unmet(tasks, proven)), nil
}

// unmetNeeds is what waiting jobs need that no worker has proven. Only
// jobs whose profile needs something unproven have their tasks read.
func (s *Server) unmetNeeds(ctx context.Context) ([]UnmetNeed, error) {
	proven, err := s.proven(ctx)
	if err != nil {
		return nil, err
	}
	byCap := map[string]*UnmetNeed{}
	var order []string
	for _, state := range []job.State{job.Queued, job.Running} {
		jobs, _, err := s.st.ListJobs(ctx, store.ListOptions{State: state, Limit: maxUnmetJobs})
		if err != nil {
			return nil, err
		}
		for _, j := range jobs {
			p, err := s.versions.At(ctx, j.Profile, j.ProfileVersion)
			if err != nil {
				return nil, err
			}
			if p != nil && !slices.ContainsFunc(pipeline.TaskNeeds(p), func(n string) bool { return !proven[n] }) {
				continue // a profile that changed since asked no more: the tasks say
			}
			tasks, err := s.st.Tasks(ctx, j.ID)
			if err != nil {
				return nil, err
			}
			for _, n := range unmet(tasks, proven) {
				u, ok := byCap[n]
				if !ok {
					u = &UnmetNeed{Capability: n, Encoder: encoderFor(n), Jobs: []string{}}
					byCap[n] = u
					order = append(order, n)
				}
				u.Jobs = append(u.Jobs, j.ID)
			}
		}
	}
	out := []UnmetNeed{}
	for _, n := range order {
		out = append(out, *byCap[n])
	}
	return out, nil
}
