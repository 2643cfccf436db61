// Package live makes a running hls job watchable before it finishes. Each
// encode, chunk and audio task hands over the media segments ffmpeg
// finishes, one by one (Hub.HandOver): their bytes are stored under the
// attempt's own name, then recorded in the store in the transaction that
// checks the task's lease, so an attempt that lost its task lists nothing.
// The job's live URL serves EVENT playlists of what is recorded: each
// rendition's segments in order, a chunk's only once every chunk before it
// is done, and EXT-X-ENDLIST once the encode is. Segments of chunks and of
// retried attempts are moved onto one timeline as they are served (their
// decode times only), so a player sees one stream. The final, verified
// outputs are made as before; the live copies are removed a while after
// the job ends (Hub.Sweep).
package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pack"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/store"
)

// Store is what the hub needs of the database.
type Store interface {
	GetJob(ctx context.Context, id string) (job.Job, error)
	Tasks(ctx context.Context, jobID string) ([]job.Task, error)
	AddLiveSegment(ctx context.Context, l job.Lease, seg store.LiveSegment, now time.Time) (bool, error)
	LiveSegments(ctx context.Context, jobID string) ([]store.LiveSegment, error)
	EndedLive(ctx context.Context, before time.Time, limit int) ([]string, error)
	DeleteLive(ctx context.Context, jobID string, before time.Time) (bool, error)
}

// Storage is where the live segments' bytes are kept: the blob store.
type Storage interface {
	Open(ctx context.Context, key string) (blob.Object, error)
	PutFile(ctx context.Context, key, path string) error
	RemoveAll(ctx context.Context, key string) error
}

// Hub takes the segments of running encodes and serves the live playlists.
type Hub struct {
	store Store
	files Storage
	log   *slog.Logger
	now   func() time.Time

	// ttl is how long a job's listing answers every request for the job
	// before the store is read again (listTTL).
	ttl   time.Duration
	mu    sync.Mutex
	lists map[string]cachedListing
	// forgot is when this hub last recorded or removed something of a job
	// (kept a minute): a listing read from before then is not kept.
	forgot map[string]time.Time
	reads  singleflight.Group
}

// cachedListing is a job's listing and when it was read.
type cachedListing struct {
	l  *listing
	at time.Time
}

// listTTL is how long a job's listing answers the requests for it. Every
// request (each playlist and each segment) needs one, and reading one
// reads the job, its tasks and every segment listed so far: kept half a
// second, with the requests that find none waiting for one read, what the
// viewers of a job cost the store is about two listings a second, however
// many they are. A playlist half a second old is a prefix of today's
// (nothing listed changes), and it cannot be shorter than one a player
// had before, even from another replica: RFC 8216 (6.3.4) has a player
// wait half a target duration at least before it reloads a playlist (a
// second at least here: the target is two or more), so whatever listing
// answers the reload was read after the earlier answer was made.
const listTTL = 500 * time.Millisecond

// listWait bounds a listing read that requests share.
const listWait = 30 * time.Second

// New returns a Hub.
func New(st Store, files Storage, log *slog.Logger) *Hub {
	return &Hub{store: st, files: files, log: log.With("component", "live"), now: time.Now,
		ttl: listTTL, lists: map[string]cachedListing{}, forgot: map[string]time.Time{}}
}

