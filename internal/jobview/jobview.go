// Package jobview is how herd shows a job outside the server: the API's
// answers about jobs (which the admin client and the CLI decode), the web
// UI's data and the body of webhook events. It only shapes what the store
// holds; it decides nothing and does no I/O.
package jobview

import (
	"encoding/json"
	"net/url"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/store"
)

// JobView is a job as the API shows it.
type JobView struct {
	job.Job
	ETASeconds *float64          `json:"eta_seconds,omitempty"`
	Outputs    []pipeline.Output `json:"outputs"`
	Tasks      []TaskView        `json:"tasks,omitempty"`
	Deliveries []store.Delivery  `json:"deliveries,omitempty"`
	// Waiting says why tasks of a job that has not ended cannot run: a
	// capability no worker has proven (the job page only).
	Waiting string `json:"waiting,omitempty"`
	// Stream is the stable path of the job's published outputs (its
	// asset's with its profile): whichever job is current for them now.
	Stream string `json:"stream,omitempty"`
	// Check is what a health check's job (Source.Library) found, once its
	// check task has succeeded.
	Check *job.CheckResult `json:"check,omitempty"`
	// Live is the job's live master playlist while its hls ladder is
	// encoded (EXT-X-PLAYLIST-TYPE:EVENT): it plays from the first
	// finished segments on, and ends (EXT-X-ENDLIST) with the encode.
	Live string `json:"live,omitempty"`
}

// LivePath is the live master playlist of job id (package live).
func LivePath(id string) string {
	return "/api/v1/jobs/" + url.PathEscape(id) + "/live/master.m3u8"
}

// What is what a job does, as lists show it: its profile, or the health
// check of a library.
func What(j job.Job) string {
	if j.Source.Library != "" {
		return "health check (" + j.Source.Library + ")"
	}
	return j.Profile
}

// CampaignView is a campaign as the API shows it, with its items where
// the answer is about one campaign.
type CampaignView struct {
	store.Campaign
	Items []store.CampaignItem `json:"items,omitempty"`
}

// CampaignRequest asks for a re-encode campaign (POST /api/v1/campaigns).
type CampaignRequest struct {
	Profile string `json:"profile"`
	// FromVersion is the oldest version whose outputs are redone (0: 1).
	FromVersion int               `json:"from_version,omitempty"`
	Library     string            `json:"library,omitempty"`
	Query       string            `json:"query,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Window      string            `json:"window,omitempty"`
	MaxRunning  int               `json:"max_running,omitempty"` // 0: the server's default
	// DryRun lists what the campaign would redo without making it.
	DryRun bool `json:"dry_run,omitempty"`
}

// LibraryReport is what a library scan or plan found, or a library's
// status: its files with what herd does or did with each.
type LibraryReport struct {
	Library string `json:"library"`
	// Files are the library's files after the scan, with what herd does or
	// did with each.
	Files []store.LibraryFile `json:"files"`
	// Probed counts the files probed (new or changed since the last scan).
	Probed int `json:"probed"`
	// Queued counts the jobs this scan queued (none for a plan).
	Queued int `json:"queued"`
	// Counts are files by state.
	Counts map[string]int `json:"counts"`
	// Bytes is the size of the files the rule matches that wait or run;
	// Estimate what they would be once encoded, and EstimateBasis how
	// that was estimated.
	Bytes         int64  `json:"bytes"`
	Estimate      int64  `json:"estimate"`
	EstimateBasis string `json:"estimate_basis"`
	// Saved is what replacements saved so far, in bytes.
	Saved int64 `json:"saved"`
	// Checks are files by their health check's result (pending, ok, damaged).
	Checks map[string]int `json:"checks,omitempty"`
	// Waiting, while checks are pending, says why they cannot run: no
	// worker reads the library's folder.
	Waiting string `json:"waiting,omitempty"`
}

// LibraryView is one library as the list shows it: what the
// configuration says of it, and its files by state.
type LibraryView struct {
	Name          string         `json:"name"`
	Path          string         `json:"path"`
	Rule          string         `json:"rule"`
	Profile       string         `json:"profile"`
	Action        string         `json:"action"`
	Publish       []string       `json:"publish,omitempty"`
	MinSavings    float64        `json:"min_savings"`
	KeepOriginals string         `json:"keep_originals,omitempty"`
	MaxRunning    int            `json:"max_running"`
	Counts        map[string]int `json:"counts"`
	Saved         int64          `json:"saved"`
	Bytes         int64          `json:"bytes"`
	Estimate      int64          `json:"estimate"`
}

// StreamPath is the stable path of what profile made of an asset: below
// it, the outputs of the job that is current for them (a redirect).
func StreamPath(assetID, profile string) string {
	return "/api/v1/streams/" + url.PathEscape(assetID) + "/" + url.PathEscape(profile) + "/"
}

// TaskView is a task as the API shows it.
type TaskView struct {
	ID         string     `json:"id"`
	Kind       job.Kind   `json:"kind"`
	Chunk      int        `json:"chunk,omitempty"` // chunk tasks: which chunk, from 1
	State      string     `json:"state"`
	Attempt    int        `json:"attempt"`
	Worker     string     `json:"worker,omitempty"`
	Progress   float64    `json:"progress"`
	Speed      float64    `json:"speed,omitempty"` // x realtime, while it runs
	Error      string     `json:"error,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Commands   [][]string `json:"commands"`
}

