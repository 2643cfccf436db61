// Package ingest turns incoming files (API uploads, server-side imports, and
// later watch folders) into stored assets and queued jobs. A file is hashed
// while it is stored, committed only when complete, and the same bytes with
// the same profile are never queued twice.
package ingest

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/label"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/safefs"
)

// Kicker wakes idle workers.
type Kicker interface{ Kick() }

// Blobs is where sources are stored: the local disk or a bucket.
type Blobs interface {
	Create() (*blob.Writer, error)
	// Adopt stores a whole file whose SHA-256 is known without writing it again.
	Adopt(path, sum string, size int64) (*blob.Writer, error)
	Has(ctx context.Context, key string) (bool, error)
}

// Config limits what is accepted.
type Config struct {
	MaxUpload   int64    // bytes; 0 → DefaultMaxUpload
	ImportRoots []string // folders a source_path may come from
	MaxAttempts int      // per task; 0 → job.DefaultMaxAttempts
	// Publishers are the configured publishers' types by name: the ones a
	// submission may name.
	Publishers map[string]string
}

// DefaultMaxUpload is the largest source file accepted, in bytes (50 GiB).
const DefaultMaxUpload = 50 << 30

// JobStore is what the submitter needs from the store: it stores a source
// as an asset once and creates its job.
type JobStore interface {
	PutAsset(ctx context.Context, a job.Asset) (job.Asset, error)
	CreateJob(ctx context.Context, j job.Job, tasks []job.Task, now time.Time) (out job.Job, created bool, err error)
}

// Submitter creates jobs.
type Submitter struct {
	st       JobStore
	blobs    Blobs
	profiles *profile.Set
	kick     Kicker
	cfg      Config
}

// New returns a Submitter.
func New(st JobStore, blobs Blobs, profiles *profile.Set, kick Kicker, cfg Config) *Submitter {
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = DefaultMaxUpload
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = job.DefaultMaxAttempts
	}
	return &Submitter{st: st, blobs: blobs, profiles: profiles, kick: kick, cfg: cfg}
}

// MaxUpload is the largest accepted source in bytes.
func (s *Submitter) MaxUpload() int64 { return s.cfg.MaxUpload }

// Errors callers map to HTTP statuses.
var (
	ErrTooLarge       = errors.New("file too large")
	ErrUnknownProfile = errors.New("unknown profile")
	ErrBadPath        = errors.New("path not allowed")
	ErrEmpty          = errors.New("empty file")
	ErrBadOption      = errors.New("invalid option")
)

// Options are what a submitter may choose for one job besides its profile.
type Options struct {
	// ChunkSeconds overrides the profile's chunk_seconds (nil: the profile's).
	ChunkSeconds *float64
	// Publish names the configured publishers the job's events go to.
	Publish []string
	// Labels are the submitter's key=value marks (label.Check).
	Labels map[string]string
	// Watch names the watched file the job is made from (watch folders only).
	Watch *job.WatchOrigin
	// Subtitles are subtitle files given with the source, stored before
	// (StoreSubtitle).
	Subtitles []job.SourceSubtitle
}

// MaxSubtitles bounds the subtitle files one submission gives.
const MaxSubtitles = 32

// ParseSubtitles reads the subtitle files a submission gives, from a form
// field, query parameter or upload metadata (job.ParseSubtitles).
func ParseSubtitles(v string) ([]job.SourceSubtitle, error) {
	subs, err := job.ParseSubtitles(v)
	if err != nil {
		return nil, fmt.Errorf("%w: subtitles: %w", ErrBadOption, err)
	}
	return subs, nil
}

// ErrBadSubtitle marks a subtitle file that does not parse; its message
// says on which line.
var ErrBadSubtitle = errors.New("the subtitle file was refused")

