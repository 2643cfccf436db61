package api

import (
	"encoding/json"
	"io/fs"
	"maps"
	"net/http"
	"path/filepath"
	"sync"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/protocol"
)

// A worker key reaches only the work its lease holds: each task writes
// only its own steps and reads only the steps it is built from
// (pipeline.Writes, pipeline.Reads), and what it uploads is bounded by what
// that step can plausibly weigh.

// mayWrite answers a file route of a task that does not write step.
func mayWrite(w http.ResponseWriter, t job.Task, step string) bool {
	if !pipeline.Writes(t, step) {
		writeError(w, http.StatusConflict, "wrong_step", "a "+string(t.Kind)+" task does not write the "+step+" step")
		return false
	}
	return true
}

// mayRead answers a file route of a task that does not read step.
func mayRead(w http.ResponseWriter, t job.Task, step string) bool {
	if !pipeline.Reads(t, step) {
		writeError(w, http.StatusConflict, "wrong_step", "a "+string(t.Kind)+" task does not read the "+step+" step")
		return false
	}
	return true
}

// Plausible sizes of a step, from the job's plan and source.
const (
	stepSlack = 64 << 20 // playlists, manifests, container overhead
	// A rung without a bit rate (constant quality) is bounded by 2 bits per
	// pixel: several times what x264 and x265 make at any usable CRF.
	crfBitsPerPixel = 2
	copyAudioRate   = 24_000_000 // a passed-through track (TrueHD peaks near 18 Mb/s)
	spriteTileBytes = 512 << 10
	posterBytes     = 16 << 20
)

// stepBudget is the most bytes a step of the job may upload: what its plan
// can plausibly produce (with generous room), and never more than the
// server's --max-step-size.
func (s *workerAPI) stepBudget(j job.Job, step string) int64 {
	var pl media.Plan
	plausible := int64(stepSlack) + 2*j.Source.Size
	if json.Unmarshal(j.Plan, &pl) == nil && pl.Validate() == nil {
		enc := stepSlack + 2*j.Source.Size + int64(pl.Duration*encodeRate(&pl)/8)
		th := int64(stepSlack + posterBytes + pl.Thumbs.Count*spriteTileBytes)
		switch {
		case step == pipeline.StepEncode, pipeline.EncodesPart(step):
			plausible = enc // a chunk's encode or the audio's is a part of the whole
		case step == pipeline.StepThumbs:
			plausible = th
		case step == pipeline.StepVerified:
			plausible = enc + th
		}
	}
	if s.maxStep > 0 {
		return min(plausible, s.maxStep)
	}
	return plausible
}

// encodeRate is the highest plausible bit rate of a plan's outputs, all
// rungs and tracks together, in bits per second.
func encodeRate(pl *media.Plan) float64 {
	rate := 0.0
	for _, r := range pl.Rungs {
		if r.MaxRate > 0 {
			rate += 2 * float64(max(r.MaxRate, r.Bitrate))
		} else {
			rate += crfBitsPerPixel * float64(r.Width*r.Height) * pl.FPS
		}
	}
	for _, a := range pl.Audio {
		if a.Codec == "copy" {
			rate += copyAudioRate
		} else {
			rate += 2 * float64(a.Bitrate)
		}
	}
	return rate
}

// budgets counts the bytes each upload folder (one attempt's step) holds,
// so that a PUT past its step's budget is refused without walking the
// folder on every request.
type budgets struct {
	mu   sync.Mutex
	used map[string]int64 // by upload folder name
	// planned is what each attempt's step asked to upload straight to
	// storage, by file: asking again for the same file replaces its size,
	// asking for more files adds them.
	planned map[string]map[string]int64
}

// plan records the files an attempt's step (name) is about to upload
// straight to storage, and reports whether all it asked for so far fits
// in limit; when it does not, nothing is recorded.
func (b *budgets) plan(name string, files []protocol.StagedFile, limit int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.planned == nil {
		b.planned = map[string]map[string]int64{}
	}
	next := maps.Clone(b.planned[name])
	if next == nil {
		next = map[string]int64{}
	}
	for _, f := range files {
		next[f.Path] = f.Size
	}
	total := int64(0)
	for _, n := range next {
		total += n
	}
	if total > limit {
		return false
	}
	b.planned[name] = next
	return true
}

// reserve records that n more bytes are coming into the folder name (at
// dir), and reports whether they fit in limit. The first call for a folder
// (after a restart, say) counts what it holds.
func (b *budgets) reserve(name, dir string, n, limit int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used == nil {
		b.used = map[string]int64{}
	}
	used, ok := b.used[name]
	if !ok {
		used = dirSize(dir)
	}
	if used+n > limit {
		b.used[name] = used
		return false
	}
	b.used[name] = used + n
	return true
}

// release gives back bytes that were reserved but did not arrive.
func (b *budgets) release(name string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.used[name]; ok {
		b.used[name] = max(b.used[name]-n, 0)
	}
}

// forget drops a folder that was committed or removed.
func (b *budgets) forget(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.used, name)
	delete(b.planned, name)
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// sumSizes adds up the sizes a worker lists for a step.
func sumSizes(files []protocol.StagedFile) int64 {
	var n int64
	for _, f := range files {
		n += f.Size
	}
	return n
}
