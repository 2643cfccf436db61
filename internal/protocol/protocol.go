// Package protocol holds the shapes herd's server and its clients exchange
// over HTTP: the worker protocol (claims, reports, staged files, upload
// plans, lease headers, the protocol version), the error body every route
// answers with, and the admin answers the Go client reads (queue depth,
// keys). The server (package api), the remote worker (package remote) and
// the admin client (package client) all speak it, so a client needs none of
// the server's code. It is a leaf: it imports the standard library and the
// domain package job, and does no I/O. JSON field names here are the wire
// format; changing one breaks workers and clients of other versions.
package protocol

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/job"
)

// The worker protocol: remote workers dial out to the server's
// /api/v1/worker routes with a worker key. Every report carries the lease
// (owner and fencing token); a stale one gets 409 lease_lost and the worker
// drops that task.

// Version is sent by workers and checked by the server. Version 2
// added presigned redirects and direct uploads: a version 1 worker would
// follow a redirect with its key and would not know the uploads route.
// Version 3 renamed the last step, which moves the verified outputs into
// place, from "publish" to "finalize" (publishing is what publishers do).
// Version 4 added the chunk task kinds (split, chunk, audio, stitch: a
// split-and-stitch encode) and changed the contract of kinds that kept
// their names: an hls encode writes the sprite tiles from its own decode,
// verify checks the thumbnails and reads a chunked job's quality.json, the
// probe lists the source's keyframes for a job that may be split, and
// plans carry new fields (Rotation, chunk boundaries) that an older worker
// would ignore. The server still speaks 3 and 2 (PreviousVersion,
// LegacyVersion), but leases their workers only the kinds whose contract
// they still implement (Kinds), so a rolling upgrade, server first, loses
// and fails no work. Version 5 added ladders of more than one codec (a
// rung's own video plan, rung names such as 1080p-av1) to plans that
// encode, thumbnails and verify read: a version 4 worker would refuse such
// a plan as malformed and fail the job. Version 6 added subtitle files
// given with the source: a plan's subtitle rendition may be made from one
// (SubtitlePlan.Sidecar), which the encode or audio task downloads from
// .../subtitles/{id}; a version 5 worker would read the rendition as the
// source's stream 0 and fail the job. Version 7 added per-title encoding:
// the search task kind, and plans whose rungs carry the CRF it found
// (RungPlan.CRF) and a quality gate that verify runs: a version 6 worker
// would fail a search task as an unknown kind, and encode such a plan's
// rungs at the predicted bitrate instead of its CRF. Version 8 runs an
// unsplit web job's encode beside its audio task instead of after it: the
// encode makes the video alone and verify joins the audio to it and writes
// the playlists; a version 7 verify would find no playlists and fail the
// job, and a version 7 encode would wait for the audio.
const Version = "8"

// OlderVersions are the versions before Version that the server still
// speaks, newest first: their workers are leased only what Kinds allows.
var OlderVersions = []string{"7", "6", "5", "4", "3", LegacyVersion}

// LegacyVersion is the oldest version the server still speaks: its workers
// are handed the last step under its old kind (LegacyFinalizeKind) and may
// ask for it on the old route, .../publish.
const LegacyVersion = "2"

// Speaks reports whether the server speaks the worker protocol version v.
func Speaks(v string) bool {
	return v == Version || slices.Contains(OlderVersions, v)
}

// Spoken names the versions the server speaks, for messages.
var Spoken = Version + " (and " + strings.Join(OlderVersions, ", ") + ", to finalize only)"

// Kinds is the task kinds a worker speaking version may be leased: nil
// means every kind (the current version), an empty list none (a version
// the server does not speak). An older worker gets only finalize,
// whose contract (move the verified outputs into place, on the server) has
// not changed. It gets no probe, encode, thumbnails or verify, though those
// kinds kept their names: their contract changed in version 4 (a probe
// that lists no keyframes, an hls encode without sprite tiles, thumbnails
// and a verify that ignore the plan's new fields and a chunked job's
// quality.json), and an old worker would do the old thing and report
// success, failing the job later or making wrong outputs. Nor the chunk
// kinds, which it does not know at all and would fail permanently. Those
// tasks wait for an upgraded worker instead. (Version 5 changed the plans
// encode, thumbnails and verify read again, see Version.)
func Kinds(version string) []job.Kind {
	switch {
	case version == Version:
		return nil
	case slices.Contains(OlderVersions, version):
		return []job.Kind{job.KindFinalize}
	}
	return []job.Kind{}
}

// Outdated is what to tell an operator about a worker that last spoke
// version: how it is held back and what to do, or "" when it speaks the
// server's version (or has not said which it speaks).
func Outdated(version string) string {
	if version == "" || version == Version {
		return ""
	}
	return "outdated: protocol " + version + ", server speaks " + Version + " — upgrade it; it only finalizes until then"
}

// LegacyFinalizeKind is the last step's kind as a version 2 worker knows it.
const LegacyFinalizeKind job.Kind = "publish"

// HeaderProtocol carries the worker's protocol version on requests whose
// body does not say it (fetching a task leased to it). A request without
// it comes from a version 2 worker, which did not send one.
const HeaderProtocol = "X-Herd-Protocol"

// Lease headers on file routes.
const (
	HeaderLeaseOwner = "X-Herd-Lease-Owner"
	HeaderFence      = "X-Herd-Fence"
	HeaderSHA256     = "X-Herd-SHA256"
	HeaderOffset     = "Upload-Offset"
	HeaderLength     = "Upload-Length"
	// HeaderComplete is "true" on the server's answer about a file that
	// arrived whole already: the worker sends it no more.
	HeaderComplete = "X-Herd-Complete"
)

