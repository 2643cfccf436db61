// Package store is herd's one storage seam: jobs, tasks, leases, assets and
// keys. Both SQL dialects (SQLite and PostgreSQL) implement Store and pass the
// same conformance suite in storetest. Every state change is one transaction.
// The store decides nothing about media; it only keeps the queue honest.
package store

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/label"
)

// Store is implemented by each SQL dialect.
type Store interface {
	// CreateJob inserts a job and its tasks. When a live job (not failed or
	// canceled) with the same idempotency key exists, it is returned with created=false.
	CreateJob(ctx context.Context, j job.Job, tasks []job.Task, now time.Time) (out job.Job, created bool, err error)
	GetJob(ctx context.Context, id string) (job.Job, error)
	ListJobs(ctx context.Context, opt ListOptions) (jobs []job.Job, next string, err error)
	Tasks(ctx context.Context, jobID string) ([]job.Task, error)
	CancelJob(ctx context.Context, id string, now time.Time) (job.Job, error)
	RetryJob(ctx context.Context, id string, now time.Time) (job.Job, error)

	// Claim leases the oldest runnable task a worker can run; nil when there is none.
	Claim(ctx context.Context, req ClaimRequest) (*job.Claimed, error)
	// Heartbeat extends a lease and records progress. ErrLeaseLost when the fence is stale.
	Heartbeat(ctx context.Context, l job.Lease, p job.Progress, now time.Time, ttl time.Duration) error
	Complete(ctx context.Context, l job.Lease, r job.Result, now time.Time) error
	Fail(ctx context.Context, l job.Lease, f job.Failure, now time.Time) error
	// Release gives a task back without burning an attempt (shutdown).
	Release(ctx context.Context, l job.Lease, now time.Time) error
	// ReapExpired requeues (or fails, past the attempt cap) tasks whose lease expired.
	ReapExpired(ctx context.Context, now time.Time, backoff time.Duration) (int, error)
	// ReleaseOwners gives back every lease whose owner starts with prefix: the
	// in-process workers of a server that died cannot be running anything.
	ReleaseOwners(ctx context.Context, prefix string, now time.Time) (int, error)
	// NextWake is the earliest time a queued task becomes runnable (zero when none waits).
	NextWake(ctx context.Context) (time.Time, error)
	Stats(ctx context.Context) (Stats, error)
	// Depth is how much work waits, for autoscalers: one aggregate over the
	// open tasks and jobs, cheap enough to serve without a key.
	Depth(ctx context.Context) (Depth, error)
	// Throughput counts the jobs that ended (succeeded or failed) at or
	// after since, per clock hour, oldest first; hours with none are left out.
	Throughput(ctx context.Context, since time.Time) ([]HourCount, error)

	PutAsset(ctx context.Context, a job.Asset) (job.Asset, error)
	AssetBySHA(ctx context.Context, sha string) (job.Asset, error)

	CreateKey(ctx context.Context, k Key) error
	// KeyByHash finds a key by its hash (ErrNotFound when there is none).
	KeyByHash(ctx context.Context, hash string) (Key, error)
	// ListKeys lists every stored key, revoked and expired ones included, oldest first.
	ListKeys(ctx context.Context) ([]Key, error)
	// CountKeys counts the keys of a kind that are not revoked.
	CountKeys(ctx context.Context, kind string) (int, error)
	// ConsumeKey revokes a key and reports whether this call did it (one-time tokens).
	ConsumeKey(ctx context.Context, id string) (bool, error)
	// RevokeKey revokes a key (again is no error) and returns it; ErrNotFound when there is none.
	RevokeKey(ctx context.Context, id string) (Key, error)
	// TouchKey records that a key was used at now, unless a use after
	// now-every is recorded already: a busy key is written about once per every.
	TouchKey(ctx context.Context, id string, now time.Time, every time.Duration) error
	// SweepExpiredKeys deletes the keys that expired before before and says how many.
	SweepExpiredKeys(ctx context.Context, before time.Time) (int, error)

	// Secret returns the secret stored under name, first storing mint as it
	// when there is none: every replica that asks gets the same one.
	Secret(ctx context.Context, name string, mint []byte, now time.Time) ([]byte, error)
	// RotateSecret replaces the secret stored under name with value.
	RotateSecret(ctx context.Context, name string, value []byte, now time.Time) error

	// ClaimOutbound leases up to limit due deliveries of job events for
	// lease, oldest first; the store writes them in the transaction that
	// changes a job's state (one per publisher the job names, and one per
	// subscription that wants the event).
	ClaimOutbound(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Outbound, error)
	// ReleaseOutbound gives back the deliveries owner holds (a server
	// starting again holds nothing).
	ReleaseOutbound(ctx context.Context, owner string) (int, error)
	// RenewOutbound extends owner's lease on a delivery it is making; false
	// when owner holds it no longer.
	RenewOutbound(ctx context.Context, id, owner string, until time.Time) (bool, error)
	// SettleOutbound ends a delivery owner holds (next zero) or sets when it
	// is tried again; attempt is the attempts made so far. False when owner
	// holds it no longer: its outcome is not recorded over another's.
	SettleOutbound(ctx context.Context, id, owner string, attempt int, next time.Time) (bool, error)
	// PruneOutbound deletes the deliveries that ended and were written
	// before before.
	PruneOutbound(ctx context.Context, before time.Time) (int, error)
	// PendingOutbound lists the deliveries of an event not settled yet.
	PendingOutbound(ctx context.Context, eventID string) ([]Outbound, error)
	// HandOff queues a job's event, as event eventID, for publishers the
	// job does not name (a watch folder's, for a job made by an older herd
	// or another's job with the same content). Calling it again with the
	// same eventID and publisher adds nothing.
	HandOff(ctx context.Context, eventID, jobID, event string, publishers []string, now time.Time) error
	// HandOffFiles queues, as a job's success event eventID, a notice to
	// publishers (media servers) that files were written (FilesNotice); a
	// second call adds nothing.
	HandOffFiles(ctx context.Context, eventID, jobID string, publishers []string, files map[string]string, now time.Time) error

	// PutSubscription creates a subscription, or replaces the one with its id.
	PutSubscription(ctx context.Context, sub Subscription) error
	GetSubscription(ctx context.Context, id string) (Subscription, error)
	ListSubscriptions(ctx context.Context) ([]Subscription, error)
	// DeleteSubscription removes a subscription and its undelivered events.
	DeleteSubscription(ctx context.Context, id string) error
	// SubscriptionHealth records since when a subscription's deliveries
	// fail (nil: they work) and whether it is paused, with a note.
	SubscriptionHealth(ctx context.Context, id string, failingSince, pausedAt *time.Time, note string) error

	// AddDelivery records one attempt to deliver a finished job somewhere.
	AddDelivery(ctx context.Context, d Delivery) error
	// Deliveries lists a job's delivery attempts, oldest first.
	Deliveries(ctx context.Context, jobID string) ([]Delivery, error)

	// AddLiveSegment records a segment a running encode handed over for
	// its job's live playlists, while l still holds the task (else
	// job.ErrLeaseLost). False when the job has that segment already: the
	// first one recorded stays, so a listed segment never changes.
	AddLiveSegment(ctx context.Context, l job.Lease, seg LiveSegment, now time.Time) (bool, error)
	// LiveSegments lists a job's live segments by rendition, part and number.
	LiveSegments(ctx context.Context, jobID string) ([]LiveSegment, error)
	// EndedLive lists up to limit jobs with live segments that ended
	// before before.
	EndedLive(ctx context.Context, before time.Time, limit int) ([]string, error)
	// DeleteLive forgets a job's live segments if it still ended before
	// before (a job retried since keeps its new run's); false when not.
	DeleteLive(ctx context.Context, jobID string, before time.Time) (bool, error)

	// GetTask returns one task.
	GetTask(ctx context.Context, id string) (job.Task, error)
	// RunningTasks lists every task being run now.
	RunningTasks(ctx context.Context) ([]job.Task, error)

	// PutWorker registers a worker, or updates the one with that name.
	PutWorker(ctx context.Context, w Worker) error
	GetWorker(ctx context.Context, name string) (Worker, error)
	ListWorkers(ctx context.Context) ([]Worker, error)
	// SeenWorker records a worker's last contact and what it advertises (nil caps: only the time).
	SeenWorker(ctx context.Context, name string, caps []string, slots int, version string, now time.Time) error
	// SetWorkerState drains, reactivates or revokes a worker; revoking also
	// revokes its key and gives back its leases.
	SetWorkerState(ctx context.Context, name, state string, now time.Time) error

	// RecordProfile stores a profile version unless the newest stored one
	// has the same digest; it returns the version that holds the body
	// (never below atLeast). ProfileVersion reads one (ErrNotFound).
	RecordProfile(ctx context.Context, name, digest string, atLeast int, body []byte) (int, error)
	ProfileVersion(ctx context.Context, name string, version int) ([]byte, error)

	// PublishedJobs lists the current job of every stream of profile (an
	// asset made with it: what its stable name serves), oldest first.
	PublishedJobs(ctx context.Context, profile string) ([]job.Job, error)
	// StreamJob is the current job of the stream of asset and profile
	// (ErrNotFound when none succeeded yet).
	StreamJob(ctx context.Context, assetID, profile string) (string, error)
	// ReplacedBefore lists up to limit jobs replaced before before whose
	// outputs are still kept.
	ReplacedBefore(ctx context.Context, before time.Time, limit int) ([]string, error)
	// OutputsRemoved records that a replaced job's outputs are gone.
	OutputsRemoved(ctx context.Context, id string, now time.Time) error

	// CreateCampaign stores a campaign with one item per job to redo.
	CreateCampaign(ctx context.Context, c Campaign, jobIDs []string) error
	// GetCampaign returns one campaign with its counts (ErrNotFound).
	GetCampaign(ctx context.Context, id string) (Campaign, error)
	// ListCampaigns lists the campaigns in state ("": every one) with
	// their counts, newest first.
	ListCampaigns(ctx context.Context, state string) ([]Campaign, error)
	// CampaignItems lists a campaign's items in order.
	CampaignItems(ctx context.Context, id string) ([]CampaignItem, error)
	// SetCampaignState moves a campaign into state from one of the states
	// in from; ErrConflict (naming its state) when it is in none of them.
	SetCampaignState(ctx context.Context, id string, from []string, state string, now time.Time) (Campaign, error)
	// AssignCampaignItem records the job queued to redo an item (newJobID)
	// or why it was skipped (note); false when the item has either already.
	AssignCampaignItem(ctx context.Context, id, jobID, newJobID, note string) (bool, error)

	Ping(ctx context.Context) error
	Close() error
}

