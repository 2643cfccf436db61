// Package job holds herd's domain vocabulary: jobs, the tasks they are made of,
// their states, and the error classes the scheduler branches on. It has no
// I/O: storage lives in package store, execution in package worker.
package job

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
)

// State of a job.
type State string

// Job states.
const (
	Queued    State = "queued"
	Running   State = "running"
	Succeeded State = "succeeded"
	Failed    State = "failed"
	Canceled  State = "canceled"
)

// Final reports whether nothing more will happen to a job in this state.
func (s State) Final() bool { return s == Succeeded || s == Failed || s == Canceled }

// ParseState checks a state named by a user.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case Queued, Running, Succeeded, Failed, Canceled:
		return st, nil
	}
	return "", fmt.Errorf("unknown state %q: use queued, running, succeeded, failed or canceled", s)
}

// TaskState of a task. A task is pending until every task it depends on has succeeded.
type TaskState string

// Task states.
const (
	TaskPending   TaskState = "pending"
	TaskQueued    TaskState = "queued"
	TaskRunning   TaskState = "running"
	TaskSucceeded TaskState = "succeeded"
	TaskFailed    TaskState = "failed"
	TaskCanceled  TaskState = "canceled"
)

// Kind of a task.
type Kind string

// Task kinds, in pipeline order.
const (
	KindProbe Kind = "probe"
	// KindSearch finds a per-title plan's settings (its quality target)
	// from probe encodes of samples of the source, before the encode.
	KindSearch Kind = "search"
	KindEncode Kind = "encode"
	// A chunked encode (split-and-stitch) replaces the encode task by these:
	// split cuts the source into pieces, each chunk task encodes one piece's
	// video, audio encodes the whole source's audio once, and stitch joins
	// them into what the encode task would have staged.
	KindSplit      Kind = "split"
	KindChunk      Kind = "chunk"
	KindAudio      Kind = "audio"
	KindStitch     Kind = "stitch"
	KindThumbnails Kind = "thumbnails"
	KindVerify     Kind = "verify"
	KindFinalize   Kind = "finalize"
	// KindCheck decodes one file of a library in place, changing nothing:
	// a health check's only task (see Source.Library, CheckResult).
	KindCheck Kind = "check"
)

// CapVMAF is the capability of a worker whose verification measures VMAF
// (it has an ffmpeg with libvmaf): a verify task needs it when its
// profile sets a VMAF floor.
const CapVMAF = "vmaf"

// LibraryNeed is the capability a health check of library's files needs:
// a worker has it when it reads that library's folder (the server's own
// workers, or herd worker --library NAME=PATH).
func LibraryNeed(library string) string { return libraryNeed + library }

// LibraryOf is the library whose capability (LibraryNeed) c is; ok is
// false for any other capability.
func LibraryOf(c string) (library string, ok bool) { return strings.CutPrefix(c, libraryNeed) }

const libraryNeed = "library:"

// CheckResult is what a health check task found (its Result.Data).
type CheckResult struct {
	// State is ok, damaged or unchecked (the file is larger or longer
	// than herd decodes).
	State string `json:"state"`
	// Note is the first decoding error of a damaged file, or why it was
	// not checked.
	Note string `json:"note,omitempty"`
}

// Health check results (CheckResult.State).
const (
	CheckOK      = "ok"
	CheckDamaged = "damaged"
	CheckSkipped = "unchecked"
)

// Encodes reports whether tasks of this kind encode video: they count in
// the encode backlog, and their speed is the job's.
func (k Kind) Encodes() bool { return k == KindEncode || k == KindChunk }

// Weight is each kind's share of a job's progress. A chunk task's own
// weight is its share of the encode's (Task.Weight).
func (k Kind) Weight() float64 {
	switch k {
	case KindEncode, KindChunk:
		return 0.75
	case KindVerify:
		return 0.1
	default:
		return 0.05
	}
}

// Source is the asset a job reads, as shown to users.
type Source struct {
	AssetID       string  `json:"asset_id"`
	Name          string  `json:"name"`
	Size          int64   `json:"size"`
	SHA256        string  `json:"sha256"`
	Duration      float64 `json:"duration,omitempty"`
	Width         int     `json:"width,omitempty"`
	Height        int     `json:"height,omitempty"`
	VideoCodec    string  `json:"video_codec,omitempty"`
	AudioChannels int     `json:"audio_channels,omitempty"`
	// Library, on a health check's job, names the library whose file Name
	// (a slash path inside it) is read in place where that library is
	// mounted; such a source is not stored, and AssetID is the library's.
	Library string `json:"library,omitempty"`
	// Subtitles are subtitle files given with the source (sidecars),
	// each stored as WebVTT under SubtitleKey.
	Subtitles []SourceSubtitle `json:"subtitles,omitempty"`
}