// View is how the API, and webhook events, show a job.
func View(j job.Job, tasks []job.Task) JobView {
	v := JobView{Job: j, Outputs: []pipeline.Output{}}
	if j.State == job.Succeeded && j.Source.Library == "" {
		v.Stream = StreamPath(j.Source.AssetID, j.Profile)
	}
	var plan struct {
		Format string `json:"format"`
	}
	if !j.State.Final() && json.Unmarshal(j.Plan, &plan) == nil && plan.Format == profile.FormatHLS {
		v.Live = LivePath(j.ID)
	}
	if len(j.Outputs) > 0 {
		_ = json.Unmarshal(j.Outputs, &v.Outputs)
	}
	if j.State == job.Running && j.Speed > 0 && j.Source.Duration > 0 {
		// Remaining encode work at the current speed; rough, but what users want.
		eta := (1 - j.Progress) * j.Source.Duration / j.Speed
		v.ETASeconds = &eta
	}
	for _, t := range tasks {
		if t.Kind == job.KindCheck && t.State == job.TaskSucceeded && len(t.Result) > 0 {
			var res job.CheckResult
			if json.Unmarshal(t.Result, &res) == nil {
				v.Check = &res
			}
		}
		cmds := t.Commands
		if cmds == nil {
			cmds = [][]string{}
		}
		v.Tasks = append(v.Tasks, TaskView{ID: t.ID, Kind: t.Kind, Chunk: t.Chunk, State: string(t.State), Attempt: t.Attempt, Worker: t.Worker,
			Progress: t.Progress, Speed: t.Speed, Error: t.Error, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt, Commands: cmds})
	}
	return v
}

// ChunkCount counts a chunked job's chunk tasks by how they stand.
type ChunkCount struct {
	N, Done, Running, Failed int
	Retried                  int // on their second attempt or later
}

// CountChunks counts the chunk tasks among tasks (N is 0 for a job not split).
func CountChunks(tasks []TaskView) ChunkCount {
	var c ChunkCount
	for _, t := range tasks {
		if t.Kind != job.KindChunk {
			continue
		}
		c.N++
		switch job.TaskState(t.State) {
		case job.TaskSucceeded:
			c.Done++
		case job.TaskRunning:
			c.Running++
		case job.TaskFailed:
			c.Failed++
		}
		if t.Attempt > 1 {
			c.Retried++
		}
	}
	return c
}

// UnmetNeed is a capability that waiting tasks need and no worker has
// proven: without one, those tasks wait forever.
type UnmetNeed struct {
	Capability string `json:"capability"` // e.g. av1, nvenc:hevc, library:movies
	// Encoder is ffmpeg's encoder that proves it, e.g. libsvtav1 ("" for
	// a library's health checks).
	Encoder string   `json:"encoder"`
	Hint    string   `json:"hint"` // what the operator can do
	Jobs    []string `json:"jobs"` // ids of waiting jobs that need it (a bounded number)
}