// listing is the job's listing (list): the one kept when it is less than
// ttl old and not fresh, else one read now, once for every request that
// asks for it meanwhile. A fresh one is read for the caller alone.
func (h *Hub) listing(ctx context.Context, jobID string, fresh bool) (*listing, error) {
	if fresh || h.ttl <= 0 {
		return h.read1(ctx, jobID)
	}
	h.mu.Lock()
	c, ok := h.lists[jobID]
	h.mu.Unlock()
	if ok && h.now().Sub(c.at) < h.ttl {
		return c.l, nil
	}
	ch := h.reads.DoChan(jobID, func() (any, error) {
		// Not the first caller's request context (the others wait on the
		// read too), but never longer than a player would wait.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), listWait)
		defer cancel()
		return h.read1(ctx, jobID)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*listing), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// read1 reads the job's listing and keeps it, unless this hub recorded or
// removed something of the job while it read (it may lack that), or a
// later one is kept already; it drops kept listings gone stale.
func (h *Hub) read1(ctx context.Context, jobID string) (*listing, error) {
	at := h.now()
	l, err := h.list(ctx, jobID)
	if err != nil || h.ttl <= 0 {
		return l, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.lists[jobID]; h.forgot[jobID].Before(at) && (!ok || !c.at.After(at)) {
		h.lists[jobID] = cachedListing{l: l, at: at}
	}
	h.prune(h.now())
	return l, nil
}

// prune drops the kept listings older than ttl, and what forget noted a
// minute ago or more; h.mu is held.
func (h *Hub) prune(now time.Time) {
	for id, c := range h.lists {
		if now.Sub(c.at) >= h.ttl {
			delete(h.lists, id)
		}
	}
	for id, at := range h.forgot {
		if now.Sub(at) >= time.Minute {
			delete(h.forgot, id)
		}
	}
}

// forget drops the job's kept listing, and any being read: what this hub
// recorded or removed shows at once.
func (h *Hub) forget(jobID string) {
	h.mu.Lock()
	delete(h.lists, jobID)
	h.forgot[jobID] = h.now()
	h.mu.Unlock()
}

// Keep is how long a job's live segments outlive the job: a player that
// was watching it live plays on to the end.
const Keep = time.Hour

// Key is the folder of a job's live segments.
func Key(jobID string) string { return "jobs/" + jobID + "/live" }

// MasterName is the live master playlist's name below the live URL.
const MasterName = "master.m3u8"

// segmentName is a media segment ffmpeg's dash muxer finished for an hls
// plan (media.mediaTemplate): a rendition of the task's own output, and
// its number from 1.
var segmentName = regexp.MustCompile(`^chunk-([0-9]{1,3})-([0-9]{5,7})\.m4s$`)

// IsSegment reports whether name is a finished media segment (ffmpeg
// writes it as name.tmp and renames it when it is whole); its init segment
// is InitOf(name), beside it.
func IsSegment(name string) bool { return segmentName.MatchString(name) }

// InitOf names the init segment of the media segment name.
func InitOf(name string) string {
	m := segmentName.FindStringSubmatch(name)
	if m == nil {
		return ""
	}
	return "init-" + m[1] + ".m4s"
}

// SegmentOrder is the order in which a task hands its segments over:
// number first, so that every rendition advances together.
func SegmentOrder(a, b string) int {
	ma, mb := segmentName.FindStringSubmatch(a), segmentName.FindStringSubmatch(b)
	na, _ := strconv.Atoi(ma[2])
	nb, _ := strconv.Atoi(mb[2])
	if na != nb {
		return na - nb
	}
	ra, _ := strconv.Atoi(ma[1])
	rb, _ := strconv.Atoi(mb[1])
	return ra - rb
}

// Hands says whether task t of a job with plan hands segments over: the
// encode, chunk and audio tasks of an hls plan.
func Hands(plan *media.Plan, t job.Task) bool {
	if plan == nil || plan.Format != profile.FormatHLS {
		return false
	}
	switch t.Kind {
	case job.KindEncode:
		return len(plan.Chunks) == 0
	case job.KindChunk:
		return len(plan.Chunks) > 0
	case job.KindAudio:
		return len(plan.Audio) > 0 && audioTask(plan)
	}
	return false
}

// audioTask says whether the plan's audio is its audio task's: a split
// plan's, or an unsplit one's with AudioStep; else (plans made before
// the audio task was the rule) the encode makes it with the video.
func audioTask(plan *media.Plan) bool { return len(plan.Chunks) > 0 || plan.AudioStep }

// Handed says whether task t hands over the file name in its output folder.
func Handed(plan *media.Plan, t job.Task, name string) bool {
	_, err := placeOf(plan, t, name)
	return err == nil
}

// place is where a handed-over segment goes in the live playlists.
type place struct {
	rendition, part, seq int
}

// placeOf maps a task's segment name onto the job's renditions: a video
// task's renditions are the rungs; the audio task's are the audio
// renditions, after the rungs.
func placeOf(plan *media.Plan, t job.Task, name string) (place, error) {
	m := segmentName.FindStringSubmatch(name)
	if m == nil || !Hands(plan, t) {
		return place{}, fmt.Errorf("%s is not a segment a %s task of this job makes", name, t.Kind)
	}
	r, _ := strconv.Atoi(m[1])
	seq, _ := strconv.Atoi(m[2])
	p := place{rendition: r, seq: seq}
	limit, from, to := len(plan.Rungs), 0.0, plan.Duration
	switch t.Kind {
	case job.KindEncode:
		if !audioTask(plan) {
			limit += len(plan.Audio) // the encode makes the audio too
		}
	case job.KindAudio:
		limit = len(plan.Audio)
		p.rendition += len(plan.Rungs)
	case job.KindChunk:
		p.part = t.Chunk - 1
		if p.part < 0 || p.part >= len(plan.Chunks) {
			return place{}, fmt.Errorf("chunk %d is not in the job's plan", t.Chunk)
		}
		from = plan.ChunkStart(p.part)
		if end := plan.ChunkEnd(p.part); end > 0 {
			to = end
		}
	}
	// No more segments than the part's length can hold (with a tenth and
	// two to spare for a probed duration that fell short): a worker cannot
	// list more.
	most := int(math.Ceil(1.1*(to-from)/max(plan.SegmentSeconds, 0.1))) + 2
	if r >= limit || seq < 1 || seq > most {
		return place{}, fmt.Errorf("%s is not a segment a %s task of this job makes", name, t.Kind)
	}
	return p, nil
}

// partSegments is how many segments a part that is not the last one has:
// a chunk of a split plan runs from one point of the segment grid to
// another.
func partSegments(plan *media.Plan, part int) int {
	return int(math.Round((plan.ChunkEnd(part) - plan.ChunkStart(part)) / plan.SegmentSeconds))
}

// attemptName names an attempt: its task and fence.
func attemptName(l job.Lease) string { return l.TaskID + "-" + strconv.FormatInt(l.Fence, 10) }

// attemptRe is attemptName's shape.
var attemptRe = regexp.MustCompile(`^t[0-9a-f]{1,40}-[0-9]{1,19}$`)

func segmentFile(rendition, seq int) string { return fmt.Sprintf("r%d-%d.m4s", rendition, seq) }
func initFile(rendition int) string         { return fmt.Sprintf("r%d-init.m4s", rendition) }

// ErrRefused wraps what HandOver refuses to list, whatever the lease: a
// name no task of the job makes, or bytes that are not a media segment.
var ErrRefused = errors.New("live segment refused")

// HandOver lists the media segment name, which ffmpeg finished in dir (its
// init segment beside it), for claimed task c (pipeline.LiveSink; step,
// the step the task writes, is the task's own here). It stores the bytes first
// and records them last, so a listed segment can always be read. A
// segment listed already (handed over twice, or by an earlier attempt)
// stays as it was. It returns job.ErrLeaseLost when c no longer holds its
// task.
func (h *Hub) HandOver(ctx context.Context, c *job.Claimed, _, dir, name string) error {
	var plan media.Plan
	if err := json.Unmarshal(c.Job.Plan, &plan); err != nil {
		return fmt.Errorf("%w: the job has no plan", ErrRefused)
	}
	pl, err := placeOf(&plan, c.Task, name)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	init, seg := filepath.Join(dir, InitOf(name)), filepath.Join(dir, name)
	st, err := os.Stat(seg)
	if err != nil {
		return err
	}
	ist, err := os.Stat(init)
	if err != nil {
		return err
	}
	if st.Size() > maxSegment || ist.Size() > maxInit {
		return fmt.Errorf("%w: %s or its init segment is larger than one can be (%d and %d bytes)", ErrRefused, name, maxSegment, maxInit)
	}
	tm, err := pack.MeasureSegment(init, seg)
	if errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrRefused, name, err)
	}
	if secs := float64(tm.Duration) / float64(tm.Timescale); secs > 2*plan.SegmentSeconds+1 {
		return fmt.Errorf("%w: %s lasts %.3f s, more than a segment of this plan can", ErrRefused, name, secs)
	}
	attempt := attemptName(c.Lease)
	folder := Key(c.Job.ID) + "/" + attempt + "/"
	if pl.seq == 1 {
		// With the attempt's first segment of the part: an attempt hands
		// its segments over in order, the first before any other (and
		// again after a hand-over cut short).
		if err := h.files.PutFile(ctx, folder+initFile(pl.rendition), init); err != nil {
			return fmt.Errorf("store live init segment: %w", err)
		}
	}
	if err := h.files.PutFile(ctx, folder+segmentFile(pl.rendition, pl.seq), seg); err != nil {
		return fmt.Errorf("store live segment: %w", err)
	}
	_, err = h.store.AddLiveSegment(ctx, c.Lease, store.LiveSegment{
		JobID: c.Job.ID, Rendition: pl.rendition, Part: pl.part, Seq: pl.seq, Attempt: attempt, Codec: tm.Codec,
		Timescale: int64(tm.Timescale), Start: int64(tm.Start), Duration: int64(tm.Duration), Size: st.Size(), //nolint:gosec // G115: decode times far below 2^63
	}, h.now())
	if err == nil {
		h.forget(c.Job.ID)
	}
	return err
}

// entry is a listed segment and the shift that puts it on the live timeline.
type entry struct {
	seg   store.LiveSegment
	shift int64
}

// listing is what a job's live playlists list now.
type listing struct {
	job   job.Job
	plan  media.Plan
	lists [][]entry // by rendition: video rungs, then audio
	ended []bool
}

// Error is a live request that cannot be answered, with its HTTP status.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

func notFound(msg string) error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Message: msg}
}