// SourceSubtitle is a subtitle file given with a source: herd converted
// it to WebVTT when it was submitted, and a web profile packages it like
// the source's own text subtitle streams.
type SourceSubtitle struct {
	// ID is the stored WebVTT's SHA-256 (lower-case hex).
	ID       string `json:"id"`
	Language string `json:"language,omitempty"` // BCP 47; "" when not said
	Forced   bool   `json:"forced,omitempty"`
	// HearingImpaired: subtitles for the deaf and hard of hearing (SDH).
	HearingImpaired bool `json:"hearing_impaired,omitempty"`
}

// ParseSubtitles reads the subtitle files a submission gives, from a form
// field, query parameter or upload metadata: comma-separated
// LANGUAGE[:forced|:sdh]=ID, where ID is a stored subtitle file's id and
// LANGUAGE a BCP 47 or ISO 639 tag ("und" for none).
func ParseSubtitles(v string) ([]SourceSubtitle, error) {
	var out []SourceSubtitle
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		spec, id, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not LANGUAGE=ID (fr=3f2a…, en:sdh=…)", item)
		}
		lang, flag, _ := strings.Cut(strings.TrimSpace(spec), ":")
		s := SourceSubtitle{ID: strings.TrimSpace(id), Language: strings.TrimSpace(lang)}
		switch strings.TrimSpace(flag) {
		case "":
		case "forced":
			s.Forced = true
		case "sdh":
			s.HearingImpaired = true
		default:
			return nil, fmt.Errorf("%q: after the language comes :forced or :sdh, not :%s", item, flag)
		}
		out = append(out, s)
	}
	return out, nil
}

// FormatSubtitles writes subtitle references as ParseSubtitles reads them.
func FormatSubtitles(subs []SourceSubtitle) string {
	parts := make([]string, len(subs))
	for i, s := range subs {
		spec := cmp.Or(s.Language, "und")
		switch {
		case s.Forced:
			spec += ":forced"
		case s.HearingImpaired:
			spec += ":sdh"
		}
		parts[i] = spec + "=" + s.ID
	}
	return strings.Join(parts, ",")
}

// SubtitleKey is where a source's subtitle file with id is stored.
func SubtitleKey(id string) string { return "subtitles/" + id }

