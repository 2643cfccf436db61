package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/campaign"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/link"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/store"
)

// Re-encode campaigns, and the stable names of published outputs that let
// a campaign swap what plays without a player or a link noticing.

// campaignError answers an error of a campaign route.
func (s *Server) campaignError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, campaign.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_campaign", strings.TrimPrefix(err.Error(), campaign.ErrInvalid.Error()+": "))
	case errors.Is(err, job.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such campaign")
	default:
		s.storeError(w, r, err)
	}
}

// createCampaign makes a campaign, or with dry_run lists what it would redo.
func (s *Server) createCampaign(w http.ResponseWriter, r *http.Request) {
	if s.campaigns == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "this server runs no campaigns")
		return
	}
	var req campaign.Request
	if !decodeJSON(w, r, &req) {
		return
	}
	c, redo, err := s.campaigns.Create(r.Context(), req)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	v := jobview.CampaignView{Campaign: c, Items: make([]store.CampaignItem, len(redo))}
	for i, j := range redo {
		v.Items[i] = store.CampaignItem{JobID: j.ID, Name: j.Source.Name, State: store.ItemPending}
	}
	status := http.StatusCreated
	if req.DryRun {
		status = http.StatusOK
	}
	writeJSON(w, status, v)
}

func (s *Server) listCampaigns(w http.ResponseWriter, r *http.Request) {
	v, err := s.campaignList(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// campaignList is every campaign, newest first: the list route's answer
// and the live campaigns view.
func (s *Server) campaignList(ctx context.Context) (any, error) {
	cs, err := s.st.ListCampaigns(ctx, "")
	return map[string]any{"campaigns": cs}, err
}

func (s *Server) getCampaign(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c, err := s.st.GetCampaign(r.Context(), id)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	items, err := s.st.CampaignItems(r.Context(), id)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, jobview.CampaignView{Campaign: c, Items: items})
}

// steerCampaign pauses, resumes or cancels a campaign.
func (s *Server) steerCampaign(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.campaigns == nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "this server runs no campaigns")
			return
		}
		var c store.Campaign
		var err error
		switch id := r.PathValue("id"); action {
		case "pause":
			c, err = s.campaigns.Pause(r.Context(), id)
		case "resume":
			c, err = s.campaigns.Resume(r.Context(), id)
		default:
			c, err = s.campaigns.Cancel(r.Context(), id)
		}
		if err != nil {
			s.campaignError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, jobview.CampaignView{Campaign: c})
	}
}

// getStream sends the caller to the same path among the outputs of the
// job now current for an asset and profile. Players resolve what a
// playlist names against the URL they were sent to, so one that started
// on a version keeps reading that version's files after a swap.
func (s *Server) getStream(w http.ResponseWriter, r *http.Request) {
	id, err := s.st.StreamJob(r.Context(), r.PathValue("asset"), r.PathValue("profile"))
	if errors.Is(err, job.ErrNotFound) {
		w.Header().Set("Cache-Control", "no-store")
		writeError(w, http.StatusNotFound, "not_found", "nothing made of this asset with this profile has been published yet")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store") // the next swap changes it
	http.Redirect(w, r, "/api/v1/jobs/"+url.PathEscape(id)+"/outputs/"+protocol.EscapePath(r.PathValue("path")), http.StatusFound)
}

// outputsRemoved answers a request for an output of a job whose outputs
// were removed after another replaced it (410, naming the one that did).
func (s *Server) outputsRemoved(w http.ResponseWriter, r *http.Request, id string) bool {
	j, err := s.st.GetJob(r.Context(), id)
	if err != nil || j.OutputsRemovedAt == nil {
		return false
	}
	writeError(w, http.StatusGone, "replaced", "job "+j.ID+" was replaced by job "+j.ReplacedBy+" and its outputs were removed at "+
		j.OutputsRemovedAt.Format(time.RFC3339)+"; the stream's own path "+jobview.StreamPath(j.Source.AssetID, j.Profile)+" always serves the current one")
	return true
}

// entryFile is a file a player starts from: a link to a replaced job sends
// it to the current job's, while the rest of the replaced job's files stay
// readable for players already in the middle of them.
func entryFile(p string) bool { return p == "master.m3u8" || p == "manifest.mpd" }

// toCurrent answers a link's request for path p of a replaced job with a
// redirect to the same path of the job now current for its stream, under
// a link to that job signed with the same expiry. It reports false,
// having written nothing, when the job is current (or nothing is).
func (s *Server) toCurrent(w http.ResponseWriter, r *http.Request, jobID string, exp time.Time, p string) bool {
	j, err := s.st.GetJob(r.Context(), jobID)
	if err != nil || j.ReplacedBy == "" {
		return false
	}
	cur, err := s.st.StreamJob(r.Context(), j.Source.AssetID, j.Profile)
	if err != nil || cur == jobID {
		return false
	}
	secret, err := s.linkSecret(r)
	if err != nil {
		return false
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, linkPath(link.Sign(secret, cur, exp), cur)+protocol.EscapePath(p), http.StatusFound)
	return true
}
