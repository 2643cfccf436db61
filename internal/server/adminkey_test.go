package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/testenv"
)

// TestAdminTokenRotation: starting with a different --admin-token retires
// the key the previous one set, and the sessions made with it; starting
// again with the same token changes nothing; an old token whose key was
// retired does not come back, nor does it retire the token now in use.
func TestAdminTokenRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.SQLite(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	start := func(token string) {
		t.Helper()
		require.NoError(t, ensureAdminKey(ctx, st, Config{AdminToken: token}, io.Discard, log))
	}
	usable := func(token string) bool {
		t.Helper()
		k, err := st.KeyByHash(ctx, apikey.Hash(token))
		require.NoError(t, err)
		return k.Usable(time.Now())
	}
	const a, b = "first-admin-token-0123456789", "second-admin-token-0123456789"
	start(a)
	require.True(t, usable(a))
	ka, err := st.KeyByHash(ctx, apikey.Hash(a))
	require.NoError(t, err)
	require.Equal(t, api.AdminTokenKeyName, ka.Name)
	// An admin key made through the API, and a session signed in with a's key.
	require.NoError(t, st.CreateKey(ctx, store.Key{ID: "kmade", Kind: "admin", Name: "made by hand", Hash: apikey.Hash("hand-made-admin-key-0123"), CreatedAt: time.Now()}))
	later := time.Now().Add(time.Hour)
	require.NoError(t, st.CreateKey(ctx, store.Key{ID: "kses", Kind: "session", Hash: apikey.Hash("session-of-a"), CreatedAt: time.Now(), ExpiresAt: &later, Parent: ka.ID}))
	require.True(t, usable("session-of-a"))

	start(a)
	require.True(t, usable(a), "the same token again changes nothing")

	start(b)
	require.True(t, usable(b))
	require.False(t, usable(a), "a new --admin-token retires the key the previous one set")
	require.False(t, usable("session-of-a"), "and the sessions made with it")
	require.True(t, usable("hand-made-admin-key-0123"), "other admin keys stay")
	require.Contains(t, logs.String(), "retired the admin key")

	start(a)
	require.False(t, usable(a), "a retired token does not come back")
	require.True(t, usable(b), "and does not retire the one that works")
	require.Contains(t, logs.String(), "set a new token")

	require.Error(t, ensureAdminKey(ctx, st, Config{AdminToken: "short"}, io.Discard, log))
}
