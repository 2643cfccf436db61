package api

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/store"
)

// The life cycle of keys: every key (admin, worker, registration token,
// browser session) can be listed and revoked, records when it was last used,
// and is swept from the database once it has expired. A session ends with
// the admin key that made it. Requests that outlive their first check (event
// streams, long-polled claims) check their key again as they go.

// AdminTokenKeyName names the admin key that herd serve --admin-token (or
// HERD_ADMIN_TOKEN) installs; a server started with another token revokes
// the keys of this name, so the name is kept for them.
const AdminTokenKeyName = "from --admin-token"

// keyUseEvery is how often a key's last use is written: a busy key costs
// one small write a minute, not one per request.
const keyUseEvery = time.Minute

// keySweepEvery is how often expired keys and sessions are deleted.
const keySweepEvery = 10 * time.Minute

func keyView(k store.Key, now time.Time) protocol.KeyView {
	v := protocol.KeyView{ID: k.ID, Kind: k.Kind, Name: k.Name, State: protocol.KeyLive, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, LastUsed: k.LastUsed, MadeWith: k.Parent}
	switch {
	case k.Revoked || k.ParentEnded:
		v.State = protocol.KeyRevoked
	case !k.Usable(now):
		v.State = protocol.KeyExpired
	}
	return v
}

// createToken lets an admin make a registration token (or a worker or admin key).
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
		TTL  string `json:"ttl"`
	}
	if !decodeJSON(w, r, &body) {
		return
	}
	var expires *time.Time
	if body.TTL != "" {
		d, err := time.ParseDuration(body.TTL)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "ttl is a duration such as 24h")
			return
		}
		t := time.Now().Add(d).UTC()
		expires = &t
	}
	if body.Name == AdminTokenKeyName {
		writeError(w, http.StatusBadRequest, "bad_request", "the name "+AdminTokenKeyName+" is kept for the key herd serve --admin-token sets; choose another")
		return
	}
	switch body.Kind {
	case "registration", "admin":
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "kind must be registration (for a worker to trade for its key) or admin")
		return
	}
	if body.Kind == "registration" && expires == nil {
		t := time.Now().Add(24 * time.Hour).UTC()
		expires = &t
	}
	k, err := issueKey(r.Context(), s.st, body.Kind, cmp.Or(body.Name, body.Kind), expires)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, k)
}

func issueKey(ctx context.Context, st store.Store, kind, name string, expires *time.Time) (protocol.IssuedKey, error) {
	secret := apikey.New("herd_" + kind[:3] + "_")
	id := job.NewID("k")
	err := st.CreateKey(ctx, store.Key{ID: id, Kind: kind, Name: name, Hash: apikey.Hash(secret), CreatedAt: time.Now().UTC(), ExpiresAt: expires})
	return protocol.IssuedKey{ID: id, Kind: kind, Name: name, Secret: secret, ExpiresAt: expires}, err
}