// StoreSubtitle reads a subtitle file given with a source (SRT, WebVTT,
// ASS/SSA or TTML; media.ReadSidecar), converts it to WebVTT and stores
// it. One that does not parse is refused with the line it failed on.
func (s *Submitter) StoreSubtitle(ctx context.Context, r io.Reader) (protocol.StoredSubtitle, error) {
	data, err := io.ReadAll(io.LimitReader(r, media.MaxSidecarBytes+1))
	if err != nil {
		return protocol.StoredSubtitle{}, fmt.Errorf("read the subtitle file: %w", err)
	}
	if len(data) > media.MaxSidecarBytes {
		return protocol.StoredSubtitle{}, fmt.Errorf("%w: the limit is %d bytes for a subtitle file", ErrTooLarge, media.MaxSidecarBytes)
	}
	sc, err := media.ReadSidecar(data)
	if err != nil {
		return protocol.StoredSubtitle{}, fmt.Errorf("%w: %w", ErrBadSubtitle, err)
	}
	w, err := s.blobs.Create()
	if err != nil {
		return protocol.StoredSubtitle{}, err
	}
	defer w.Abort()
	if _, err := w.Write(sc.WebVTT); err != nil {
		return protocol.StoredSubtitle{}, fmt.Errorf("store the subtitle file: %w", err)
	}
	id := w.SHA256()
	if have, err := s.blobs.Has(ctx, job.SubtitleKey(id)); err != nil {
		return protocol.StoredSubtitle{}, err
	} else if !have {
		if err := w.Commit(job.SubtitleKey(id)); err != nil {
			return protocol.StoredSubtitle{}, err
		}
	}
	return protocol.StoredSubtitle{ID: id, Format: sc.Format, Cues: sc.Cues, Size: int64(len(sc.WebVTT))}, nil
}

// checkSubtitles checks the subtitle files a submission gives: stored,
// each language a tag, and a profile that makes WebVTT renditions. It
// writes each language as BCP 47.
func (s *Submitter) checkSubtitles(ctx context.Context, p *profile.Profile, subs []job.SourceSubtitle) error {
	if len(subs) == 0 {
		return nil
	}
	if p.Subtitles != profile.SubsWebVTT || p.Format != profile.FormatHLS {
		return fmt.Errorf("%w: subtitles: profile %s keeps only the source's own subtitle streams; subtitle files are packaged by profiles with subtitles: webvtt (%s)",
			ErrBadOption, p.Name, strings.Join(s.webVTTProfiles(), ", "))
	}
	if len(subs) > MaxSubtitles {
		return fmt.Errorf("%w: subtitles: %d files; a job takes at most %d", ErrBadOption, len(subs), MaxSubtitles)
	}
	for i := range subs {
		sub := &subs[i]
		if !job.ValidSubtitleID(sub.ID) {
			return fmt.Errorf("%w: subtitles: %q is not a subtitle file's id (POST the file to /api/v1/subtitles first; its answer's id)", ErrBadOption, sub.ID)
		}
		if sub.Forced && sub.HearingImpaired {
			return fmt.Errorf("%w: subtitles: a subtitle file is forced or SDH, not both", ErrBadOption)
		}
		if lang := sub.Language; lang != "" && lang != "und" {
			if sub.Language = media.LanguageTag(lang); sub.Language == "" {
				return fmt.Errorf("%w: subtitles: %q is not a language tag (fr, pt-BR, fre; und for none)", ErrBadOption, lang)
			}
		} else {
			sub.Language = ""
		}
		have, err := s.blobs.Has(ctx, job.SubtitleKey(sub.ID))
		if err != nil {
			return err
		}
		if !have {
			return fmt.Errorf("%w: subtitles: no subtitle file %s is stored (POST it to /api/v1/subtitles first)", ErrBadOption, sub.ID)
		}
	}
	return nil
}

// webVTTProfiles names the profiles that package subtitle files.
func (s *Submitter) webVTTProfiles() []string {
	var names []string
	for _, name := range s.profiles.Names() {
		if p, ok := s.profiles.Get(name); ok && p.Subtitles == profile.SubsWebVTT && p.Format == profile.FormatHLS {
			names = append(names, name)
		}
	}
	return names
}

// ParsePublish reads a comma-separated list of publisher names from a form
// field, query parameter or upload metadata.
func ParsePublish(v string) []string {
	var out []string
	for _, name := range strings.Split(v, ",") {
		if name = strings.TrimSpace(name); name != "" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// ParseLabels reads labels written k=v,k2=v2 from a form field, query
// parameter or upload metadata.
func ParseLabels(v string) (map[string]string, error) {
	ls, err := label.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("%w: labels: %w", ErrBadOption, err)
	}
	return ls, nil
}

// ParseChunkSeconds reads chunk_seconds from a form field, query parameter
// or upload metadata; "" leaves it unset.
func ParseChunkSeconds(v string) (*float64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: chunk_seconds: %q is not a number of seconds", ErrBadOption, v)
	}
	return &f, nil
}

