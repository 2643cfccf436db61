package library

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/rule"
	"github.com/herdhq/herd/internal/safefs"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/window"
)

// Spec is a library as the configuration declares it (config.Library).
type Spec struct {
	Name, Path string
	Rule       *rule.Rule
	Profile    string
	Action     string   // replace | alongside | publish (config.Action*)
	Publish    []string // the library publishers of action publish
	MinSavings float64  // fraction
	// KeepOriginals is how long a replaced original stays in the trash (0: until removed by hand).
	KeepOriginals time.Duration
	Window        window.Window
	MaxRunning    int
	ScanEvery     time.Duration // 0: only when asked, and at start
	Labels        map[string]string
	// Notify names the Plex and Jellyfin publishers that index the library
	// (their library: names it), told of every file put in place: through
	// the outbox, so a notice survives a restart (package deliver).
	Notify []string
}

// Actions (config.Action*).
const (
	ActionReplace   = "replace"
	ActionAlongside = "alongside"
	ActionPublish   = "publish"
)

// What became of a library's file (store.LibraryFile.State).
const (
	StateSkipped     = "skipped"     // the rule does not match it
	StatePlanned     = "planned"     // a plan found the rule matches it; a scan will queue it
	StateMatched     = "matched"     // a scan found the rule matches it; it waits for a slot (max_running, window)
	StateQueued      = "queued"      // its job runs
	StateReplaced    = "replaced"    // the new file is in its place; the original in the trash
	StateDone        = "done"        // the new file is beside it (alongside) or delivered (publish)
	StateKept        = "kept"        // the original was kept, and why is in the note
	StateFailed      = "failed"      // its job failed, or the result could not be put in place
	StateUnprobeable = "unprobeable" // the probe refused it (the note says why); not probed again until it changes
	StateRuleError   = "rule_error"  // the rule cannot judge it
	StateHerd        = "herd"        // herd made it: no rule ever matches it
)

// States lists every state, in the order status shows them.
var States = []string{StateQueued, StateMatched, StatePlanned, StateReplaced, StateDone, StateKept, StateFailed, StateUnprobeable, StateRuleError, StateSkipped, StateHerd}

// TrashDir is the folder inside a library that replaced originals go to.
const TrashDir = ".herd-trash"

// tempPrefix starts the name of a replacement being written beside its
// original: never scanned, swept when a replacement is given up.
const tempPrefix = ".herd-"

// Store is what a library needs of the store: its files, and the jobs
// they became.
type Store interface {
	store.LibraryStore
	GetJob(ctx context.Context, id string) (job.Job, error)
	AddDelivery(ctx context.Context, d store.Delivery) error
	HandOffFiles(ctx context.Context, eventID, jobID string, publishers []string, files map[string]string, now time.Time) error
	// Health checks are jobs.
	CancelJob(ctx context.Context, id string, now time.Time) (job.Job, error)
	PutAsset(ctx context.Context, a job.Asset) (job.Asset, error)
	CreateJob(ctx context.Context, j job.Job, tasks []job.Task, now time.Time) (job.Job, bool, error)
	Tasks(ctx context.Context, jobID string) ([]job.Task, error)
}

// Submitter queues a library file's job.
type Submitter interface {
	Profile(name string) (*profile.Profile, error)
	ImportFile(ctx context.Context, root *os.Root, rel, name string, p *profile.Profile, opt ingest.Options, id string) (job.Job, bool, error)
}

// Outputs opens a job's stored output files.
type Outputs interface {
	Open(ctx context.Context, key string) (blob.Object, error)
}

// Prober probes a file.
type Prober interface {
	Admit(ctx context.Context, path string, lim media.Limits) (*media.Info, error)
}

// Manager runs a server's libraries.
type Manager struct {
	libs    map[string]*lib
	names   []string
	st      Store
	sub     Submitter
	outputs Outputs
	probe   Prober
	limits  media.Limits
	log     *slog.Logger
	now     func() time.Time
	// ProbeEvery spaces the probes of a scan (NFS and SMB servers, and
	// disks that serve players meanwhile).
	ProbeEvery time.Duration
	// Tick is how often a library looks for finished jobs and free slots.
	Tick time.Duration
	// CheckConcurrency is how many check jobs of a library are queued or
	// run at once.
	CheckConcurrency int
	// Wake, when set, tells workers waiting for work that a job was queued.
	Wake func()
	// interrupt, set by tests, stops a replacement at a point of its
	// journal as a crash would (apply.go).
	interrupt func(point string) bool
	triesMu   sync.Mutex
	tries     map[string]time.Time // when a replacement first failed, by library/path
}