// listTokens lists the live keys, or with ?all=true also the revoked and
// expired ones the sweep has not removed yet.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	all := false
	if v := r.URL.Query().Get("all"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "all must be true or false")
			return
		}
		all = b
	}
	keys, err := s.st.ListKeys(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	now := time.Now()
	out := []protocol.KeyView{}
	for _, k := range keys {
		if v := keyView(k, now); all || v.State == protocol.KeyLive {
			out = append(out, v)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
}

// revokeToken revokes a key by id: it stops working at once, and so do the
// sessions made with it. A worker's key revokes the worker (its running
// tasks go back to the queue). The last live admin key is kept: revoking it
// would leave nobody able to manage herd.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	s.revoking.Lock()
	defer s.revoking.Unlock()
	ctx := r.Context()
	id := r.PathValue("id")
	keys, err := s.st.ListKeys(ctx)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	now := time.Now()
	var (
		target     *store.Key
		liveAdmins int
	)
	for i, k := range keys {
		if k.ID == id {
			target = &keys[i]
		}
		if k.Kind == "admin" && k.Usable(now) {
			liveAdmins++
		}
	}
	if target == nil {
		writeError(w, http.StatusNotFound, "not_found", "no such key; herd token list --all shows every key's id")
		return
	}
	if target.Kind == "admin" && target.Usable(now) && liveAdmins == 1 {
		writeError(w, http.StatusConflict, "last_admin_key", "this is the only live admin key: create another first (herd token create), then revoke this one")
		return
	}
	if target.Kind == "worker" {
		if wk, err := s.st.GetWorker(ctx, target.Name); err == nil && wk.KeyID == target.ID && wk.State != store.WorkerRevoked {
			if err := s.st.SetWorkerState(ctx, wk.Name, store.WorkerRevoked, now); err != nil && !errors.Is(err, job.ErrConflict) {
				s.internal(w, r, err)
				return
			}
		}
	}
	k, err := s.st.RevokeKey(ctx, id)
	if errors.Is(err, job.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such key; herd token list --all shows every key's id")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.kick.Kick() // claims parked on the server look at their key again
	s.log.Info("key revoked", "key_id", k.ID, "kind", k.Kind, "name", k.Name)
	writeJSON(w, http.StatusOK, keyView(k, now))
}

// touchKey records a key's use, at most once per keyUseEvery.
func (s *Server) touchKey(ctx context.Context, k store.Key, now time.Time) {
	if k.LastUsed != nil && now.Sub(*k.LastUsed) < keyUseEvery {
		return
	}
	if err := s.st.TouchKey(ctx, k.ID, now, keyUseEvery); err != nil && ctx.Err() == nil {
		s.log.Warn("record key use", "key_id", k.ID, "err", err)
	}
}

// stillValid checks again the credential a request was admitted with (a
// bearer key, else a session cookie): an event stream or a long poll
// outlives the check made when it began. A database that fails to answer
// does not end the request; a key that is gone, revoked or expired does.
func (s *Server) stillValid(ctx context.Context, r *http.Request) bool {
	if tok := bearer(r); tok != "" {
		k, err := s.st.KeyByHash(ctx, apikey.Hash(tok))
		switch {
		case errors.Is(err, job.ErrNotFound):
			return false
		case err != nil:
			s.log.Warn("check a key again", "err", err)
			return true
		}
		return k.Usable(time.Now())
	}
	_, ok := s.Session(r)
	return ok
}

// SweepKeys deletes expired keys and sessions now and then every ten
// minutes until ctx ends.
func (s *Server) SweepKeys(ctx context.Context) error {
	every(ctx, keySweepEvery, s.sweepKeys)
	return nil
}

func (s *Server) sweepKeys(ctx context.Context) {
	n, err := s.st.SweepExpiredKeys(ctx, time.Now())
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Warn("sweep expired keys", "err", err)
	case n > 0:
		s.log.Info("removed expired keys and sessions", "keys", n)
	}
}

// refusedKey is what a caller whose key is not (or no longer) valid is told,
// by kind: what it can do about it.
func refusedKey(kind string) string {
	switch kind {
	case "worker":
		return "the worker key was revoked or has expired; register the worker again with a new registration token (herd token create --registration)"
	case "registration":
		return "the registration token was used already, revoked or has expired; ask an admin for a new one (herd token create --registration)"
	case kindSession:
		return "the session has ended; sign in again at /login"
	}
	return "the key was revoked or has expired; use another admin key (herd token list shows them)"
}

// wrongKind is what a caller presenting a live key of another kind is told.
func wrongKind(need, have string) string {
	switch {
	case need == "worker" && (have == "admin" || have == kindSession):
		return "this endpoint needs a worker key, and this is an admin key: give a worker its own key (herd worker --token, or HERD_WORKER_TOKEN), or a registration token (herd token create --registration) to trade for one"
	case need == "worker":
		return "this endpoint needs a worker key, and this is a " + have + " key; a registration token is traded for a worker key at POST /api/v1/worker/register (herd worker --registration-token)"
	case have == "worker":
		return "this endpoint needs an admin key, and this is a worker key; the herd CLI reads the admin key from --token or HERD_TOKEN"
	}
	return "this endpoint needs an admin key, and this is a " + have + " key"
}
