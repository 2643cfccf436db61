package api

import "context"

// SweepUploads runs one pass of TendUploads.
func (s *Server) SweepUploads(ctx context.Context) { s.sweepUploads(ctx) }

// Access names who may call a route: public, admin or worker.
func (r Route) Access() string { return [...]string{"public", "admin", "worker"}[r.access] }

// SweepScratch runs one pass of TendScratch.
func (s *Server) SweepScratch(ctx context.Context) { s.sweepScratch(ctx, scratchIdle) }
