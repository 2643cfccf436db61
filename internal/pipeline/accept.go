package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
)

// A remote worker's report is untrusted input. Acceptor turns what an
// executor outside this process reported on finishing a task into what the
// server stores: only the fields that task kind may report, each checked
// strictly; the job's plan, source facts and published outputs are derived
// here from the server's own profile, job and verified files, never taken
// as sent.

// ReportError says which field of a worker's report was refused and why.
// The task it reported on fails permanently with this message.
type ReportError struct {
	Field string
	Msg   string
}

func (e *ReportError) Error() string {
	return "the worker's report was refused: " + e.Field + ": " + e.Msg
}

func refuse(field, format string, args ...any) error {
	return &ReportError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Limits on what a report may carry besides its kind's own fields.
const (
	maxCommands    = 32
	maxCommandArgs = 2048
	maxCommandSize = 512 << 10 // all arguments of all commands together
	maxOutputs     = 512
	maxCheckNote   = 1024 // a health check's first error (media cuts it to 300)
)

// Acceptor checks reports against the server's profiles, limits and storage.
type Acceptor struct {
	profiles Profiles
	limits   media.Limits
	files    Storage
}

// NewAcceptor returns an Acceptor.
func NewAcceptor(profiles Profiles, limits media.Limits, files Storage) *Acceptor {
	return &Acceptor{profiles: profiles, limits: limits, files: files}
}

// Accept returns the result to store for c's task, or a *ReportError (the
// task then fails permanently; a retry would get the same report) or a
// storage error (retryable: the report is answered 500 and sent again).
func (a *Acceptor) Accept(ctx context.Context, c *job.Claimed, r job.Result) (job.Result, error) {
	if err := CheckCommands(r.Commands); err != nil {
		return job.Result{}, err
	}
	out := job.Result{Commands: r.Commands}
	k := c.Task.Kind
	// What no kind may send: plan and source facts (derived from a probe
	// report's info) and outputs (derived from the verified files) are
	// the server's to make; older workers send them with their probe and
	// finalize reports, and they are ignored there.
	if len(r.Plan) > 0 && k != job.KindProbe {
		return out, refuse("plan", "a %s task does not report a plan", k)
	}
	if r.Source != nil && k != job.KindProbe {
		return out, refuse("source", "a %s task does not report source facts", k)
	}
	if len(r.Outputs) > 0 && k != job.KindFinalize {
		return out, refuse("outputs", "a %s task does not report outputs", k)
	}
	switch k {
	case job.KindProbe:
		var pr probeResult
		if err := strictJSON(r.Data, &pr); err != nil {
			return out, refuse("data", "not a probe result: %v", err)
		}
		if err := pr.Info.Validate(a.limits); err != nil {
			if fe, ok := errors.AsType[*media.FieldError](err); ok {
				return out, refuse(fe.Field, "%s", fe.Msg)
			}
			// Within the fields' ranges but refused as an upload would be
			// (no video, too large): the input's fault, as on a local worker.
			return out, classify(err, "the source was refused")
		}
		pr.Info.Normalize()
		p, err := a.profiles.At(ctx, c.Job.Profile, c.Job.ProfileVersion)
		if err != nil {
			return out, err
		}
		res, err := derive(p, c, pr.Info)
		if err != nil {
			return out, err
		}
		res.Commands = r.Commands
		return res, nil
	case job.KindEncode, job.KindThumbnails, job.KindSplit, job.KindChunk, job.KindAudio, job.KindStitch:
		if len(r.Data) > 0 && !bytes.Equal(bytes.TrimSpace(r.Data), []byte("null")) {
			return out, refuse("data", "a %s task reports no data", k)
		}
		return out, nil
	case job.KindSearch:
		var s media.Search
		if err := strictJSON(r.Data, &s); err != nil {
			return out, refuse("data", "not a search result: %v", err)
		}
		plan, p, err := a.planAndProfile(ctx, c)
		if err != nil {
			return out, err
		}
		res, err := searched(plan, s, verifyNeedsOf(p))
		if fe, ok := errors.AsType[*media.FieldError](err); ok {
			return out, refuse(fe.Field, "%s", fe.Msg)
		}
		if err != nil {
			return out, err
		}
		res.Commands = r.Commands
		return res, nil
	case job.KindVerify:
		outputs, err := a.verifiedOutputs(ctx, c, r.Data)
		if err != nil {
			return out, err
		}
		if out.Data, err = json.Marshal(outputs); err != nil {
			return out, err
		}
		plan, p, err := a.planAndProfile(ctx, c)
		if err != nil {
			return out, err
		}
		return gated(plan, outputs, p, out)
	case job.KindCheck:
		var res job.CheckResult
		if err := strictJSON(r.Data, &res); err != nil {
			return out, refuse("data", "not a check result: %v", err)
		}
		switch {
		case res.State != job.CheckOK && res.State != job.CheckDamaged && res.State != job.CheckSkipped:
			return out, refuse("data.state", "not ok, damaged or unchecked")
		case (res.State == job.CheckOK) != (res.Note == ""):
			return out, refuse("data.note", "a note comes with a damaged or unchecked file, and only then")
		case len(res.Note) > maxCheckNote || !utf8.ValidString(res.Note) || strings.ContainsFunc(res.Note, job.UnsafeRune):
			return out, refuse("data.note", "not printable text of at most %d bytes", maxCheckNote)
		}
		var err error
		out.Data, err = json.Marshal(res)
		return out, err
	case job.KindFinalize:
		verified := c.Deps[job.KindVerify]
		if len(verified) == 0 {
			return out, job.Permanent("no_outputs", job.Userf(nil, "there are no verified outputs to move into place; retry the job"))
		}
		data, err := PublishedOutputs(c.Job.ID, verified)
		if err != nil {
			return out, err
		}
		out.Data, out.Outputs = data, data
		return out, nil
	}
	return out, refuse("task", "unknown task kind %q", k)
}

// planAndProfile are the job's plan and its profile (nil when the
// server no longer knows it), which a search's or verify's report is
// checked against.
func (a *Acceptor) planAndProfile(ctx context.Context, c *job.Claimed) (*media.Plan, *profile.Profile, error) {
	plan, err := readPlan(c.Job.Plan)
	if err != nil {
		return nil, nil, err
	}
	p, err := a.profiles.At(ctx, c.Job.Profile, c.Job.ProfileVersion)
	return plan, p, err
}

// readPlan reads a job's plan.
func readPlan(raw json.RawMessage) (*media.Plan, error) {
	var plan media.Plan
	if err := json.Unmarshal(raw, &plan); err != nil {
		return nil, job.Permanent("bad_plan", job.Userf(err, "the job's plan cannot be read; submit the file again"))
	}
	return &plan, nil
}

// strictJSON decodes a report field that must be present, with no field
// its type does not have.
func strictJSON(b json.RawMessage, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("missing")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("more than one value")
	}
	return nil
}

