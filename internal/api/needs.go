package api

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/store"
)

// UnmetNeed is a capability that waiting tasks need and no worker has
// proven: without one, those tasks wait forever.
type UnmetNeed = jobview.UnmetNeed

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

// encoderFor is ffmpeg's encoder whose trial encode proves capability c
// ("" for a capability no encoder proves: a library's, VMAF).
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
	return ""
}

// needOf says what a worker with capability c can do (to finish "waiting
// for a worker that …"), and how to start one.
func needOf(c string) (can, hint string) {
	if c == job.CapVMAF {
		return "measures VMAF (its profile sets a VMAF floor)", "start a worker whose ffmpeg has libvmaf, or name one that has with --measure-ffmpeg"
	}
	if lib, ok := job.LibraryOf(c); ok {
		return "reads library " + lib + " (its health checks read the files in place)",
			"start a worker where the library's folder is mounted: herd worker --library " + lib + "=PATH"
	}
	return fmt.Sprintf("can encode with %s (the %s encoder), proven by a trial encode", c, encoderFor(c)),
		"start a worker whose ffmpeg has it (herd worker --check lists what a worker proves)"
}

// waitingNote says why a job's tasks cannot run: what they need that no
// worker has, and what to do about it. Empty when nothing is missing.
func waitingNote(needs []string) string {
	var parts []string
	for _, n := range needs {
		can, hint := needOf(n)
		parts = append(parts, "waiting for a worker that "+can+": no worker has it. To run it, "+hint+"; or cancel the job")
	}
	return strings.Join(parts, ". ")
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
			if j.Source.Library == "" { // a health check has no profile; its task says
				p, err := s.versions.At(ctx, j.Profile, j.ProfileVersion)
				if err != nil {
					return nil, err
				}
				if p != nil && !slices.ContainsFunc(append(pipeline.TaskNeeds(p), pipeline.VerifyNeeds(p)...), func(n string) bool { return !proven[n] }) {
					continue // a profile that changed since asked no more: the tasks say
				}
			}
			tasks, err := s.st.Tasks(ctx, j.ID)
			if err != nil {
				return nil, err
			}
			for _, n := range unmet(tasks, proven) {
				u, ok := byCap[n]
				if !ok {
					_, hint := needOf(n)
					u = &UnmetNeed{Capability: n, Encoder: encoderFor(n), Hint: hint, Jobs: []string{}}
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
