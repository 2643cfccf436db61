package live

import "time"

// ListFor has h keep a job's listing for ttl (0: read the store for every
// request, as tests that change the store behind the hub's back need),
// on the clock now.
func ListFor(h *Hub, ttl time.Duration, now func() time.Time) {
	h.ttl, h.now = ttl, now
}
