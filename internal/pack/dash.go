package pack

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/Eyevinn/dash-mpd/mpd"
)

// DASH identifiers the manifest uses.
const (
	profileLive      = "urn:mpeg:dash:profile:isoff-live:2011"
	channelConfigURI = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011" // value: the channel count
)

// manifest is a static isoff-live MPD: one period, a video adaptation set
// with every rung and one audio adaptation set a language, each
// representation with a SegmentTemplate and a SegmentTimeline read from its
// segments.
func manifest(l Ladder, p *Packed) ([]byte, error) {
	var longest, maxSeg float64
	for _, s := range append(append([]*Stream{}, p.Video...), p.Audio...) {
		longest = math.Max(longest, s.Seconds())
		for i := range s.Segments {
			maxSeg = math.Max(maxSeg, s.SegmentSeconds(i))
		}
	}
	m := mpd.NewMPD("static")
	m.Profiles = profileLive
	m.MediaPresentationDuration = duration(longest)
	m.MaxSegmentDuration = duration(maxSeg)
	m.MinBufferTime = duration(2 * float64(p.Target))
	period := mpd.NewPeriod()
	period.Id = "0"
	period.Start = duration(0)
	m.Periods = append(m.Periods, period)
	target := float64(p.Target)

	// One video adaptation set a codec family, in the ladder's order: a
	// DASH client switches within a set, and a set's representations share
	// a codec (DASH-IF IOP); a player picks the set it decodes.
	var families []string
	sets := map[string]*mpd.AdaptationSetType{}
	for i, r := range l.Video {
		s := p.Video[i]
		fam := codecFamily(s.Codec)
		video, ok := sets[fam]
		if !ok {
			video = mpd.NewAdaptationSetWithParams("video", "video/mp4", true, 1)
			video.Id = ptr(uint32(len(families))) //nolint:gosec // G115: a few codecs
			video.FrameRate = mpd.FrameRateType(l.FrameRate)
			video.Sar = "1:1"
			sets[fam] = video
			families = append(families, fam)
			period.AdaptationSets = append(period.AdaptationSets, video)
		}
		rep := mpd.NewRepresentationWithID(r.ID, s.Codec, "", int(clampRate(s.Peak(target, false))))
		rep.Width, rep.Height = uint32(s.Width), uint32(s.Height) //nolint:gosec // G115: sizes from a 16-bit sample entry
		rep.SegmentTemplate = template(l, s)
		video.Representations = append(video.Representations, rep)
		video.MaxWidth = max(video.MaxWidth, rep.Width)
		video.MaxHeight = max(video.MaxHeight, rep.Height)
	}
	if len(families) > 1 {
		// The codec that spends the fewest bits first, for players that
		// decode several (DASH selectionPriority: higher is preferred).
		for fam, set := range sets {
			set.SelectionPriority = ptr(uint32(map[string]int{"av01": 3, "hvc1": 2}[fam] + 1)) //nolint:gosec // G115: 1 to 4
		}
	}

	// One audio adaptation set a language, codec and role: a client
	// switches between its representations (stereo, 5.1) by itself, and
	// between sets by the viewer's choice.
	type audioKey struct {
		lang, family string
		commentary   bool
	}
	audio := map[audioKey]*mpd.AdaptationSetType{}
	for i, r := range l.Audio {
		s := p.Audio[i]
		key := audioKey{r.Language, codecFamily(s.Codec), r.Commentary}
		as, ok := audio[key]
		if !ok {
			role := "alternate"
			switch {
			case r.Commentary:
				role = "commentary"
			case r.Default || (i == 0 && !anyDefault(l.Audio)):
				role = "main"
			}
			as = addSet(period, mpd.NewAdaptationSetWithParams("audio", "audio/mp4", true, 1), r.Language, role, r.Name)
			audio[key] = as
		}
		rep := mpd.NewRepresentationWithID(r.ID, s.Codec, "", int(clampRate(s.Peak(target, false))))
		rate := mpd.UIntVectorType(strconv.Itoa(s.SampleRate))
		rep.AudioSamplingRate = &rate
		rep.AudioChannelConfigurations = append(rep.AudioChannelConfigurations,
			mpd.NewDescriptor(channelConfigURI, strconv.Itoa(s.Channels), ""))
		rep.SegmentTemplate = template(l, s)
		as.Representations = append(as.Representations, rep)
	}
	// One text adaptation set a subtitle rendition: the whole WebVTT file.
	for _, r := range l.Subtitles {
		role := "subtitle"
		switch {
		case r.Forced:
			role = "forced-subtitle"
		case r.HearingImpaired:
			role = "caption"
		}
		set := mpd.NewAdaptationSetWithParams("text", "text/vtt", false, 0)
		set.SegmentAlignment, set.StartWithSAP = false, 0
		as := addSet(period, set, r.Language, role, r.Name)
		rep := mpd.NewRepresentationWithID(r.ID, "", "", 256)
		rep.BaseURLs = append(rep.BaseURLs, &mpd.BaseURLType{Value: mpd.AnyURI(r.File)})
		as.Representations = append(as.Representations, rep)
	}
	out, err := m.WriteToString("  ", true)
	if err != nil {
		return nil, fmt.Errorf("write DASH manifest: %w", err)
	}
	out = subSecond(out, "mediaPresentationDuration", m.MediaPresentationDuration)
	out = subSecond(out, "maxSegmentDuration", m.MaxSegmentDuration)
	return []byte(out), nil
}

