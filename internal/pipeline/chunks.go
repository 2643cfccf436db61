package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
)

// Split-and-stitch as tasks. A probe that plans chunks (media.PlanChunks)
// replaces the job's encode task by
//
//	split ─┬─ chunk 1 ─┐
//	       ├─ chunk 2 ─┼─ stitch
//	       └─ chunk N ─┤
//	audio ─────────────┘
//
// The split task stream-copies each chunk's piece of the source into its
// own step, so a chunk task (on any worker) fetches only its piece. The
// audio task encodes the whole source's audio once (for an mp4 or mkv plan
// also its subtitles, attachments, metadata and chapters). The stitch task
// joins the chunks and the audio, encoding nothing again, into exactly what
// an unsplit encode task stages (StepEncode): an hls plan's segments, an mp4
// or mkv plan's one file. Thumbnails, verify and finalize do not change.

// pieceName is the file a piece step holds.
const pieceName = "piece.mkv"

// chunkSeconds is how long the job's chunks are: the job's own choice, else its profile's.
func chunkSeconds(p *profile.Profile, j job.Job) float64 {
	if j.ChunkSeconds != nil {
		return *j.ChunkSeconds
	}
	return p.ChunkSeconds
}

// chunkTasks are the tasks that replace a chunked plan's encode task.
func chunkTasks(plan *media.Plan, probeID string, needs []string) *job.Expansion {
	t := func(k job.Kind, deps ...string) job.Task {
		return job.Task{ID: job.NewID("t"), Kind: k, DependsOn: deps}
	}
	split := t(job.KindSplit, probeID)
	tasks := []job.Task{split}
	var stitchDeps []string
	for k := range plan.Chunks {
		c := t(job.KindChunk, split.ID)
		c.Chunk, c.Needs, c.Seconds = k+1, needs, plan.ChunkSeconds(k)
		if plan.Duration > 0 {
			c.Weight = job.KindEncode.Weight() * c.Seconds / plan.Duration
		}
		tasks = append(tasks, c)
		stitchDeps = append(stitchDeps, c.ID)
	}
	if plan.AudioTask() {
		a := t(job.KindAudio, probeID)
		tasks = append(tasks, a)
		stitchDeps = append(stitchDeps, a.ID)
	}
	tasks = append(tasks, t(job.KindStitch, stitchDeps...))
	return &job.Expansion{Replace: job.KindEncode, Tasks: tasks}
}

// audioTasks are the tasks that replace an unsplit plan's encode task when
// its audio is the audio task's (Plan.AudioStep): the audio and the
// encode, side by side after the probe. The verify task after both joins
// them (media.Plan.JoinAudio): a long source's encode does not wait for
// its audio. A job's tasks ready together are claimed in their order, so
// a worker with one slot still makes the audio first, which the live
// playlists need before anything plays; with two, the audio and the
// encode run together and the thumbnails follow.
func audioTasks(probeID string, needs []string) *job.Expansion {
	a := job.Task{ID: job.NewID("t"), Kind: job.KindAudio, DependsOn: []string{probeID}}
	enc := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, DependsOn: []string{probeID}, Needs: needs}
	return &job.Expansion{Replace: job.KindEncode, Tasks: []job.Task{a, enc}}
}

// splitWorkers is how many pieces a split task cuts at once: each is a
// stream copy, bound by reading the source rather than by a core, and a
// two-hour movie has 120 of them (about 0.35 s each one after another).
const splitWorkers = 4

