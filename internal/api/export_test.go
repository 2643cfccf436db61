package api

import (
	"context"
	"time"
)

// SweepUploads runs one pass of TendUploads.
func (s *Server) SweepUploads(ctx context.Context) { s.sweepUploads(ctx) }

// SweepUploadsAt runs one pass of TendUploads as at now.
func (s *Server) SweepUploadsAt(ctx context.Context, now time.Time) { s.sweepUploadsAt(ctx, now) }

// Access names who may call a route: public, admin or worker.
func (r Route) Access() string { return [...]string{"public", "admin", "worker", "signed"}[r.access] }

// SweepScratch runs one pass of TendScratch.
func (s *Server) SweepScratch(ctx context.Context) { s.workerAPI.sweepScratch(ctx, scratchIdle) }

// SetRecheck sets how often event streams check their key again (before serving).
func (s *Server) SetRecheck(d time.Duration) { s.recheck = d }

// SweepKeysOnce runs one pass of SweepKeys.
func (s *Server) SweepKeysOnce(ctx context.Context) { s.sweepKeys(ctx) }

// SetLiveEvery sets how often live views' pollers read the store (before serving).
func (s *Server) SetLiveEvery(d time.Duration) { s.live.every = d }

// LivePollers is how many live-view pollers run now.
func (s *Server) LivePollers() int { return s.live.pollers() }