// addSet numbers as and adds it to period, with its language, its DASH
// role and a label (none where name is "").
func addSet(period *mpd.Period, as *mpd.AdaptationSetType, lang, role, name string) *mpd.AdaptationSetType {
	as.Id = ptr(uint32(len(period.AdaptationSets))) //nolint:gosec // G115: a handful of sets
	as.Lang = lang
	as.Roles = append(as.Roles, mpd.NewRole(role))
	if name != "" {
		as.Labels = append(as.Labels, &mpd.LabelType{Value: name})
	}
	period.AdaptationSets = append(period.AdaptationSets, as)
	return as
}

// subSecond rewrites attribute name (one on the MPD element) when it holds
// a duration under one second, which dash-mpd v0.12.0 writes as nanoseconds
// counted as seconds and a stray byte (300 ms as "PT300000000\xffS"), which
// its own parser then refuses: a sub-second source makes such a manifest.
func subSecond(xml, name string, d *mpd.Duration) string {
	if d == nil || *d <= 0 || time.Duration(*d) >= time.Second {
		return xml
	}
	i := strings.Index(xml, " "+name+`="`)
	if i < 0 {
		return xml
	}
	start := i + len(name) + 3
	end := strings.IndexByte(xml[start:], '"')
	if end < 0 {
		return xml
	}
	good := "PT" + strconv.FormatFloat(time.Duration(*d).Seconds(), 'f', -1, 64) + "S"
	return xml[:start] + good + xml[start+end:]
}

// template is a representation's SegmentTemplate with its timeline: runs of
// equal durations folded into one S element.
func template(l Ladder, s *Stream) *mpd.SegmentTemplateType {
	t := &mpd.SegmentTemplateType{Media: l.MediaTemplate, Initialization: l.InitTemplate}
	t.StartNumber = ptr(uint32(1))
	t.SetTimescale(s.Timescale)
	tl := &mpd.SegmentTimelineType{}
	for i, g := range s.Segments {
		if n := len(tl.S); n > 0 && tl.S[n-1].D == g.Duration {
			tl.S[n-1].R++
			continue
		}
		e := &mpd.S{D: g.Duration}
		if i == 0 {
			e.T = ptr(g.Start)
		}
		tl.S = append(tl.S, e)
	}
	t.SegmentTimeline = tl
	return t
}

// codecFamily is a codecs string's sample entry type (avc1, hvc1, av01),
// with avc3 and hev1 counted as avc1 and hvc1.
func codecFamily(codec string) string {
	fam, _, _ := strings.Cut(codec, ".")
	switch fam {
	case "avc3":
		return "avc1"
	case "hev1":
		return "hvc1"
	}
	return fam
}

func duration(sec float64) *mpd.Duration {
	d := mpd.Duration(time.Duration(math.Round(sec*1000)) * time.Millisecond)
	return &d
}

func ptr[T any](v T) *T { return &v }