// list reads the job, its tasks and its live segments, and decides what
// each playlist lists: a rendition's parts in order, each part's segments
// from 1 while they follow on, the next part only once the task that
// makes this one succeeded. Nothing it lists can change later: segments
// are never replaced, a listed run only grows, and a part is passed only
// once its task ended (its lease gone, nothing more can be recorded).
func (h *Hub) list(ctx context.Context, jobID string) (*listing, error) {
	j, err := h.store.GetJob(ctx, jobID)
	if errors.Is(err, job.ErrNotFound) {
		return nil, notFound("no such job")
	}
	if err != nil {
		return nil, err
	}
	l := &listing{job: j}
	if len(j.Plan) == 0 {
		return nil, &Error{Status: http.StatusNotFound, Code: "not_ready", Message: "the job has not been planned yet; its live playlist starts with its encode"}
	}
	if err := json.Unmarshal(j.Plan, &l.plan); err != nil {
		return nil, fmt.Errorf("live: read plan: %w", err)
	}
	if l.plan.Format != profile.FormatHLS {
		return nil, notFound("only an hls job has a live playlist; this one makes a " + l.plan.Format + " file")
	}
	tasks, err := h.store.Tasks(ctx, jobID)
	if err != nil {
		return nil, err
	}
	segs, err := h.store.LiveSegments(ctx, jobID)
	if err != nil {
		return nil, err
	}
	video := len(l.plan.Rungs)
	n := video + len(l.plan.Audio)
	byRendition := make([][]store.LiveSegment, n)
	for _, s := range segs {
		if s.Rendition >= 0 && s.Rendition < n {
			byRendition[s.Rendition] = append(byRendition[s.Rendition], s)
		}
	}
	done := func(kind job.Kind, chunk int) bool {
		return slices.ContainsFunc(tasks, func(t job.Task) bool {
			return t.Kind == kind && (kind != job.KindChunk || t.Chunk == chunk) && t.State == job.TaskSucceeded
		})
	}
	l.lists, l.ended = make([][]entry, n), make([]bool, n)
	for r := range n {
		parts, kind := 1, job.KindEncode
		switch {
		case r < video && len(l.plan.Chunks) > 0:
			parts, kind = len(l.plan.Chunks), job.KindChunk
		case r >= video && audioTask(&l.plan):
			kind = job.KindAudio
		}
		var (
			list     []entry
			next, ts int64 // where the next segment starts on the live timeline, in ts
			complete = true
		)
		for p := range parts {
			want := 1
			for _, s := range byRendition[r] {
				if s.Part != p || s.Seq != want || s.Timescale <= 0 {
					continue
				}
				if p+1 < parts && s.Seq > partSegments(&l.plan, p) {
					break // more than a chunk of the grid holds
				}
				switch {
				case len(list) == 0:
					next, ts = s.Start, s.Timescale
				case s.Timescale != ts:
					next = int64(math.Round(float64(next) * float64(s.Timescale) / float64(ts)))
					ts = s.Timescale
				}
				list = append(list, entry{seg: s, shift: next - s.Start})
				next += s.Duration
				want++
			}
			// A part is passed only once its task is done and every one of
			// its segments is listed: one whose hand-over failed would put
			// the next part early, out of step with the other renditions.
			if !done(kind, p+1) || (p+1 < parts && want-1 != partSegments(&l.plan, p)) {
				complete = false
				break
			}
		}
		l.lists[r] = list
		l.ended[r] = complete || j.State.Final()
	}
	return l, nil
}