// Check resolves a profile and checks opt against it: what a submission
// is refused for before a byte of it is stored. It writes opt's subtitle
// languages as BCP 47.
func (s *Submitter) Check(ctx context.Context, profileName string, opt Options) (*profile.Profile, error) {
	p, err := s.Profile(profileName)
	if err != nil {
		return nil, err
	}
	if err := s.checkSubtitles(ctx, p, opt.Subtitles); err != nil {
		return nil, err
	}
	if v := opt.ChunkSeconds; v != nil {
		if err := p.CheckChunkSeconds(*v); err != nil {
			return nil, fmt.Errorf("%w: chunk_seconds: %w", ErrBadOption, err)
		}
	}
	if err := label.Check(opt.Labels); err != nil {
		return nil, fmt.Errorf("%w: labels: %w", ErrBadOption, err)
	}
	for _, name := range opt.Publish {
		typ, ok := s.cfg.Publishers[name]
		switch {
		case !ok:
			known := slices.Sorted(maps.Keys(s.cfg.Publishers))
			if len(known) == 0 {
				return nil, fmt.Errorf("%w: publish: no publisher %q; this server has none (declare them under publishers: in its configuration file)", ErrBadOption, name)
			}
			return nil, fmt.Errorf("%w: publish: no publisher %q; this server has %s", ErrBadOption, name, strings.Join(known, ", "))
		case typ == config.PublishLibrary && p.Format != "mp4" && p.Format != "mkv":
			return nil, fmt.Errorf("%w: publish: %s is a library, which takes one MP4 or MKV file; profile %s makes %s", ErrBadOption, name, p.Name, p.Format)
		}
	}
	return p, nil
}

// Profile resolves a profile name, with an error that lists the choices.
func (s *Submitter) Profile(name string) (*profile.Profile, error) {
	p, ok := s.profiles.Get(name)
	if !ok {
		return nil, fmt.Errorf("%w %q: choose one of %s", ErrUnknownProfile, name, strings.Join(s.profiles.Names(), ", "))
	}
	return p, nil
}

// CleanName makes a user-supplied file name safe to show: never used as a path.
func CleanName(name string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	name = filepath.Base("/" + name)
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, name)
	if name == "/" || name == "." || name == ".." || name == "" {
		name = "upload"
	}
	name = strings.ToValidUTF8(name, "")
	for len(name) > 200 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	return name
}

// Upload stores r (at most MaxUpload bytes) and submits a job for it.
func (s *Submitter) Upload(ctx context.Context, name, profileName string, opt Options, r io.Reader) (job.Job, bool, error) {
	p, err := s.Check(ctx, profileName, opt)
	if err != nil {
		return job.Job{}, false, err
	}
	w, err := s.blobs.Create()
	if err != nil {
		return job.Job{}, false, err
	}
	defer w.Abort()
	// A multipart part reads a few KiB at a time: gathered into 1 MiB, the
	// writes and the hashing take a fraction of the system calls.
	bw := bufio.NewWriterSize(w, 1<<20)
	n, err := io.Copy(bw, io.LimitReader(r, s.cfg.MaxUpload+1))
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return job.Job{}, false, fmt.Errorf("store upload: %w", err)
	}
	if n > s.cfg.MaxUpload {
		return job.Job{}, false, fmt.Errorf("%w: the limit is %d bytes", ErrTooLarge, s.cfg.MaxUpload)
	}
	return s.commit(ctx, w, CleanName(name), p, opt, "")
}

// Stored is a whole source whose bytes are stored already and were hashed
// as they arrived (a tus upload): a file at Path, or an object of the
// bucket the blob store keeps its blobs in, under blob key Key.
type Stored struct {
	Path, Key string
	SHA256    string
	Size      int64
}

// ObjectAdopter is a blob store that can take an object of its own bucket
// as a blob without its bytes leaving the bucket (blob.S3).
type ObjectAdopter interface {
	AdoptObject(from, sum string, size int64) (*blob.Writer, error)
}

