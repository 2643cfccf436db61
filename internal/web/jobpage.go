package web

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/pipeline"
)

// jobPage is what the job page shows before its script runs: the job's
// line (state, progress, speed, ETA) and the strip of its chunks. The
// script then keeps the same elements up to date from the job's live view;
// chunkLabel and progressText here have twins in app.js that must say the
// same.
type jobPage struct {
	Name         string
	State        string
	Profile      string
	Progress     float64
	ProgressText string
	Chunks       []chunkCell // empty unless the job is split into chunks
	ChunkSummary string
	NoPlay       *noPlay // the job succeeded and no browser can play what it made
	Waiting      string  // what the job waits for that no worker has (jobview.JobView.Waiting)
}

// noPlay is the notice the job page shows instead of a player that would
// only show black: which file cannot be played, why, and where to get it.
// app.js's showNoPlay writes the same notice when the browser decides.
type noPlay struct {
	File string // the output's file name: "archive.mkv"
	Why  string // "HEVC in Matroska"
	URL  string
}

// codecNames are the names a user knows for the video codecs ffprobe names.
var codecNames = map[string]string{"h264": "H.264", "hevc": "HEVC", "av1": "AV1", "vp9": "VP9"}

// unplayable is the notice for outputs the server knows no browser plays:
// a Matroska file is the only video and its codec is not one a browser
// decodes there (H.264, VP9, AV1), as archive-hevc's HEVC is not. Where
// the answer depends on the browser (HEVC in MP4 plays in Safari, not in
// most Chromium builds) it is nil, and the page's script asks the browser.
func unplayable(outs []pipeline.Output) *noPlay {
	var mkv *pipeline.Output
	for i, o := range outs {
		switch o.Kind {
		case "hls", "dash", "mp4":
			return nil
		case "mkv":
			if mkv == nil {
				mkv = &outs[i]
			}
		}
	}
	if mkv == nil {
		return nil
	}
	switch mkv.Codec {
	case "h264", "vp9", "av1":
		return nil
	}
	name := cmp.Or(codecNames[mkv.Codec], strings.ToUpper(mkv.Codec), "an unknown codec")
	return &noPlay{File: path.Base(mkv.Path), Why: name + " in Matroska", URL: mkv.URL}
}

// chunkCell is one chunk task as a cell of the strip.
type chunkCell struct {
	N        int
	State    string
	Attempt  int
	Progress float64 // the cell's fill
	Label    string  // its title and accessible name
}

func newJobPage(v jobview.JobView) *jobPage {
	p := &jobPage{Name: v.Source.Name, State: string(v.State), Profile: v.Profile, Progress: v.Progress,
		ProgressText: progressText(v), Waiting: v.Waiting}
	var chunks []jobview.TaskView
	for _, t := range v.Tasks {
		if t.Kind == job.KindChunk {
			chunks = append(chunks, t)
		}
	}
	slices.SortStableFunc(chunks, func(a, b jobview.TaskView) int { return cmp.Compare(a.Chunk, b.Chunk) })
	for _, t := range chunks {
		fill := t.Progress
		if t.State == string(job.TaskSucceeded) {
			fill = 1
		}
		p.Chunks = append(p.Chunks, chunkCell{N: t.Chunk, State: t.State, Attempt: t.Attempt, Progress: fill, Label: chunkLabel(t)})
	}
	p.ChunkSummary = chunkSummary(chunks)
	if v.State == job.Succeeded {
		p.NoPlay = unplayable(v.Outputs)
	}
	return p
}

// chunkLabel says what one cell shows: "chunk 3: running, w1, 2.50×, attempt 2".
func chunkLabel(t jobview.TaskView) string {
	parts := []string{t.State}
	if t.Worker != "" {
		parts = append(parts, t.Worker)
	}
	if t.State == string(job.TaskRunning) && t.Speed > 0 {
		parts = append(parts, speed(t.Speed))
	}
	if t.Attempt > 0 {
		parts = append(parts, "attempt "+strconv.Itoa(t.Attempt))
	}
	return "chunk " + strconv.Itoa(t.Chunk) + ": " + strings.Join(parts, ", ")
}

// chunkSummary counts the chunks: "12 chunks: 5 done, 3 running, 1 retried".
func chunkSummary(chunks []jobview.TaskView) string {
	c := jobview.CountChunks(chunks)
	if c.N == 0 {
		return ""
	}
	s := strconv.Itoa(c.N) + " chunks: " + strconv.Itoa(c.Done) + " done, " + strconv.Itoa(c.Running) + " running"
	if c.Failed > 0 {
		s += ", " + strconv.Itoa(c.Failed) + " failed"
	}
	if c.Retried > 0 {
		s += ", " + strconv.Itoa(c.Retried) + " retried"
	}
	return s
}

// progressText is the job's progress, speed (summed over its running
// chunks) and time left: "42% at 6.10×, about 1:05 left".
func progressText(v jobview.JobView) string {
	s := strconv.Itoa(int(math.Round(v.Progress*100))) + "%"
	if v.State == job.Running && v.Speed > 0 {
		s += " at " + speed(v.Speed)
	}
	if v.ETASeconds != nil {
		s += ", about " + duration(*v.ETASeconds) + " left"
	}
	return s
}

// speed is x realtime as app.js's fmt.speed writes it.
func speed(x float64) string {
	prec := 1
	if x < 10 {
		prec = 2
	}
	return strconv.FormatFloat(x, 'f', prec, 64) + "×"
}

// duration is seconds as app.js's fmt.dur writes them: m:ss or h:mm:ss.
func duration(s float64) string {
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return "–"
	}
	n := int(math.Round(math.Max(0, s)))
	if h := n / 3600; h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, n%3600/60, n%60)
	}
	return fmt.Sprintf("%d:%02d", n/60, n%60)
}

// jobPageHandler serves a job's page with its first state filled in, so it
// reads without JavaScript; the script takes over from the live view.
func (u *UI) jobPageHandler(w http.ResponseWriter, r *http.Request) {
	csrf, ok := u.d.API.Session(r)
	if !ok {
		u.toLogin(w, r)
		return
	}
	p := page{Title: "Job", Page: "job", CSRF: csrf, Profiles: u.d.Profiles.All(), JobID: r.PathValue("id")}
	v, err := u.d.API.JobPage(r.Context(), p.JobID)
	switch {
	case errors.Is(err, job.ErrNotFound):
		p.Title, p.Page, p.JobID = "Not found", "notfound", ""
		u.render(w, r, http.StatusNotFound, "notfound", p)
		return
	case err != nil:
		// The page's script fills it from the live view, which may well
		// answer; a failed first read only costs the first paint.
		u.d.Log.Warn("read job for its page", "job_id", p.JobID, "err", err)
	default:
		p.Title, p.Job = v.Source.Name, newJobPage(v)
	}
	u.render(w, r, http.StatusOK, "job", p)
}