type lib struct {
	Spec
	mu     sync.Mutex    // one scan or apply at a time
	checks chan struct{} // a health check was started
	asset  string        // the asset of its check jobs (checkAsset; the checker's own)
}

// jobLabels are the labels of the library's jobs: its own, and library=NAME.
func (l *lib) jobLabels() map[string]string {
	labels := maps.Clone(l.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels["library"] = l.Name
	return labels
}

// open opens the library's folder, inside which every path is resolved.
func (l *lib) open() (*os.Root, error) {
	r, err := os.OpenRoot(l.Path)
	if err != nil {
		return nil, fmt.Errorf("library %s: open %s: %w", l.Name, l.Path, err)
	}
	return r, nil
}

// DefaultCheckConcurrency is how many check jobs of a library are queued
// or run at once.
const DefaultCheckConcurrency = 4

// New returns a Manager for specs.
func New(specs []Spec, st Store, sub Submitter, outputs Outputs, probe Prober, limits media.Limits, log *slog.Logger) *Manager {
	m := &Manager{libs: map[string]*lib{}, st: st, sub: sub, outputs: outputs, probe: probe, limits: limits,
		log: log.With("component", "library"), now: time.Now, ProbeEvery: 50 * time.Millisecond, Tick: 5 * time.Second, CheckConcurrency: DefaultCheckConcurrency}
	for _, s := range specs {
		m.libs[s.Name] = &lib{Spec: s, checks: make(chan struct{}, 1)}
		m.names = append(m.names, s.Name)
	}
	return m
}

// ErrUnknown is a library name the configuration does not declare.
var ErrUnknown = errors.New("no such library")

func (m *Manager) get(name string) (*lib, error) {
	l, ok := m.libs[name]
	if !ok {
		if len(m.names) == 0 {
			return nil, fmt.Errorf("%w %q: this server has none (declare them under libraries: in its configuration file)", ErrUnknown, name)
		}
		return nil, fmt.Errorf("%w %q: this server has %s", ErrUnknown, name, strings.Join(m.names, ", "))
	}
	return l, nil
}

// Validate verifies every library's profile exists and makes one MP4 or MKV
// file (a library's files are files, not streams).
func (m *Manager) Validate() error {
	for _, name := range m.names {
		l := m.libs[name]
		p, err := m.sub.Profile(l.Profile)
		if err != nil {
			return fmt.Errorf("library %s: %w", name, err)
		}
		if p.Format != profile.FormatMP4 && p.Format != profile.FormatMKV {
			return fmt.Errorf("library %s: profile %s makes %s; a library's files are replaced by one MP4 or MKV file (mp4-library, archive-hevc)", name, p.Name, p.Format)
		}
	}
	return nil
}

// Run runs every library until ctx ends: each finishes the replacements
// a crash cut short, then looks for finished jobs and free slots every
// Tick, and scans when asked (Scan) and every ScanEvery (at start too).
func (m *Manager) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, name := range m.names {
		l := m.libs[name]
		wg.Go(func() { m.run(ctx, l) })
		wg.Go(func() { m.checker(ctx, l) })
	}
	wg.Wait()
}

func (m *Manager) run(ctx context.Context, l *lib) {
	log := m.log.With("library", l.Name)
	// Replacements a crash cut short are finished first. A library is
	// first scanned when asked (after a plan), or when its schedule says.
	if l.ScanEvery > 0 {
		if _, err := m.scanNow(ctx, l, false); err != nil && ctx.Err() == nil {
			log.Error("library scan failed", "err", err)
		}
	} else if err := m.step(ctx, l); err != nil && ctx.Err() == nil {
		log.Error("library step failed", "err", err)
	}
	tick := time.NewTicker(m.Tick)
	defer tick.Stop()
	var every <-chan time.Time
	if l.ScanEvery > 0 {
		t := time.NewTicker(l.ScanEvery)
		defer t.Stop()
		every = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := m.step(ctx, l); err != nil && ctx.Err() == nil {
				log.Error("library step failed", "err", err)
			}
		case <-every:
			if _, err := m.scanNow(ctx, l, false); err != nil && ctx.Err() == nil {
				log.Error("library scan failed", "err", err)
			}
		}
	}
}