// CheckCommands bounds the argvs a report lists: they are shown to users
// (the job page, herd job -o wide), never run.
func CheckCommands(cmds [][]string) error {
	if len(cmds) > maxCommands {
		return refuse("commands", "%d commands; at most %d", len(cmds), maxCommands)
	}
	size := 0
	for i, c := range cmds {
		if len(c) > maxCommandArgs {
			return refuse(fmt.Sprintf("commands[%d]", i), "%d arguments; at most %d", len(c), maxCommandArgs)
		}
		for _, arg := range c {
			size += len(arg)
			if !utf8.ValidString(arg) || strings.ContainsFunc(arg, job.UnsafeRune) {
				return refuse(fmt.Sprintf("commands[%d]", i), "an argument has a control character or is not UTF-8")
			}
		}
	}
	if size > maxCommandSize {
		return refuse("commands", "%d bytes of arguments; at most %d", size, maxCommandSize)
	}
	return nil
}

// Values a verified output may name.
var (
	outputKinds = []string{"hls", "dash", "mp4", "mkv", "poster", "sprite", "thumbnails_vtt"}
)

// verifiedOutputs checks a verify report's outputs: each names a file the
// verify step staged, with sane numbers.
func (a *Acceptor) verifiedOutputs(ctx context.Context, c *job.Claimed, data json.RawMessage) ([]media.Output, error) {
	var outs []media.Output
	if err := strictJSON(data, &outs); err != nil {
		return nil, refuse("data", "not a list of outputs: %v", err)
	}
	if len(outs) == 0 || len(outs) > maxOutputs {
		return nil, refuse("data", "%d outputs; a job has 1 to %d", len(outs), maxOutputs)
	}
	files, ok, err := a.files.AttemptFiles(ctx, c, StepVerified)
	if err != nil {
		return nil, fmt.Errorf("list verified files: %w", err)
	}
	if !ok {
		return nil, refuse("data", "the verified files were not committed")
	}
	staged := make(map[string]bool, len(files))
	for _, f := range files {
		staged[f.Path] = true
	}
	seen := map[string]bool{}
	for i, o := range outs {
		f := fmt.Sprintf("data[%d]", i)
		switch {
		case seen[o.Path]:
			return nil, refuse(f+".path", "%q is listed twice", o.Path)
		case !media.IsToken(o.Name):
			return nil, refuse(f+".name", "%q is not an output name", o.Name)
		case !slices.Contains(outputKinds, o.Kind):
			return nil, refuse(f+".kind", "%q is not one of %v", o.Kind, outputKinds)
		case !blob.ValidKey("x/"+o.Path) || !staged[o.Path]:
			return nil, refuse(f+".path", "%q is not a verified file of this job", o.Path)
		case o.Codec != "" && !media.IsToken(o.Codec):
			return nil, refuse(f+".codec", "%q is not a codec name", o.Codec)
		case o.Size < 0 || o.Width < 0 || o.Height < 0 || o.Bitrate < 0 || o.Width > 1<<15 || o.Height > 1<<15:
			return nil, refuse(f, "a size, dimension or bitrate is out of range")
		case !inUnit(o.SSIM, 1) || !inUnit(o.PSNR, 1000) || !inUnit(o.Duration, 1e7):
			return nil, refuse(f, "duration, SSIM or PSNR is out of range")
		case o.Channels < 0 || o.Channels > 64 || (o.Loudness != nil && !o.Loudness.Valid()):
			return nil, refuse(f, "channels or loudness is out of range")
		case o.VMAF != nil && (!inUnit(o.VMAF.Mean, 100) || !inUnit(o.VMAF.Low, 100) || o.VMAF.Frames < 0 || !media.IsToken(o.VMAF.Model)):
			return nil, refuse(f+".vmaf", "a score, frame count or model is out of range")
		}
		seen[o.Path] = true
	}
	return outs, nil
}

