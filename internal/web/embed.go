package web

import (
	"cmp"
	"net/http"
	"slices"
	"strings"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/live"
	"github.com/herdhq/herd/internal/pipeline"
)

// embedPage is what the playback link's page template gets.
type embedPage struct {
	Title  string
	Stream bool   // a player: HLS or a file the browser plays
	HLS    string // master playlist, relative to the page
	// Live is the live master playlist, relative to the page, of a job
	// still encoding that has no outputs yet: the page plays it from its
	// start once it answers.
	Live   string
	File   string // a file to play when there is no HLS (or no way to play it)
	Poster string
	// Without a stream: why, and the file to download instead.
	Notice, Download, DownloadName string
	// Refresh has the page load itself again in a few seconds: the job
	// runs, and has nothing to play yet (not planned, or not a web ladder).
	Refresh bool
}

// browserCodecs are the video codecs every current browser decodes in MP4.
var browserCodecs = []string{"h264", "avc1", "vp9", "av1"}

// embedOf picks what the page plays from a job's outputs. Paths stay
// relative: the page sits at the link's root, above its outputs.
func embedOf(title string, outs []pipeline.Output) embedPage {
	e := embedPage{Title: title}
	var other *pipeline.Output
	for i, o := range outs {
		switch {
		case o.Kind == "hls" && o.Name == "master":
			e.HLS = o.Path
		case o.Kind == "poster":
			e.Poster = o.Path
		case o.Kind == "mp4" && (e.File == "" || slices.Contains(browserCodecs, strings.ToLower(o.Codec))):
			e.File = o.Path // another codec in MP4 (HEVC) plays where the browser decodes it; elsewhere the page says why not
		case o.Kind == "mkv" && other == nil:
			other = &outs[i]
		}
	}
	e.Stream = e.HLS != "" || e.File != ""
	switch {
	case e.Stream:
	case other != nil:
		e.Notice = "Browsers cannot play this video (" + describe(*other) + "). Download it and play it in VLC or mpv, or in Plex or Jellyfin."
		e.Download, e.DownloadName = other.Path, other.Path
	default:
		e.Notice = "This job has no video to play yet: it may still be encoding. Reload this page once it has finished."
	}
	return e
}

// describe names a file output's codec and container for a person.
func describe(o pipeline.Output) string {
	codec := cmp.Or(codecNames[strings.ToLower(o.Codec)], o.Codec)
	box := map[string]string{"mkv": "Matroska", "mp4": "MP4"}[o.Kind]
	if codec == "" {
		return box
	}
	return codec + " in " + box
}

// embed serves a playback link's page: the job's player, which sites in
// --cors-origin may put in an iframe, and no one else.
func (u *UI) embed(w http.ResponseWriter, r *http.Request) {
	u.d.API.LinkHeaders(w, r)
	h := w.Header()
	ancestors := "'none'"
	if len(u.d.FrameOrigins) > 0 {
		ancestors = strings.Join(u.d.FrameOrigins, " ")
		h.Del("X-Frame-Options") // it cannot name origins; frame-ancestors does
	}
	jobID, _, err := u.d.API.LinkJob(r)
	media := "'self'"
	if err == nil {
		if o := u.d.API.LinkMediaOrigin(r.Context(), jobID); o != "" {
			media += " " + o // --link-presign: segments, files and pictures come from the bucket
		}
	}
	h.Set("Content-Security-Policy", "default-src 'self'; img-src "+media+" data: blob:; media-src "+media+" blob:; "+
		"style-src 'self'; script-src 'self'; connect-src "+media+"; object-src 'none'; base-uri 'none'; frame-ancestors "+ancestors+"; form-action 'none'")
	if err != nil {
		if !api.LinkRefused(err) {
			u.d.Log.Error("check a playback link", "err", err)
			u.renderEmbed(w, http.StatusInternalServerError, embedPage{Title: "herd", Notice: "The server failed to check this link; its log has details."})
			return
		}
		u.renderEmbed(w, http.StatusForbidden, embedPage{Title: "This link does not work", Notice: err.Error() + "."})
		return
	}
	v, err := u.d.API.JobPage(r.Context(), jobID)
	if err != nil {
		u.d.Log.Warn("read a linked job", "job_id", jobID, "err", err)
		u.renderEmbed(w, http.StatusNotFound, embedPage{Title: "Not found", Notice: "The video of this link is no longer on this server."})
		return
	}
	e := embedOf(v.Source.Name, v.Outputs)
	switch {
	case !e.Stream && v.Live != "":
		e.Stream, e.Live = true, "live/"+live.MasterName
	case !e.Stream && !v.State.Final():
		e.Refresh = true
		e.Notice = "This video is not ready to play yet: it is still being encoded. This page looks again every few seconds."
	}
	if !e.Stream && v.State.Final() && v.State != job.Succeeded {
		e.Notice = "This video's encoding " + map[job.State]string{job.Failed: "failed", job.Canceled: "was canceled"}[v.State] + ", so there is nothing to play."
	}
	u.renderEmbed(w, http.StatusOK, e)
}

func (u *UI) renderEmbed(w http.ResponseWriter, status int, e embedPage) {
	u.write(w, status, u.pages["embed"], "embed", "embed", e)
}