// target is every live media playlist's EXT-X-TARGETDURATION, fixed by the
// plan before the first segment is listed (RFC 8216 forbids a growing
// playlist to change it): the segment length, rounded up, which the
// encoder's keyframe grid holds every segment to, and a second more, so
// that a segment a frame or an audio packet longer still fits.
func (l *listing) target() int {
	return max(int(math.Ceil(l.plan.SegmentSeconds-1e-6)), 1) + 1
}

// MediaName names rendition r's live media playlist.
func MediaName(r int) string { return "media_" + strconv.Itoa(r) + ".m3u8" }

// mediaRe matches MediaName.
var mediaRe = regexp.MustCompile(`^media_([0-9]{1,3})\.m3u8$`)

// segmentRe matches a live segment's path below the live URL.
var segmentRe = regexp.MustCompile(`^(t[0-9a-f]{1,40}-[0-9]{1,19})/r([0-9]{1,3})-(init|[0-9]{1,7})\.m4s$`)

// File is a live file to answer with.
type File struct {
	Body         []byte
	ContentType  string
	CacheControl string
}

// Playlists change while the encode runs; segments never do once listed.
const (
	playlistCache = "no-cache"
	segmentCache  = "private, max-age=86400, immutable"
)

// File returns the file at p below job jobID's live URL: the master
// playlist, a media playlist, or a listed segment (moved onto the live
// timeline) or its init segment. Errors are *Error where a user can act.
func (h *Hub) File(ctx context.Context, jobID, p string) (*File, error) {
	switch {
	case p == MasterName:
		l, err := h.listing(ctx, jobID, false)
		if err != nil {
			return nil, err
		}
		return l.master()
	case mediaRe.MatchString(p):
		r, _ := strconv.Atoi(mediaRe.FindStringSubmatch(p)[1])
		l, err := h.listing(ctx, jobID, false)
		if err != nil {
			return nil, err
		}
		if r >= len(l.lists) {
			return nil, notFound("the job has no rendition " + strconv.Itoa(r))
		}
		return &File{Body: l.media(r), ContentType: "application/vnd.apple.mpegurl", CacheControl: playlistCache}, nil
	case segmentRe.MatchString(p):
		m := segmentRe.FindStringSubmatch(p)
		r, _ := strconv.Atoi(m[2])
		return h.segment(ctx, jobID, m[1], r, m[3])
	}
	return nil, notFound("a live playlist has " + MasterName + ", media_N.m3u8 and the segments they list")
}