// RegisterRequest trades a one-time registration token for a worker key
// (POST /api/v1/worker/register).
type RegisterRequest struct {
	Name  string `json:"name"`
	Token string `json:"registration_token"`
}

// Registered answers a RegisterRequest: the worker's key, shown this once.
type Registered struct {
	Key  string `json:"key"`
	Name string `json:"name"`
}

// Claim is what the server hands a worker.
type Claim struct {
	Task    job.Task                     `json:"task"`
	Job     job.Job                      `json:"job"`
	Lease   job.Lease                    `json:"lease"`
	Deps    map[job.Kind]json.RawMessage `json:"deps"`
	Profile json.RawMessage              `json:"profile,omitempty"`
}

// ClaimRequest asks for one task.
type ClaimRequest struct {
	Slot        string   `json:"slot"` // the worker's slot number; the lease owner is worker/NAME/SLOT
	Caps        []string `json:"capabilities"`
	Slots       int      `json:"slots"`
	Version     string   `json:"version"`
	WaitSeconds float64  `json:"wait_seconds"` // long-poll: how long to hold the request when nothing is runnable (≤ 30)
}

// Report is a heartbeat, completion, failure or release.
type Report struct {
	Lease     job.Lease       `json:"lease"`
	Progress  float64         `json:"progress,omitempty"`
	Speed     float64         `json:"speed,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Source    *job.Source     `json:"source,omitempty"`
	Plan      json.RawMessage `json:"plan,omitempty"`
	Outputs   json.RawMessage `json:"outputs,omitempty"`
	Commands  [][]string      `json:"commands,omitempty"`
	Message   string          `json:"message,omitempty"`
	Code      string          `json:"code,omitempty"`
	Permanent bool            `json:"permanent,omitempty"`
}

// StagedFile is one file of a staged step.
type StagedFile struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// UploadPlan answers a worker about to upload a step's files: with Direct,
// it PUTs each part straight to storage at the presigned URLs given and
// sends the parts' ETags with its commit; otherwise it uploads through the
// server's resumable file routes.
type UploadPlan struct {
	Direct  bool           `json:"direct"`
	Uploads []DirectUpload `json:"uploads,omitempty"`
}

// CommitRequest lists the files of a step the worker uploaded.
type CommitRequest struct {
	Files   []StagedFile   `json:"files"`
	Uploads []DirectUpload `json:"uploads,omitempty"` // direct uploads, with each part's ETag
}

// Part is one piece of a direct upload: PUT Size bytes from Offset of the
// file to URL, and keep the ETag the store answers.
type Part struct {
	Number int    `json:"number"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	URL    string `json:"url"`
	ETag   string `json:"etag,omitempty"`
}

// DirectUpload lets a worker send one file straight to the bucket.
type DirectUpload struct {
	Path     string `json:"path"`
	UploadID string `json:"upload_id,omitempty"` // set when the file goes in parts
	Parts    []Part `json:"parts"`
}

// ErrorBody is the JSON shape of every error.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Error is an error answer as a client sees it: the HTTP status and
// ErrorBody's code and message. The CLI's client and the worker's remote
// client both return it.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// QueueStats is what autoscalers read (a KEDA metrics-api trigger): public,
// like /metrics, because it says only how much work waits.
type QueueStats struct {
	QueuedTasks          int     `json:"queued_tasks"`
	RunningTasks         int     `json:"running_tasks"`
	EncodeBacklogSeconds float64 `json:"encode_backlog_seconds"`
	JobsQueued           int     `json:"jobs_queued"`
	JobsRunning          int     `json:"jobs_running"`
}

// IssuedKey is a key just created: the secret is shown once.
type IssuedKey struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	Name      string     `json:"name"`
	Secret    string     `json:"key"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// KeyView is a key as the API lists it: never its secret, nor its hash.
type KeyView struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"` // admin | worker | registration | session
	Name      string     `json:"name"`
	State     string     `json:"state"` // live | expired | revoked (a session whose admin key was revoked: revoked)
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	LastUsed  *time.Time `json:"last_used,omitempty"`
	MadeWith  string     `json:"made_with,omitempty"` // a session: the id of the admin key it was signed in with
}

// Key states.
const (
	KeyLive    = "live"
	KeyExpired = "expired"
	KeyRevoked = "revoked"
)

// Link is a playback link just made (POST /api/v1/jobs/{id}/links): its
// holder may read that job's outputs, and no more, until it expires.
type Link struct {
	Job       string    `json:"job_id"`
	URL       string    `json:"url"`                // the embeddable player page
	Path      string    `json:"path"`               // URL's path; the outputs are below it
	Playlist  string    `json:"playlist,omitempty"` // the HLS master playlist's URL, where the job has one
	Manifest  string    `json:"manifest,omitempty"` // the DASH manifest's URL, where the job has one
	ExpiresAt time.Time `json:"expires_at"`
}

// EscapePath escapes each segment of a slash path for a URL, keeping the
// slashes: a staged file's or an output's path below a route.
func EscapePath(p string) string {
	parts := strings.Split(p, "/")
	for i := range parts {
		parts[i] = url.PathEscape(parts[i])
	}
	return strings.Join(parts, "/")
}

// StoredSubtitle is the answer to POST /api/v1/subtitles: a subtitle file
// stored, to be named by a submission.
type StoredSubtitle struct {
	ID     string `json:"id"`     // its WebVTT's SHA-256: what a submission names
	Format string `json:"format"` // what it was sent as: srt, webvtt, ass, ttml
	Cues   int    `json:"cues"`
	Size   int64  `json:"size"` // bytes of WebVTT
}