func inUnit(f, hi float64) bool { return !math.IsNaN(f) && f >= 0 && f <= hi }

// PublishedOutputs is what a job shows once published: its verified outputs
// with the URL each is served at.
func PublishedOutputs(jobID string, verified json.RawMessage) (json.RawMessage, error) {
	var outputs []media.Output
	if err := json.Unmarshal(verified, &outputs); err != nil {
		return nil, fmt.Errorf("decode verified outputs: %w", err)
	}
	pub := make([]Output, 0, len(outputs))
	for _, o := range outputs {
		pub = append(pub, Output{Output: o, URL: "/api/v1/jobs/" + jobID + "/outputs/" + o.Path})
	}
	data, err := json.Marshal(pub)
	if err != nil {
		return nil, fmt.Errorf("encode outputs: %w", err)
	}
	return data, nil
}

// derive makes a probe task's result from the probe facts: the plan from
// the server's profile, the source facts from the job's own with the
// probed numbers added (the stored file's name, size and hash stay the
// server's).
func derive(p *profile.Profile, c *job.Claimed, info *media.Info) (job.Result, error) {
	if p == nil {
		return job.Result{}, job.Permanent("profile_missing", job.Userf(nil,
			"profile %q version %d is not known to this server (its database was replaced, or the profile never was stored); submit the file again", c.Job.Profile, c.Job.ProfileVersion))
	}
	if p.Version != c.Job.ProfileVersion {
		// Only a worker that was sent another version gets here.
		return job.Result{}, job.Permanent("profile_changed", job.Userf(nil,
			"this job was submitted with version %d of profile %q, and the worker was given version %d; retry the job", c.Job.ProfileVersion, p.Name, p.Version))
	}
	plan, err := media.NewPlan(info, p)
	if err == nil {
		plan.AddSidecars(p, c.Job.Source.Subtitles)
		if plan.Format != profile.FormatHLS {
			plan.Herd = c.Job.ID
		}
		plan.PlanChunks(chunkSeconds(p, c.Job), info.Keyframes)
		plan.PlanAudioStep()
		err = plan.Validate()
	}
	if err != nil {
		return job.Result{}, job.Permanent("unplannable", job.Userf(err, "profile %q cannot be applied to this file: %v", p.Name, err))
	}
	planJSON, err := json.Marshal(plan)
	if err != nil {
		return job.Result{}, fmt.Errorf("encode plan: %w", err)
	}
	data, err := json.Marshal(probeResult{Info: info})
	if err != nil {
		return job.Result{}, fmt.Errorf("encode probe: %w", err)
	}
	src := c.Job.Source
	src.Duration = info.Duration
	if v := info.Video; v != nil {
		src.Width, src.Height, src.VideoCodec = v.Width, v.Height, v.Codec
	}
	src.AudioChannels = 0
	if len(info.Audio) > 0 {
		src.AudioChannels = info.Audio[0].Channels
	}
	res := job.Result{Data: data, Plan: planJSON, Source: &src}
	switch {
	case len(plan.Chunks) > 0:
		res.Expand = chunkTasks(plan, c.Task.ID, TaskNeeds(p))
	case plan.AudioStep:
		res.Expand = audioTasks(c.Task.ID, TaskNeeds(p))
	}
	if plan.Quality != nil {
		res.Expand = withSearch(res.Expand, c.Task.ID, p)
	}
	return res, nil
}