// step finishes what finished jobs left to do, queues what waits for a
// slot, and empties the trash of what is old enough.
func (m *Manager) step(ctx context.Context, l *lib) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Each goes on whatever became of the others: one stuck file does not
	// hold up the library.
	return errors.Join(m.apply(ctx, l), m.queue(ctx, l), m.purge(ctx, l))
}

// Report is what a scan or a plan found (jobview.LibraryReport).
type Report = jobview.LibraryReport

// Scan walks the library now: new and changed files are probed and
// judged by the rule, and what it matches is queued (within max_running
// and the window).
func (m *Manager) Scan(ctx context.Context, name string) (Report, error) {
	l, err := m.get(name)
	if err != nil {
		return Report{}, err
	}
	return m.scanNow(ctx, l, false)
}

// Plan walks the library as Scan does, probing and judging new and
// changed files, but queues nothing: what Scan would then do.
func (m *Manager) Plan(ctx context.Context, name string) (Report, error) {
	l, err := m.get(name)
	if err != nil {
		return Report{}, err
	}
	return m.scanNow(ctx, l, true)
}

// Status is a library's files by state, without scanning.
func (m *Manager) Status(ctx context.Context, name string) (Report, error) {
	l, err := m.get(name)
	if err != nil {
		return Report{}, err
	}
	files, err := m.st.LibraryFiles(ctx, l.Name)
	if err != nil {
		return Report{}, err
	}
	return m.report(l, files), nil
}

// CrashAt, for crash tests, has the process kill itself with SIGKILL
// when a replacement reaches point of its journal (as the package's own
// tests stop one there): the real binary, crashed where a test says.
func (m *Manager) CrashAt(point string) {
	m.interrupt = func(p string) bool {
		if p == point {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
		return false
	}
}

// Names lists the libraries.
func (m *Manager) Names() []string { return slices.Clone(m.names) }

// Spec returns a library's spec.
func (m *Manager) Spec(name string) (Spec, error) {
	l, err := m.get(name)
	if err != nil {
		return Spec{}, err
	}
	return l.Spec, nil
}

func (m *Manager) scanNow(ctx context.Context, l *lib, plan bool) (Report, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !plan {
		if err := m.apply(ctx, l); err != nil { // finish what a crash cut short first
			if ctx.Err() != nil {
				return Report{}, err
			}
			m.log.Warn("library: some replacements wait", "library", l.Name, "err", err)
		}
	}
	probed, err := m.walk(ctx, l, plan)
	if err != nil {
		return Report{}, err
	}
	queued := 0
	if !plan {
		if queued, err = m.queueN(ctx, l); err != nil {
			return Report{}, err
		}
	}
	files, err := m.st.LibraryFiles(ctx, l.Name)
	if err != nil {
		return Report{}, err
	}
	r := m.report(l, files)
	r.Probed, r.Queued = probed, queued
	return r, nil
}

// videoExts are the names a scan probes: what media servers list.
var videoExts = map[string]bool{".mkv": true, ".mp4": true, ".m4v": true, ".mov": true, ".avi": true, ".mpg": true, ".mpeg": true,
	".ts": true, ".m2ts": true, ".mts": true, ".wmv": true, ".flv": true, ".webm": true, ".vob": true, ".ogv": true, ".3gp": true, ".divx": true}

// walk visits every file of the library: new and changed ones are probed
// and judged; files gone are forgotten (unless a job of theirs runs).
func (m *Manager) walk(ctx context.Context, l *lib, plan bool) (int, error) {
	root, err := l.open()
	if err != nil {
		return 0, err
	}
	defer root.Close()
	known, err := m.st.LibraryFiles(ctx, l.Name)
	if err != nil {
		return 0, err
	}
	byPath := make(map[string]store.LibraryFile, len(known))
	made := map[int64][]string{} // replacements' sizes → their hashes
	for _, f := range known {
		byPath[f.Path] = f
		if f.NewSHA256 != "" {
			made[f.NewSize] = append(made[f.NewSize], f.NewSHA256)
		}
	}
	seen := map[string]bool{}
	probed := 0
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			m.log.Warn("library: cannot read", "library", l.Name, "path", p, "err", err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		name := d.Name()
		if p != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, tempPrefix)) {
			if d.IsDir() {
				return fs.SkipDir // the trash, and other hidden folders
			}
			return nil
		}
		if !d.Type().IsRegular() || !videoExts[strings.ToLower(path.Ext(name))] {
			return nil // folders go on; links and other files are not the library's media
		}
		info, err := d.Info()
		if err != nil {
			return nil // gone meanwhile
		}
		seen[p] = true
		cur := store.LibraryFile{Library: l.Name, Path: p, Size: info.Size(), MTime: info.ModTime().UnixNano(), Inode: inode(info)}
		old, had := byPath[p]
		if had && old.Size == cur.Size && old.MTime == cur.MTime && old.Inode == cur.Inode {
			if old.State == StatePlanned && !plan { // judged by a plan: the scan takes it up
				old.State, old.UpdatedAt = StateMatched, m.now().UTC()
				return m.st.PutLibraryFile(ctx, old)
			}
			return nil // unchanged: judged before
		}
		if had && (old.State == StateQueued || old.Step != "") {
			return nil // its job runs: the replacement checks the original is unchanged
		}
		if probed > 0 && m.ProbeEvery > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(m.ProbeEvery):
			}
		}
		probed++
		if err := m.judge(ctx, l, root, &cur, made); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m.log.Warn("library: probe failed; tried again at the next scan", "library", l.Name, "path", p, "err", err)
			return nil
		}
		if plan && cur.State == StateMatched {
			cur.State = StatePlanned
		}
		cur.ScannedAt, cur.UpdatedAt = m.now().UTC(), m.now().UTC()
		return m.st.PutLibraryFile(ctx, cur)
	})
	if err != nil {
		return probed, err
	}
	for p, f := range byPath {
		if !seen[p] && f.State != StateQueued && f.Step == "" {
			if err := m.st.DeleteLibraryFile(ctx, l.Name, p); err != nil {
				return probed, err
			}
			m.dropCheck(ctx, f)
		}
	}
	return probed, nil
}

