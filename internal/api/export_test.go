package api

import (
	"context"
	"time"
)

// SweepUploads runs one pass of TendUploads.
func (s *Server) SweepUploads(ctx context.Context) { s.sweepUploads(ctx) }

// Access names who may call a route: public, admin or worker.
func (r Route) Access() string { return [...]string{"public", "admin", "worker"}[r.access] }

// SweepScratch runs one pass of TendScratch.
func (s *Server) SweepScratch(ctx context.Context) { s.workerAPI.sweepScratch(ctx, scratchIdle) }

// SetRecheck sets how often event streams check their key again (before serving).
func (s *Server) SetRecheck(d time.Duration) { s.recheck = d }

// SweepKeysOnce runs one pass of SweepKeys.
func (s *Server) SweepKeysOnce(ctx context.Context) { s.sweepKeys(ctx) }
