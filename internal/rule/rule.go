// Package rule compiles a library's rule: a CEL expression over a file's
// probe facts that says whether herd re-encodes it.
package rule

import (
	"fmt"
	"path"
	"reflect"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"

	"github.com/herdhq/herd/internal/media"
)

// Facts are what a rule sees of a file: its probe, and where it is. A
// rule is a CEL expression over them (github.com/google/cel-spec), such as
// video.codec != "hevc" && video.height >= 720.
type Facts struct {
	Container string     `cel:"container" json:"container"` // the demuxer: matroska, mov, mpegts, avi, ...
	Size      int64      `cel:"size" json:"size"`           // bytes
	Duration  float64    `cel:"duration" json:"duration"`   // seconds
	Bitrate   int64      `cel:"bitrate" json:"bitrate"`     // the whole file's, bits per second
	Video     Video      `cel:"video" json:"video"`
	Audio     []Audio    `cel:"audio" json:"audio"`
	Subtitles []Subtitle `cel:"subtitles" json:"subtitles"`
	Path      string     `cel:"path" json:"path"` // slash path inside the library
	Name      string     `cel:"name" json:"name"` // the file's name
	// Herd is set on a file herd made (its container's herd tag): no rule
	// ever sees one.
	Herd string `cel:"-" json:"herd,omitempty"`
}

// Video is the facts of a file's video stream.
type Video struct {
	Codec      string  `cel:"codec" json:"codec"`     // h264, hevc, mpeg4, mpeg2video, av1, vp9, ...
	Profile    string  `cel:"profile" json:"profile"` // as ffprobe names it: High, Main 10, ...
	BitDepth   int     `cel:"bit_depth" json:"bit_depth"`
	HDR        bool    `cel:"hdr" json:"hdr"`
	Width      int     `cel:"width" json:"width"`
	Height     int     `cel:"height" json:"height"`
	Bitrate    int64   `cel:"bitrate" json:"bitrate"` // the stream's where the container says, else the file's
	FPS        float64 `cel:"fps" json:"fps"`
	Interlaced bool    `cel:"interlaced" json:"interlaced"`
}

// Audio is the facts of one audio stream.
type Audio struct {
	Codec    string `cel:"codec" json:"codec"`
	Channels int    `cel:"channels" json:"channels"`
	Language string `cel:"language" json:"language"` // ISO 639-2 as the container has it, "" when untagged
}

// Subtitle is the facts of one subtitle stream.
type Subtitle struct {
	Codec    string `cel:"codec" json:"codec"`
	Language string `cel:"language" json:"language"`
	Text     bool   `cel:"text" json:"text"` // text, not pictures
}

// FactsOf are the facts of the file at rel (a slash path inside its
// library) from its probe.
func FactsOf(info *media.Info, rel string) Facts {
	f := Facts{Container: info.Demuxer, Size: info.Size, Duration: info.Duration, Bitrate: info.BitRate,
		Path: rel, Name: path.Base(rel), Herd: info.Herd, Audio: []Audio{}, Subtitles: []Subtitle{}}
	if v := info.Video; v != nil {
		f.Video = Video{Codec: v.Codec, Profile: v.Profile, BitDepth: v.BitDepth, HDR: v.HDR, Width: v.Width, Height: v.Height,
			Bitrate: v.BitRate, FPS: v.FPS, Interlaced: v.Interlaced}
		if f.Video.Bitrate == 0 {
			f.Video.Bitrate = info.BitRate
		}
	}
	for _, a := range info.Audio {
		f.Audio = append(f.Audio, Audio{Codec: a.Codec, Channels: a.Channels, Language: a.Language})
	}
	for _, s := range info.Subtitles {
		f.Subtitles = append(f.Subtitles, Subtitle{Codec: s.Codec, Language: s.Language, Text: s.Text})
	}
	return f
}

// Rule is a compiled rule.
type Rule struct {
	src  string
	prog cel.Program
}

// RuleError says where a rule is wrong: Line and Column count from 1
// within the expression.
type RuleError struct {
	Line, Column int
	Msg          string
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("rule, line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// compileMu serialises compilations.
var compileMu sync.Mutex

// ruleCost bounds what one evaluation may cost (CEL's cost units): a
// rule over a file's few streams costs tens.
const ruleCost = 100_000

// maxRule bounds a rule's length.
const maxRule = 4096

var ruleEnv = func() *cel.Env {
	env, err := cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[Video](), reflect.TypeFor[Audio](), reflect.TypeFor[Subtitle](), ext.ParseStructTags(true)),
		ext.Strings(),
		cel.Variable("container", cel.StringType),
		cel.Variable("size", cel.IntType),
		cel.Variable("duration", cel.DoubleType),
		cel.Variable("bitrate", cel.IntType),
		cel.Variable("video", cel.ObjectType("rule.Video")),
		cel.Variable("audio", cel.ListType(cel.ObjectType("rule.Audio"))),
		cel.Variable("subtitles", cel.ListType(cel.ObjectType("rule.Subtitle"))),
		cel.Variable("path", cel.StringType),
		cel.Variable("name", cel.StringType),
	)
	if err != nil {
		panic("rule: environment: " + err.Error())
	}
	return env
}()

// Compile checks a rule: a CEL expression over Facts that is true or
// false. An error is a *RuleError naming where it is wrong, such as an
// unknown field.
func Compile(src string) (*Rule, error) {
	if strings.TrimSpace(src) == "" {
		return nil, &RuleError{Line: 1, Column: 1, Msg: "the rule is empty (write one such as video.codec != \"hevc\")"}
	}
	if len(src) > maxRule {
		return nil, &RuleError{Line: 1, Column: 1, Msg: fmt.Sprintf("the rule is %d bytes; at most %d", len(src), maxRule)}
	}
	// cel-go's checker fills a shared catalog on first use without a lock
	// (the race detector sees it): one compilation at a time. Evaluations
	// of compiled rules are safe together.
	compileMu.Lock()
	defer compileMu.Unlock()
	ast, iss := ruleEnv.Compile(src)
	if iss != nil && iss.Err() != nil {
		errs := iss.Errors()
		if len(errs) == 0 {
			return nil, &RuleError{Line: 1, Column: 1, Msg: iss.Err().Error()}
		}
		loc := errs[0].Location
		return nil, &RuleError{Line: max(loc.Line(), 1), Column: loc.Column() + 1, Msg: errs[0].Message}
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, &RuleError{Line: 1, Column: 1, Msg: fmt.Sprintf("the rule gives %s, not true or false", ast.OutputType())}
	}
	prog, err := ruleEnv.Program(ast, cel.CostLimit(ruleCost))
	if err != nil {
		return nil, &RuleError{Line: 1, Column: 1, Msg: err.Error()}
	}
	return &Rule{src: src, prog: prog}, nil
}

// String is the rule as written.
func (r *Rule) String() string { return r.src }

// Match evaluates the rule over f. An error (a list index out of range,
// the cost limit) says the rule cannot judge this file.
func (r *Rule) Match(f Facts) (bool, error) {
	out, _, err := r.prog.Eval(map[string]any{
		"container": f.Container, "size": f.Size, "duration": f.Duration, "bitrate": f.Bitrate,
		"video": f.Video, "audio": f.Audio, "subtitles": f.Subtitles, "path": f.Path, "name": f.Name,
	})
	if err != nil {
		return false, fmt.Errorf("the rule cannot be evaluated on this file: %w", err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("the rule gave %v, not true or false", out.Value())
	}
	return b, nil
}