// judge probes f and decides its state. An error is one the file is not
// to blame for (the probe could not run): the file is judged again later.
func (m *Manager) judge(ctx context.Context, l *lib, root *os.Root, f *store.LibraryFile, made map[int64][]string) error {
	var info *media.Info
	err := safefs.WithPath(root, f.Path, func(p string) (err error) {
		info, err = m.probe.Admit(ctx, p, m.limits)
		return err
	})
	if re, ok := errors.AsType[*media.RejectedError](err); ok {
		f.State, f.Note = StateUnprobeable, re.Reason
		return nil
	}
	if err != nil {
		return err
	}
	facts := rule.FactsOf(info, f.Path)
	f.Facts, _ = json.Marshal(facts)
	if facts.Herd != "" {
		f.State, f.Note = StateHerd, "herd made this file (job "+facts.Herd+")"
		return nil
	}
	if hashes := made[f.Size]; len(hashes) > 0 {
		if sha, err := blob.RootFileSHA256(root, f.Path); err == nil && slices.Contains(hashes, sha) {
			f.State, f.Note = StateHerd, "herd made this file (a replacement's bytes)"
			return nil
		}
	}
	ok, err := l.Rule.Match(facts)
	switch {
	case err != nil:
		f.State, f.Note = StateRuleError, err.Error()
	case ok:
		f.State, f.Note = StateMatched, ""
	default:
		f.State, f.Note = StateSkipped, ""
	}
	return nil
}

