package api

import "context"

// SweepUploads runs one pass of TendUploads.
func (s *Server) SweepUploads(ctx context.Context) { s.sweepUploads(ctx) }