// split stages every chunk's piece of the source, each as its own step.
func (e *Executor) split(ctx context.Context, c *job.Claimed, plan *media.Plan, src string, report func(job.Progress)) (job.Result, error) {
	ran := make([][][]string, len(plan.Chunks))
	var (
		mu   sync.Mutex
		done int
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(splitWorkers)
	for k := range plan.Chunks {
		g.Go(func() error {
			cmds, err := e.scratch(gctx, c, PieceStep(k+1), func(dir string) ([][]string, error) {
				return e.media.Split(gctx, plan, src, k, filepath.Join(dir, pieceName))
			})
			mu.Lock()
			defer mu.Unlock()
			ran[k] = cmds
			if err != nil {
				return classify(err, fmt.Sprintf("cutting chunk %d out of the source failed", k+1))
			}
			done++
			report(job.Progress{Progress: float64(done) / float64(len(plan.Chunks))})
			return nil
		})
	}
	err := g.Wait()
	var all [][]string
	for _, cmds := range ran {
		all = append(all, cmds...)
	}
	return job.Result{Commands: lastCommands(all)}, err
}

// lastCommands keeps a report's command list within what the server
// accepts (maxCommands): the latest ones.
func lastCommands(cmds [][]string) [][]string {
	if len(cmds) > maxCommands {
		return cmds[len(cmds)-maxCommands:]
	}
	return cmds
}

// chunk encodes one chunk's piece into its own step.
func (e *Executor) chunk(ctx context.Context, c *job.Claimed, plan *media.Plan, report func(job.Progress)) (job.Result, error) {
	k := c.Task.Chunk - 1
	if k < 0 || k >= len(plan.Chunks) {
		return job.Result{}, job.Permanent("bad_plan", job.Userf(nil, "chunk %d is not in the job's plan of %d chunks; submit the file again", c.Task.Chunk, len(plan.Chunks)))
	}
	plan, done, err := e.hardwarePlan(ctx, c, plan)
	if err != nil {
		return job.Result{}, err
	}
	defer done()
	in, err := e.files.Scratch("piece")
	if err != nil {
		return job.Result{}, err
	}
	defer e.files.Discard(in)
	if err := e.staged(ctx, c, PieceStep(c.Task.Chunk), in, "the chunk's piece of the source"); err != nil {
		return job.Result{}, err
	}
	frames := plan.ChunkFrames(k)
	cmds, err := e.scratch(ctx, c, ChunkStep(c.Task.Chunk), func(dir string) ([][]string, error) {
		var speed float64
		ran, err := e.handingOver(ctx, c, plan, ChunkStep(c.Task.Chunk), dir, func() ([][]string, error) {
			return e.media.EncodeChunk(ctx, plan, filepath.Join(in, pieceName), k, dir, func(p media.Progress) {
				speed = p.Speed
				report(job.Progress{Progress: min(float64(p.Frame)/frames, 1), Speed: p.Speed})
			})
		})
		if err == nil {
			report(job.Progress{Progress: 1, Speed: speed})
		}
		return ran, err
	})
	if err != nil {
		return job.Result{Commands: cmds}, classify(err, fmt.Sprintf("encoding chunk %d failed", c.Task.Chunk))
	}
	return job.Result{Commands: cmds}, nil
}

// audio encodes the whole source's audio once.
func (e *Executor) audio(ctx context.Context, c *job.Claimed, plan *media.Plan, src string, report func(job.Progress)) (job.Result, error) {
	cmds, err := e.scratch(ctx, c, StepAudio, func(dir string) ([][]string, error) {
		return e.handingOver(ctx, c, plan, StepAudio, dir, func() ([][]string, error) {
			return e.media.EncodeAudio(ctx, plan, src, dir, func(p media.Progress) {
				if plan.Duration > 0 {
					report(job.Progress{Progress: min(p.OutTime.Seconds()/plan.Duration, 1), Speed: p.Speed})
				}
			})
		})
	})
	if err != nil {
		return job.Result{Commands: cmds}, classify(err, "encoding the audio failed")
	}
	return job.Result{Commands: cmds}, nil
}

// stitch joins the chunks and the audio into the encode step, encoding nothing again.
func (e *Executor) stitch(ctx context.Context, c *job.Claimed, plan *media.Plan) (job.Result, error) {
	work, err := e.files.Scratch("stitch")
	if err != nil {
		return job.Result{}, err
	}
	defer e.files.Discard(work)
	dirs := make([]string, len(plan.Chunks))
	for k := range plan.Chunks {
		dirs[k] = filepath.Join(work, ChunkStep(k+1))
		if err := e.staged(ctx, c, ChunkStep(k+1), dirs[k], fmt.Sprintf("chunk %d's encode", k+1)); err != nil {
			return job.Result{}, err
		}
	}
	audioDir := ""
	if plan.AudioTask() {
		audioDir = filepath.Join(work, StepAudio)
		if err := e.staged(ctx, c, StepAudio, audioDir, "the encoded audio"); err != nil {
			return job.Result{}, err
		}
	}
	cmds, err := e.scratch(ctx, c, StepEncode, func(dir string) ([][]string, error) {
		ran, err := e.media.Stitch(ctx, plan, dirs, audioDir, dir)
		if se, ok := errors.AsType[*media.StitchError](err); ok {
			// The same chunks stitch the same way: a retry cannot help.
			return ran, job.Permanent("stitch_failed", job.Userf(err, "joining the chunks failed: %v", se))
		}
		if err != nil {
			return ran, classify(err, "joining the chunks failed")
		}
		return ran, nil
	})
	return job.Result{Commands: lastCommands(cmds)}, err
}

// staged puts an earlier step's files into a new folder dir; what names
// the step for users.
func (e *Executor) staged(ctx context.Context, c *job.Claimed, step, dir, what string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ok, err := e.files.Staged(ctx, c, step, dir)
	if err != nil {
		return job.Userf(err, "could not fetch %s", what)
	}
	if !ok {
		return job.Userf(nil, "%s is missing from storage; retry the job", what)
	}
	return nil
}