// Campaign states.
const (
	CampaignRunning  = "running"
	CampaignPaused   = "paused"
	CampaignCanceled = "canceled"
	CampaignDone     = "done"
)

// Campaign re-encodes, with the profile's newest version, what older
// versions of it made: one new job per published output, queued at most
// MaxRunning at a time, inside Window.
type Campaign struct {
	ID          string         `json:"id"`
	Profile     string         `json:"profile"`
	FromVersion int            `json:"from_version"` // the oldest version redone
	ToVersion   int            `json:"to_version"`   // the version the new jobs run
	State       string         `json:"state"`
	Filter      CampaignFilter `json:"filter"`
	Window      string         `json:"window,omitempty"` // HH:MM-HH:MM, local time; "": any time
	MaxRunning  int            `json:"max_running"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
	FinishedAt  *time.Time     `json:"finished_at,omitempty"`
	Counts      CampaignCounts `json:"counts"`
}

// CampaignFilter narrows which outputs a campaign redoes.
type CampaignFilter struct {
	Library string            `json:"library,omitempty"` // jobs delivered to this publisher (or made from this watch folder)
	Query   string            `json:"query,omitempty"`   // a part of the source's name, any case
	Labels  map[string]string `json:"labels,omitempty"`  // labels the job carries
}

// Matches reports whether a job's output is one the filter selects.
func (f CampaignFilter) Matches(j job.Job) bool {
	if f.Library != "" && !slices.Contains(j.Publish, f.Library) && (j.Watch == nil || j.Watch.Folder != f.Library) {
		return false
	}
	if f.Query != "" && !strings.Contains(strings.ToLower(j.Source.Name), strings.ToLower(f.Query)) {
		return false
	}
	return label.Matches(f.Labels, j.Labels)
}

// CampaignCounts are a campaign's items by where they stand.
type CampaignCounts struct {
	Total     int `json:"total"`
	Pending   int `json:"pending"`   // no job queued yet
	Running   int `json:"running"`   // its job is queued or running
	Succeeded int `json:"succeeded"` // replaced
	Failed    int `json:"failed"`    // its job failed or was canceled: the old output stays
	Skipped   int `json:"skipped"`
}

// CampaignItem is one output a campaign redoes.
type CampaignItem struct {
	JobID    string `json:"job_id"`
	Name     string `json:"name"` // the source's
	NewJobID string `json:"new_job_id,omitempty"`
	// State is ItemPending or ItemSkipped before a job is queued, then
	// its job's.
	State string `json:"state"`
	Note  string `json:"note,omitempty"`
}

// A campaign item's states before it has a job.
const (
	ItemPending = "pending" // no job queued yet
	ItemSkipped = "skipped" // none will be: Note says why
)

// ListOptions filters and pages ListJobs (newest first).
type ListOptions struct {
	State   job.State
	Profile string
	Limit   int
	Cursor  string
}

// ClaimRequest is who asks for work and what it can run.
type ClaimRequest struct {
	Owner  string   // lease owner, unique per executor slot
	Worker string   // worker name shown to users
	Caps   []string // capabilities ("" needs are always satisfied)
	// Kinds limits the claim to tasks of these kinds: nil for any kind,
	// empty for none (a worker of an older protocol version is leased only
	// the kinds it still implements, protocol.Kinds).
	Kinds []job.Kind
	Now   time.Time
	TTL   time.Duration
}

// Stats are the numbers metrics and dashboards show.
type Stats struct {
	JobsByState    map[job.State]int
	QueueByProfile map[string]int // queued tasks
	RunningTasks   int
	// EncodeBacklog is the seconds of source video still to encode: the
	// whole length (job.Task.Seconds) of each encode task not started yet,
	// the rest of each running one. Jobs not probed yet (duration unknown) count 0.
	EncodeBacklog float64
}

// Depth is how much work waits and runs (GET /api/v1/queue).
type Depth struct {
	JobsQueued, JobsRunning   int
	QueuedTasks, RunningTasks int
	EncodeBacklog             float64 // as in Stats
}

// HourCount is how many jobs ended in one clock hour, and how fast the
// ones that succeeded were encoded (mean x realtime; 0 when unknown).
type HourCount struct {
	Hour      time.Time `json:"hour"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
	Speed     float64   `json:"speed,omitempty"`
}

