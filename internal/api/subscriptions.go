package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/label"
	"github.com/herdhq/herd/internal/store"
)

// Webhook subscriptions: every job's life-cycle events, signed, to a URL.

// subscriptionView is a subscription as the API shows it; its secret only
// in the answer that created it.
type subscriptionView struct {
	store.Subscription
	Secret string `json:"secret,omitempty"`
}

func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name     string            `json:"name"`
		URL      string            `json:"url"`
		Secret   string            `json:"secret"`
		Events   []string          `json:"events"`
		Profiles []string          `json:"profiles"`
		Labels   map[string]string `json:"labels"`
	}
	if !decodeJSON(w, r, &body) {
		return
	}
	if body.Name == "" {
		body.Name = body.URL
	}
	if len(body.Name) > 200 || len(body.URL) > 2000 || len(body.Secret) > 200 {
		writeError(w, http.StatusBadRequest, "bad_request", "name, url or secret is too long")
		return
	}
	for _, e := range body.Events {
		if !slices.Contains(job.Events, e) {
			writeError(w, http.StatusBadRequest, "bad_request", "events are "+strings.Join(job.Events, ", ")+" (none: "+strings.Join(job.LifeCycle, ", ")+"), not "+e)
			return
		}
	}
	if err := label.Check(body.Labels); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "labels: "+err.Error())
		return
	}
	for _, p := range body.Profiles {
		if _, ok := s.profiles.Get(p); !ok {
			writeError(w, http.StatusBadRequest, "unknown_profile", "no profile "+p+"; GET /api/v1/profiles lists them")
			return
		}
	}
	if s.checkHook == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "this server delivers no webhooks")
		return
	}
	if err := s.checkHook(r.Context(), body.URL); err != nil {
		writeError(w, http.StatusBadRequest, "target_refused", err.Error())
		return
	}
	secret := body.Secret
	if secret == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		secret = hex.EncodeToString(b)
	}
	sub := store.Subscription{ID: job.NewID("sub"), Name: body.Name, URL: body.URL, Secret: secret, Events: body.Events,
		Profiles: body.Profiles, Labels: body.Labels, Origin: "api", CreatedAt: time.Now().UTC()}
	if err := s.st.PutSubscription(r.Context(), sub); err != nil {
		s.internal(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/subscriptions/"+sub.ID)
	writeJSON(w, http.StatusCreated, subscriptionView{Subscription: sub, Secret: secret})
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	subs, err := s.st.ListSubscriptions(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if subs == nil {
		subs = []store.Subscription{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"subscriptions": subs})
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request) {
	sub, err := s.st.GetSubscription(r.Context(), r.PathValue("id"))
	if err != nil {
		s.subscriptionError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sub)
}

func (s *Server) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	sub, err := s.st.GetSubscription(r.Context(), r.PathValue("id"))
	if err == nil && sub.Origin == "config" {
		writeError(w, http.StatusConflict, "conflict", "this subscription comes from the configuration file; remove it there")
		return
	}
	if err == nil {
		err = s.st.DeleteSubscription(r.Context(), sub.ID)
	}
	if err != nil {
		s.subscriptionError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// resumeSubscription sends a paused subscription events again (those of
// job changes from now on).
func (s *Server) resumeSubscription(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.st.SubscriptionHealth(r.Context(), id, nil, nil, ""); err != nil {
		s.subscriptionError(w, r, err)
		return
	}
	s.getSubscription(w, r)
}

func (s *Server) subscriptionError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, job.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such subscription")
		return
	}
	s.internal(w, r, err)
}