// inode is a file's inode number (0 where the system has none).
func inode(info fs.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// queue queues matched files while the library has free slots and is
// inside its window.
func (m *Manager) queue(ctx context.Context, l *lib) error {
	_, err := m.queueN(ctx, l)
	return err
}

func (m *Manager) queueN(ctx context.Context, l *lib) (int, error) {
	if !l.Window.Contains(m.now()) {
		return 0, nil
	}
	running, err := m.st.LibraryFilesIn(ctx, l.Name, StateQueued)
	if err != nil {
		return 0, err
	}
	free := l.MaxRunning - len(running)
	if free <= 0 {
		return 0, nil
	}
	waiting, err := m.st.LibraryFilesIn(ctx, l.Name, StateMatched)
	if err != nil {
		return 0, err
	}
	p, err := m.sub.Profile(l.Profile)
	if err != nil {
		return 0, err
	}
	root, err := l.open()
	if err != nil {
		return 0, err
	}
	defer root.Close()
	n := 0
	for _, f := range waiting[:min(free, len(waiting))] {
		// The job's id is recorded first: a crash before the job is made
		// makes it with the same id at the next step (submit).
		f.State, f.JobID, f.Note, f.UpdatedAt = StateQueued, job.NewID("j"), "", m.now().UTC()
		if err := m.st.PutLibraryFile(ctx, f); err != nil {
			return n, err
		}
		if err := m.submit(ctx, l, root, p, &f); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// submit makes f's job (with the id f records), or marks f failed when
// the file cannot become one.
func (m *Manager) submit(ctx context.Context, l *lib, root *os.Root, p *profile.Profile, f *store.LibraryFile) error {
	opt := ingest.Options{Labels: l.jobLabels()}
	if l.Action == ActionPublish {
		opt.Publish = l.Publish
	}
	j, _, err := m.sub.ImportFile(ctx, root, f.Path, path.Base(f.Path), p, opt, f.JobID)
	switch {
	case err == nil:
		if j.ID != f.JobID { // the same bytes are a job already
			f.JobID = j.ID
			return m.st.PutLibraryFile(ctx, *f)
		}
		return nil
	case errors.Is(err, ingest.ErrBadPath), errors.Is(err, ingest.ErrTooLarge), errors.Is(err, ingest.ErrEmpty), errors.Is(err, ingest.ErrBadOption), errors.Is(err, job.ErrConflict):
		f.State, f.Note, f.JobID = StateFailed, err.Error(), ""
		return m.st.PutLibraryFile(ctx, *f)
	}
	return err
}

// report sums up a library's files.
func (m *Manager) report(l *lib, files []store.LibraryFile) Report {
	r := Report{Library: l.Name, Files: files, Counts: map[string]int{}}
	if r.Files == nil {
		r.Files = []store.LibraryFile{}
	}
	ratio, basis := m.ratio(l, files)
	r.EstimateBasis = basis
	for _, f := range files {
		r.Counts[f.State]++
		if f.Check != "" {
			if r.Checks == nil {
				r.Checks = map[string]int{}
			}
			r.Checks[f.Check]++
		}
		switch f.State {
		case StatePlanned, StateMatched, StateQueued:
			r.Bytes += f.Size
			r.Estimate += int64(float64(f.Size) * ratio(f))
		case StateReplaced:
			if f.NewSize > 0 {
				r.Saved += max(0, originalSize(f)-f.NewSize)
			}
		}
	}
	return r
}

// originalSize is a replaced file's original size, from its facts.
func originalSize(f store.LibraryFile) int64 {
	var facts rule.Facts
	if json.Unmarshal(f.Facts, &facts) == nil && facts.Size > 0 {
		return facts.Size
	}
	return f.Size
}

// ratio estimates what a file becomes, as a fraction of its size: this
// library's own average once it has replaced a few files, else a rule of
// thumb by codec (an older codec gives more back).
func (m *Manager) ratio(l *lib, files []store.LibraryFile) (func(store.LibraryFile) float64, string) {
	var before, after int64
	n := 0
	for _, f := range files {
		if (f.State == StateReplaced || f.State == StateDone) && f.NewSize > 0 {
			before, after = before+originalSize(f), after+f.NewSize
			n++
		}
	}
	if n >= 3 && before > 0 {
		r := float64(after) / float64(before)
		return func(store.LibraryFile) float64 { return r }, fmt.Sprintf("the average of the %d files this library replaced (%.0f%% of their size)", n, r*100)
	}
	return func(f store.LibraryFile) float64 {
		var facts rule.Facts
		_ = json.Unmarshal(f.Facts, &facts)
		switch facts.Video.Codec {
		case "mpeg2video", "mpeg1video", "mpeg4", "msmpeg4v3", "wmv3", "vc1", "h263":
			return 0.4
		case "h264":
			return 0.6
		}
		return 0.85
	}, "a rule of thumb by codec (MPEG-2 and MPEG-4 Part 2 to 40%, H.264 to 60%, others to 85%) until this library has replaced three files"
}