// Key is a stored credential: only its hash is kept.
type Key struct {
	ID        string
	Kind      string // admin | worker | registration | session
	Name      string
	Hash      string
	CreatedAt time.Time
	ExpiresAt *time.Time
	Revoked   bool
	// Parent is the key this one was made with (a session's admin key), or "".
	Parent string
	// ParentEnded is set by the store when Parent was revoked or is gone:
	// a key ends with the key that made it.
	ParentEnded bool
	LastUsed    *time.Time // nil: never used (recorded about once a minute)
}

// Usable reports whether the key may be used at now: neither it nor the key
// that made it revoked, and not expired.
func (k Key) Usable(now time.Time) bool {
	return !k.Revoked && !k.ParentEnded && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// Worker states.
const (
	WorkerActive   = "active"
	WorkerDraining = "draining"
	WorkerRevoked  = "revoked"
)

// Worker is a registered remote executor.
type Worker struct {
	Name      string     `json:"name"`
	KeyID     string     `json:"-"`
	State     string     `json:"state"`
	Caps      []string   `json:"capabilities"`
	Slots     int        `json:"slots"`
	Version   string     `json:"version,omitempty"`
	LastSeen  *time.Time `json:"last_seen,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
}

// LiveSegment is one media segment of a running hls encode, handed over
// for the job's live playlists (package live) as soon as ffmpeg finished it.
type LiveSegment struct {
	JobID string
	// Rendition is the plan's video rung, or len(rungs)+i for its audio i.
	Rendition int
	// Part is the chunk that made it (0 for an unsplit encode and the
	// audio); Seq counts its segments from 1.
	Part, Seq int
	// Attempt is the task and fence that made it ("ID-FENCE"): its bytes
	// and its init segment are kept under that name.
	Attempt string
	// Codec is the RFC 6381 codecs parameter of its init segment.
	Codec string
	// Timescale, Start (its first sample's decode time) and Duration are
	// measured from its boxes.
	Timescale, Start, Duration int64
	Size                       int64
	CreatedAt                  time.Time
}

// Delivery is one attempt to deliver a finished job: a library write, a
// media-server refresh or a webhook.
type Delivery struct {
	JobID     string    `json:"-"`
	Publisher string    `json:"publisher"` // its name in the configuration
	Type      string    `json:"type"`      // library | plex | jellyfin | webhook
	Event     string    `json:"event"`     // job.succeeded | job.failed
	Attempt   int       `json:"attempt"`
	OK        bool      `json:"ok"`
	Final     bool      `json:"final"` // no more attempts will follow
	Detail    string    `json:"detail,omitempty"`
	At        time.Time `json:"at"`
}

// Outbound is one event of one job to deliver to one target.
type Outbound struct {
	ID           string
	EventID      string // the same for every target of one event
	Event        string // one of job.Events
	JobID        string
	Target       string // a publisher's name, or a subscription's id
	Subscription bool
	CreatedAt    time.Time
	Attempt      int             // attempts made before this one
	Data         json.RawMessage // the event's own data (job.progress, chunk.succeeded); nil: none
}

// FilesNotice is the data of an outbound notice that files were written
// outside a publisher (a library replacement): the media servers it goes
// to index them.
type FilesNotice struct {
	Files map[string]string `json:"library_files"` // library name → the file's path
}

// Subscription is a webhook that hears of every job's events.
type Subscription struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	Secret   string   `json:"-"`
	Events   []string `json:"events"`             // empty: job.LifeCycle
	Profiles []string `json:"profiles,omitempty"` // empty: every profile
	// Labels a job must carry (every key with its value); empty: any job.
	Labels       map[string]string `json:"labels,omitempty"`
	Origin       string            `json:"origin"` // api | config
	CreatedAt    time.Time         `json:"created_at"`
	FailingSince *time.Time        `json:"failing_since,omitempty"`
	PausedAt     *time.Time        `json:"paused_at,omitempty"`
	Note         string            `json:"note,omitempty"`
}

// Wants reports whether the subscription hears of event for a job of
// profile with labels. Progress and chunk events go only to those that
// name them.
func (s Subscription) Wants(event, profile string, labels map[string]string) bool {
	events := s.Events
	if len(events) == 0 {
		events = job.LifeCycle
	}
	return s.PausedAt == nil && slices.Contains(events, event) && (len(s.Profiles) == 0 || slices.Contains(s.Profiles, profile)) &&
		label.Matches(s.Labels, labels)
}

// WorkerOwnerPrefix is the lease-owner prefix of a remote worker's slots.
func WorkerOwnerPrefix(name string) string { return "worker/" + name + "/" }

// LibraryFile is a file of a library as herd last saw it: what it was
// when probed (size, modification time and inode: unchanged since, it is
// not probed again), what became of it, and the journal of its
// replacement (Step).
type LibraryFile struct {
	Library string `json:"library"`
	Path    string `json:"path"` // slash path inside the library
	Size    int64  `json:"size"`
	// MTime is the modification time in nanoseconds since 1970.
	MTime int64  `json:"mtime"`
	Inode uint64 `json:"inode"`
	State string `json:"state"`
	// Facts are the probe's facts the rule saw (package library), as JSON.
	Facts json.RawMessage `json:"facts,omitempty"`
	JobID string          `json:"job_id,omitempty"`
	// Note says why the file is in its state (the rule's error, the probe's
	// refusal, why the original was kept).
	Note string `json:"note,omitempty"`
	// NewSize and NewSHA256 are the replacement's, once one is placed.
	NewSize   int64  `json:"new_size,omitempty"`
	NewSHA256 string `json:"new_sha256,omitempty"`
	// Step is how far the replacement got ("" before one starts), and
	// Trash where it keeps the original, once it has chosen.
	Step  string `json:"step,omitempty"`
	Trash string `json:"trash,omitempty"`
	// Check is the health check's result: pending, ok or damaged (""
	// never checked); CheckNote the first error of a damaged file.
	Check     string `json:"check,omitempty"`
	CheckNote string `json:"check_note,omitempty"`
	// CheckJob is the job of the file's latest health check.
	CheckJob  string    `json:"check_job,omitempty"`
	ScannedAt time.Time `json:"scanned_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// LibraryStore keeps libraries' files, their health checks and their
// trash (package library).
type LibraryStore interface {
	LibraryFiles(ctx context.Context, library string) ([]LibraryFile, error)
	LibraryFilesIn(ctx context.Context, library string, states ...string) ([]LibraryFile, error)
	PutLibraryFile(ctx context.Context, f LibraryFile) error
	MoveLibraryFile(ctx context.Context, from string, f LibraryFile) error
	DeleteLibraryFile(ctx context.Context, library, path string) error
	AddLibraryTrash(ctx context.Context, e TrashEntry) error
	LibraryTrashBefore(ctx context.Context, library string, before time.Time) ([]TrashEntry, error)
	RemoveLibraryTrash(ctx context.Context, library, path string) error
	StartLibraryCheck(ctx context.Context, library string) (int64, error)
	LibraryCheckPending(ctx context.Context, library string, limit int) ([]LibraryFile, error)
	SetLibraryCheckJob(ctx context.Context, library, path, old, jobID string) (bool, error)
	FinishLibraryCheck(ctx context.Context, library, path, jobID, state, note string) (bool, error)
}

// TrashEntry is an original a replacement moved to its library's trash.
type TrashEntry struct {
	Library   string
	Path      string // inside the library: the trash's file
	Original  string // where it was
	TrashedAt time.Time
}