// ValidSubtitleID says id is what a stored subtitle file's id looks like.
func ValidSubtitleID(id string) bool {
	if len(id) != sha256.Size*2 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// Asset is a source file herd stores.
type Asset struct {
	ID        string
	Name      string // the name the user gave; never used as a path
	Size      int64
	SHA256    string
	Key       string // blob key
	CreatedAt time.Time
}

// Job is one request: make these outputs from this asset with this profile.
type Job struct {
	ID             string          `json:"id"`
	State          State           `json:"state"`
	Profile        string          `json:"profile"`
	ProfileVersion int             `json:"profile_version"`
	Progress       float64         `json:"progress"`
	Speed          float64         `json:"speed,omitempty"` // encode speed, x realtime
	Attempts       int             `json:"attempts"`
	Error          string          `json:"error,omitempty"`
	ErrorCode      string          `json:"error_code,omitempty"`
	IdempotencyKey string          `json:"idempotency_key"`
	CreatedAt      time.Time       `json:"created_at"`
	StartedAt      *time.Time      `json:"started_at,omitempty"`
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
	Source         Source          `json:"source"`
	AssetKey       string          `json:"-"`
	Plan           json.RawMessage `json:"plan,omitempty"`
	Outputs        json.RawMessage `json:"-"`
	// ChunkSeconds, when set, overrides the profile's chunk_seconds for
	// this job (0: never split).
	ChunkSeconds *float64 `json:"chunk_seconds,omitempty"`
	// Publish names the publishers (the configuration's publishers:) the
	// job's events go to.
	Publish []string `json:"publish,omitempty"`
	// Labels are the submitter's own key=value marks (package label);
	// subscriptions may hear only of jobs that carry some.
	Labels map[string]string `json:"labels,omitempty"`
	// Watch is set on a job made from a watch folder's file.
	Watch *WatchOrigin `json:"watch,omitempty"`
	// Replaces is the job a re-encode campaign made this one to redo.
	Replaces string `json:"replaces,omitempty"`
	// ReplacedBy is the job that became current for this job's stream
	// (its asset and profile) after this one, and ReplacedAt when; the
	// outputs stay for a while (--keep-replaced), then are removed
	// (OutputsRemovedAt).
	ReplacedBy       string     `json:"replaced_by,omitempty"`
	ReplacedAt       *time.Time `json:"replaced_at,omitempty"`
	OutputsRemovedAt *time.Time `json:"outputs_removed_at,omitempty"`
}

// Loudness is an audio stream's EBU R128 measurement (ffmpeg's ebur128
// filter, with true peak): integrated loudness and its gating threshold in
// LUFS, loudness range in LU, true peak in dBTP. Integrated loudness of
// -70 LUFS or less is silence.
type Loudness struct {
	Integrated float64 `json:"integrated"`
	Range      float64 `json:"range"`
	TruePeak   float64 `json:"true_peak"`
	Threshold  float64 `json:"threshold"`
}

// Silent says the measurement found nothing above the absolute gate, or
// no peak at all.
func (l Loudness) Silent() bool { return l.Integrated <= -70 || l.TruePeak <= -150 }

// Valid says every number is finite and within what ebur128 reports.
func (l Loudness) Valid() bool {
	in := func(v, lo, hi float64) bool { return !math.IsNaN(v) && v >= lo && v <= hi }
	return in(l.Integrated, -200, 10) && in(l.Range, 0, 99) && in(l.TruePeak, -200, 30) && in(l.Threshold, -200, 10)
}

// WatchOrigin says which watched file a job was made from.
type WatchOrigin struct {
	Folder string `json:"folder"`
	File   string `json:"file"` // slash path inside the folder
}

// Job life-cycle events, delivered to publishers and subscriptions.
const (
	EventQueued    = "job.queued"
	EventSucceeded = "job.succeeded"
	EventFailed    = "job.failed"
	EventCanceled  = "job.canceled"
)

// LifeCycle is every job event, in the order a job can have them.
var LifeCycle = []string{EventQueued, EventSucceeded, EventFailed, EventCanceled}

// Events only a subscription that names them hears of, never a publisher:
// a job's progress passing each tenth, and each chunk of a split encode
// that succeeds.
const (
	EventProgress       = "job.progress"
	EventChunkSucceeded = "chunk.succeeded"
)

// Events is every event a subscription may name.
var Events = append(slices.Clone(LifeCycle), EventProgress, EventChunkSucceeded)

// ProgressSteps is how many job.progress events a job has at most: one
// each time its progress passes a multiple of 1/ProgressSteps.
const ProgressSteps = 10

// Task is one claimable unit of a job.
type Task struct {
	ID          string    `json:"id"`
	JobID       string    `json:"job_id"`
	Kind        Kind      `json:"kind"`
	State       TaskState `json:"state"`
	DependsOn   []string  `json:"depends_on,omitempty"`
	Attempt     int       `json:"attempt"`
	MaxAttempts int       `json:"max_attempts"`
	Profile     string    `json:"profile"`
	Needs       []string  `json:"needs,omitempty"` // capabilities a worker must have
	Progress    float64   `json:"progress"`
	Speed       float64   `json:"speed,omitempty"`
	Seconds     float64   `json:"seconds,omitempty"` // encode tasks: seconds of source they encode (a chunk's own, else the whole duration once probed)
	Chunk       int       `json:"chunk,omitempty"`   // chunk tasks: which chunk (from 1)
	// Weight is the task's share of its job's progress (0: its kind's).
	Weight      float64         `json:"-"`
	Worker      string          `json:"worker,omitempty"`
	LeaseOwner  string          `json:"-"`
	LeaseExpiry *time.Time      `json:"lease_expires_at,omitempty"`
	Fence       int64           `json:"-"`
	RunAfter    time.Time       `json:"-"`
	Error       string          `json:"error,omitempty"`
	StartedAt   *time.Time      `json:"started_at,omitempty"`
	FinishedAt  *time.Time      `json:"finished_at,omitempty"`
	Commands    [][]string      `json:"commands,omitempty"`
	Result      json.RawMessage `json:"-"`
}

// Share is the task's weight in its job's progress.
func (t Task) Share() float64 {
	if t.Weight > 0 {
		return t.Weight
	}
	return t.Kind.Weight()
}

// Lease is what a worker holds while it runs a task.
type Lease struct {
	TaskID string `json:"task_id"`
	Owner  string `json:"owner"`
	Fence  int64  `json:"fence"`
}

// Claimed is a task handed to a worker, with what it needs to run it.
type Claimed struct {
	Task  Task
	Job   Job
	Lease Lease
	// Deps holds the results of the tasks this one depends on, by kind.
	Deps map[Kind]json.RawMessage
	// Profile is the job's profile as the server knows it, for executors
	// that do not share the server's profile folder (remote workers).
	Profile json.RawMessage
}

// DepResults are the results of the tasks t depends on, by kind, from all
// of its job's tasks: what a claimed task is handed as Claimed.Deps.
func DepResults(t Task, all []Task) map[Kind]json.RawMessage {
	deps := map[Kind]json.RawMessage{}
	for _, d := range all {
		if slices.Contains(t.DependsOn, d.ID) {
			deps[d.Kind] = d.Result
		}
	}
	return deps
}

// UnsafeRune reports a rune that text from outside (a worker's report, a
// probe) must not carry to a terminal or a page: a control character (C0 or
// C1) or a bidirectional override.
func UnsafeRune(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }

// Printable is text from outside (a worker's report, ffmpeg quoting a
// file's own bytes) made fit to show: valid UTF-8 (a bad byte becomes ?)
// without control or bidi characters, but for line breaks and tabs.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if UnsafeRune(r) && r != '\n' && r != '\t' {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// Sentinel errors callers branch on.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("conflict")
	ErrLeaseLost = errors.New("lease lost")
	// ErrRequeue asks the worker to give the task back unrun (no attempt
	// used): it claimed work it cannot start now, such as a GPU task while
	// its GPU's encode sessions are all in use.
	ErrRequeue = errors.New("give the task back")
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct {
	err  error
	code string
}

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so the scheduler fails the task at once instead of retrying it.
func Permanent(code string, err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err, code: code}
}

