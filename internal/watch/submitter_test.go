package watch

import (
	"cmp"
	"context"
	"os"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/safefs"
)

// recordingSubmitter queues nothing: it reads each file it is handed, as
// ingest does, and remembers what it read under the name it was given.
type recordingSubmitter struct {
	mu  sync.Mutex
	got map[string][]string // name -> contents read, one per import
}

func (s *recordingSubmitter) Profile(name string) (*profile.Profile, error) {
	return &profile.Profile{Name: name, Version: 1, Format: "mp4"}, nil
}

func (s *recordingSubmitter) ImportFile(_ context.Context, root *os.Root, rel, name string, _ *profile.Profile, _ ingest.Options, id string) (job.Job, bool, error) {
	f, err := safefs.Open(root, rel)
	if err != nil {
		return job.Job{}, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return job.Job{}, false, err
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return job.Job{}, false, err
	}
	return s.record(id, name, b), true, nil
}

func (s *recordingSubmitter) record(id, name string, b []byte) job.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == nil {
		s.got = map[string][]string{}
	}
	s.got[name] = append(s.got[name], string(b))
	return job.Job{ID: cmp.Or(id, job.NewID("j")), State: job.Queued, CreatedAt: time.Now().UTC()}
}

func (s *recordingSubmitter) read() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for k, v := range s.got {
		out[k] = append([]string(nil), v...)
	}
	return out
}