// media is rendition r's EVENT playlist.
func (l *listing) media(r int) []byte {
	segs := make([]pack.LiveSegment, len(l.lists[r]))
	for i, e := range l.lists[r] {
		segs[i] = pack.LiveSegment{
			URI:      e.seg.Attempt + "/" + segmentFile(r, e.seg.Seq),
			Init:     e.seg.Attempt + "/" + initFile(r),
			Duration: float64(e.seg.Duration) / float64(e.seg.Timescale),
		}
	}
	return pack.LiveMedia(l.target(), segs, l.ended[r])
}

// master is the live master playlist; it waits for every rendition's
// first segment, whose init segment says its codec.
func (l *listing) master() (*File, error) {
	for _, list := range l.lists {
		if len(list) == 0 {
			if l.job.State.Final() {
				return nil, notFound("the job ended before its encode made a segment of every rendition")
			}
			return nil, &Error{Status: http.StatusNotFound, Code: "not_ready", Message: "the encode has not finished a segment of every rendition yet; ask again in a few seconds"}
		}
	}
	var video, audio []pack.LiveRendition
	for i, r := range l.plan.Rungs {
		video = append(video, pack.LiveRendition{Playlist: MediaName(i), Codec: l.lists[i][0].seg.Codec,
			Bandwidth: cmpRate(r.MaxRate, r.Bitrate), Width: r.Width, Height: r.Height})
	}
	for i, a := range l.plan.Audio {
		r := len(l.plan.Rungs) + i
		audio = append(audio, pack.LiveRendition{Playlist: MediaName(r), Codec: l.lists[r][0].seg.Codec,
			Bandwidth: cmpRate(a.Bitrate, audioRate(l.lists[r])), Language: media.LanguageTag(a.Language), Name: a.Name,
			Default: a.Default, Commentary: a.Commentary, Channels: a.Channels})
	}
	body := pack.LiveMaster(video, audio, l.plan.FrameRate(), l.plan.VideoRange())
	return &File{Body: body, ContentType: "application/vnd.apple.mpegurl", CacheControl: playlistCache}, nil
}