// IsPermanent reports whether err (or one it wraps) was marked Permanent, and its code.
func IsPermanent(err error) (string, bool) {
	var p *permanentError
	if errors.As(err, &p) {
		return p.code, true
	}
	return "", false
}

// NewID returns a sortable, random id with a prefix: time first so ids sort by creation.
func NewID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%011x%s", prefix, time.Now().UnixMilli(), hex.EncodeToString(b[:]))
}

// DerivedID returns an id made from parts, the same for the same parts:
// for what must be written once however often it is asked for.
func DerivedID(prefix string, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return prefix + "-" + hex.EncodeToString(h[:12])
}

// IdempotencyKey is the identity of a request: the same bytes, profile, version
// and outputs, with the same subtitle files, are never encoded twice.
func IdempotencyKey(sha string, profile string, version int, outputs string, subs ...SourceSubtitle) string {
	parts := []string{sha, profile, fmt.Sprint(version), outputs}
	for _, s := range subs {
		parts = append(parts, fmt.Sprintf("subtitle:%s:%s:%t:%t", s.ID, s.Language, s.Forced, s.HearingImpaired))
	}
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}

// DefaultMaxAttempts is how many times a task runs before its job fails.
const DefaultMaxAttempts = 3

// MaxRetryDelay caps the delay before a task's next attempt after a
// retryable failure, which doubles with every attempt from the failure's
// base delay (backoff.Delay).
const MaxRetryDelay = 10 * time.Minute

// UserError carries a message that is safe to show users (no server paths,
// says what to do) next to the full error for the logs.
type UserError struct {
	Msg string
	Err error
}

func (e *UserError) Error() string {
	if e.Err == nil {
		return e.Msg
	}
	return e.Msg + ": " + e.Err.Error()
}
func (e *UserError) Unwrap() error { return e.Err }

// Userf wraps err with a message for users.
func Userf(err error, format string, args ...any) error {
	return &UserError{Msg: fmt.Sprintf(format, args...), Err: err}
}

// UserMessage returns the outermost user-facing message in err's chain, or fallback.
func UserMessage(err error, fallback string) string {
	var u *UserError
	if errors.As(err, &u) {
		return u.Msg
	}
	return fallback
}