// Adopt submits src as the source named name without writing it again: a
// file is linked into the store (copied where it cannot be linked, uploaded
// to a bucket), an object is copied inside its bucket. src is left where
// it is for the caller to remove.
func (s *Submitter) Adopt(ctx context.Context, src Stored, name, profileName string, opt Options) (job.Job, bool, error) {
	p, err := s.Check(ctx, profileName, opt)
	if err != nil {
		return job.Job{}, false, err
	}
	if src.Size > s.cfg.MaxUpload {
		return job.Job{}, false, fmt.Errorf("%w: the limit is %d bytes", ErrTooLarge, s.cfg.MaxUpload)
	}
	var w *blob.Writer
	switch oa, ok := s.blobs.(ObjectAdopter); {
	case src.Key == "":
		w, err = s.blobs.Adopt(src.Path, src.SHA256, src.Size)
	case ok:
		w, err = oa.AdoptObject(src.Key, src.SHA256, src.Size)
	default:
		err = errors.New("an upload kept in a bucket needs the sources in that bucket (S3 storage)")
	}
	if err != nil {
		return job.Job{}, false, err
	}
	defer w.Abort()
	return s.commit(ctx, w, CleanName(name), p, opt, "")
}

// Import copies a file from an allowed import root and submits a job for it.
// The file is opened through its import root, so neither a symbolic link
// nor a folder swapped for one leads outside the import folders.
func (s *Submitter) Import(ctx context.Context, path, profileName string, opt Options) (job.Job, bool, error) {
	p, err := s.Check(ctx, profileName, opt)
	if err != nil {
		return job.Job{}, false, err
	}
	root, rel, err := s.allowed(path)
	if err != nil {
		return job.Job{}, false, err
	}
	defer root.Close()
	return s.importFile(ctx, root, rel, CleanName(filepath.Base(rel)), p, opt, "")
}

// ImportFile copies the file rel inside root, a folder herd itself chose
// (an import folder, a watch folder's work area), and submits a job for it.
// Symbolic links are followed only while they stay inside root. The same
// bytes with the same profile give the same job while it is live.
//
// id is the id a new job gets (empty: a fresh one). A caller that records id
// before the call finds the job by it after a crash that cut the call short,
// whatever became of the job since: the content's key only finds live jobs.
func (s *Submitter) ImportFile(ctx context.Context, root *os.Root, rel, name string, p *profile.Profile, opt Options, id string) (job.Job, bool, error) {
	return s.importFile(ctx, root, rel, name, p, opt, id)
}

func (s *Submitter) importFile(ctx context.Context, root *os.Root, rel, name string, p *profile.Profile, opt Options, id string) (job.Job, bool, error) {
	f, err := safefs.Open(root, rel)
	switch {
	case errors.Is(err, safefs.ErrNotRegular):
		return job.Job{}, false, fmt.Errorf("%w: not a regular file", ErrBadPath)
	case errors.Is(err, fs.ErrNotExist):
		return job.Job{}, false, fmt.Errorf("%w: it does not exist", ErrBadPath)
	case err != nil:
		return job.Job{}, false, fmt.Errorf("%w: it cannot be opened inside its folder (a symbolic link leading outside is not followed)", ErrBadPath)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return job.Job{}, false, fmt.Errorf("%w: cannot open it", ErrBadPath)
	}
	if st.Size() > s.cfg.MaxUpload {
		return job.Job{}, false, fmt.Errorf("%w: the limit is %d bytes", ErrTooLarge, s.cfg.MaxUpload)
	}
	w, err := s.blobs.Create()
	if err != nil {
		return job.Job{}, false, err
	}
	defer w.Abort()
	if _, err := io.Copy(w, f); err != nil {
		return job.Job{}, false, fmt.Errorf("copy source: %w", err)
	}
	return s.commit(ctx, w, CleanName(name), p, opt, id)
}

// allowed finds the import root path lies in, by its name (the root's own
// symbolic links resolved or not), and opens it. It returns the root and
// path's name inside it; what that name leads to is resolved inside the
// root when it is opened.
func (s *Submitter) allowed(path string) (*os.Root, string, error) {
	if len(s.cfg.ImportRoots) == 0 {
		return nil, "", fmt.Errorf("%w: this server has no import folders (start it with --import-root DIR)", ErrBadPath)
	}
	if !filepath.IsAbs(path) {
		return nil, "", fmt.Errorf("%w: source_path must be absolute", ErrBadPath)
	}
	path = filepath.Clean(path)
	for _, root := range s.cfg.ImportRoots {
		bases := []string{filepath.Clean(root)}
		if real, err := filepath.EvalSymlinks(root); err == nil && real != bases[0] {
			bases = append(bases, real)
		}
		for _, base := range bases {
			rel, err := filepath.Rel(base, path)
			if err != nil || rel == "." || !filepath.IsLocal(rel) {
				continue
			}
			r, err := os.OpenRoot(base)
			if err != nil {
				continue
			}
			return r, rel, nil
		}
	}
	return nil, "", fmt.Errorf("%w: it is outside the import folders", ErrBadPath)
}