// cmpRate is the first rate that is set.
func cmpRate(rates ...int64) int64 {
	for _, r := range rates {
		if r > 0 {
			return r
		}
	}
	return 0
}

// audioRate is a copied track's rate, from its first segment's size.
func audioRate(list []entry) int64 {
	s := list[0].seg
	if s.Duration <= 0 {
		return 0
	}
	return int64(float64(s.Size*8) * float64(s.Timescale) / float64(s.Duration))
}

// segment answers one listed segment, or the init segment of a listed
// attempt's rendition. One the kept listing does not list yet is looked
// for in a fresh one: its playlist may have come from a listing read
// since (by another server, or this one an instant later).
func (h *Hub) segment(ctx context.Context, jobID, attempt string, r int, which string) (*File, error) {
	if !attemptRe.MatchString(attempt) {
		return nil, notFound("no such live segment")
	}
	seq, _ := strconv.Atoi(which)
	find := func(l *listing) int {
		if r >= len(l.lists) {
			return -1
		}
		return slices.IndexFunc(l.lists[r], func(e entry) bool {
			return e.seg.Attempt == attempt && (which == "init" || e.seg.Seq == seq)
		})
	}
	l, err := h.listing(ctx, jobID, false)
	if err != nil {
		return nil, err
	}
	k := find(l)
	if k < 0 {
		if l, err = h.listing(ctx, jobID, true); err != nil {
			return nil, err
		}
		k = find(l)
	}
	if k < 0 {
		return nil, notFound("no such live segment (only listed segments are served)")
	}
	folder := Key(jobID) + "/" + attempt + "/"
	if which == "init" {
		body, err := h.read(ctx, folder+initFile(r))
		if err != nil {
			return nil, err
		}
		return &File{Body: body, ContentType: "video/mp4", CacheControl: segmentCache}, nil
	}
	body, err := h.read(ctx, folder+segmentFile(r, seq))
	if err != nil {
		return nil, err
	}
	if shift := l.lists[r][k].shift; shift != 0 {
		init, err := h.read(ctx, folder+initFile(r))
		if err != nil {
			return nil, err
		}
		if body, err = pack.Retime(init, body, shift); err != nil {
			return nil, fmt.Errorf("live: retime %s: %w", segmentFile(r, seq), err)
		}
	}
	return &File{Body: body, ContentType: "video/mp4", CacheControl: segmentCache}, nil
}

// maxSegment bounds a live segment read into memory, and maxInit an init
// segment (a few hundred bytes: a moov without samples).
const (
	maxSegment = 256 << 20
	maxInit    = 1 << 20
)

func (h *Hub) read(ctx context.Context, key string) ([]byte, error) {
	f, err := h.files.Open(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, notFound("the live segment is gone (the job ended more than an hour ago)")
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, maxSegment+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxSegment {
		return nil, fmt.Errorf("live: %s is larger than %d bytes", key, maxSegment)
	}
	return body, nil
}

// Run sweeps (Sweep) every few minutes until ctx ends, and drops the
// listings kept since (prune).
func (h *Hub) Run(ctx context.Context) error {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		h.mu.Lock()
		h.prune(h.now())
		h.mu.Unlock()
		for {
			n, err := h.Sweep(ctx, 100)
			if err != nil && ctx.Err() == nil {
				h.log.Warn("could not remove the live segments of ended jobs; trying again later", "err", err)
			}
			if err != nil || n < 100 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sweep removes the live segments of jobs that ended more than Keep ago,
// up to limit jobs; it says how many.
func (h *Hub) Sweep(ctx context.Context, limit int) (int, error) {
	before := h.now().Add(-Keep)
	ids, err := h.store.EndedLive(ctx, before, limit)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		// The rows first, and only while the job still ended (not retried
		// since): nothing is listed then whose bytes could be gone.
		deleted, err := h.store.DeleteLive(ctx, id, before)
		if err == nil && deleted {
			h.forget(id)
			err = h.files.RemoveAll(ctx, Key(id))
		}
		if err != nil {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			h.log.Warn("could not remove a job's live segments; trying again later", "job_id", id, "err", err)
			continue
		}
		n++
	}
	return n, nil
}