// commit stores the source and creates its job, with id where it is not
// empty, or returns the live job the same request already has.
func (s *Submitter) commit(ctx context.Context, w *blob.Writer, name string, p *profile.Profile, opt Options, id string) (job.Job, bool, error) {
	if w.Size() == 0 {
		return job.Job{}, false, fmt.Errorf("%w: the file has no bytes", ErrEmpty)
	}
	sha := w.SHA256()
	key := "sources/" + sha
	if have, err := s.blobs.Has(ctx, key); err != nil {
		return job.Job{}, false, err
	} else if have {
		w.Abort() // the same bytes are stored already
	} else if err := w.Commit(key); err != nil {
		return job.Job{}, false, err
	}
	a, err := s.st.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: name, Size: w.Size(), SHA256: sha, Key: key, CreatedAt: time.Now().UTC()})
	if err != nil {
		return job.Job{}, false, err
	}
	out, created, err := s.queue(ctx, job.Job{
		ID:     cmp.Or(id, job.NewID("j")),
		Source: job.Source{AssetID: a.ID, Name: name, Size: a.Size, SHA256: sha},
	}, p, opt)
	if err != nil {
		return job.Job{}, false, err
	}
	if !created && !maps.Equal(out.Labels, opt.Labels) {
		return out, false, fmt.Errorf("job %s is this file with this profile, labelled [%s], not [%s] (the same file and profile is one job): submit it with those labels, or with another profile: %w",
			out.ID, label.Format(out.Labels), label.Format(opt.Labels), job.ErrConflict)
	}
	for _, name := range opt.Publish {
		if !slices.Contains(out.Publish, name) {
			// The same request again is the same job; asking for other
			// publishers would silently get none of them.
			return out, false, fmt.Errorf("job %s is this file with this profile, delivered to [%s], not to %s (the same file and profile is one job): submit it naming only those publishers, or with another profile: %w",
				out.ID, strings.Join(out.Publish, ", "), name, job.ErrConflict)
		}
	}
	return out, created, nil
}

// queue creates j (its id and source set) as a job of profile p with opt,
// or finds the live job the same request made already.
func (s *Submitter) queue(ctx context.Context, j job.Job, p *profile.Profile, opt Options) (job.Job, bool, error) {
	j.Profile, j.ProfileVersion = p.Name, p.Version
	j.Source.Subtitles = opt.Subtitles
	j.IdempotencyKey = job.IdempotencyKey(j.Source.SHA256, p.Name, p.Version, p.Format, opt.Subtitles...)
	j.ChunkSeconds, j.Publish, j.Labels, j.Watch = opt.ChunkSeconds, opt.Publish, opt.Labels, opt.Watch
	out, created, err := s.st.CreateJob(ctx, j, pipeline.Tasks(p, s.cfg.MaxAttempts), time.Now().UTC())
	if err != nil {
		return job.Job{}, false, err
	}
	if created {
		s.kick.Kick()
	}
	return out, created, nil
}

// Redo queues old's source again with the current version of its profile,
// for the same publishers and with the same labels: the job a re-encode
// campaign makes to replace old. Asking again for the same redo finds the
// same job (as does a submission of the same file with that version).
func (s *Submitter) Redo(ctx context.Context, old job.Job) (job.Job, bool, error) {
	opt := Options{ChunkSeconds: old.ChunkSeconds, Publish: old.Publish, Labels: old.Labels, Watch: old.Watch, Subtitles: old.Source.Subtitles}
	p, err := s.Check(ctx, old.Profile, opt)
	if err != nil {
		return job.Job{}, false, err
	}
	src := job.Source{AssetID: old.Source.AssetID, Name: old.Source.Name, Size: old.Source.Size, SHA256: old.Source.SHA256}
	return s.queue(ctx, job.Job{ID: job.NewID("j"), Source: src, Replaces: old.ID}, p, opt)
}
