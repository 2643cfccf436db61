package campaign_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/campaign"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/sqlstore"
	"github.com/herdhq/herd/internal/testenv"
)

type noKick struct{}

func (noKick) Kick() {}

type removed []string

func (r *removed) RemoveOutputs(_ context.Context, id string) error { *r = append(*r, id); return nil }

type fixture struct {
	st    *sqlstore.Store
	set   *profile.Set
	dir   string
	sub   *ingest.Submitter
	svc   *campaign.Service
	files *removed
}

func profileDoc(version, height int) string {
	return fmt.Sprintf("name: tiny\nversion: %d\nformat: mp4\nvideo: {codec: h264, crf: 35, max_height: %d}\naudio: {codec: aac}\n", version, height)
}

func setup(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, blobs := testenv.Stores(t, dir)
	profiles := filepath.Join(dir, "profiles")
	require.NoError(t, os.MkdirAll(profiles, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(profiles, "tiny.yaml"), []byte(profileDoc(1, 144)), 0o644))
	set, err := profile.Load(profiles)
	require.NoError(t, err)
	f := &fixture{st: st, set: set, dir: profiles, files: &removed{}}
	f.sub = ingest.New(st, blobs, set, noKick{}, ingest.Config{Publishers: map[string]string{"movies": "library"}})
	f.svc = campaign.New(campaign.Config{Store: st, Redo: f.sub, Profiles: set, Files: f.files, Libraries: []string{"movies"}, Keep: time.Hour})
	return f
}

// publish submits a source of its own and runs its one task to success.
func (f *fixture) publish(t *testing.T, name string, opt ingest.Options) job.Job {
	t.Helper()
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte("bytes of "+name), 0o644))
	src, err := os.Open(p)
	require.NoError(t, err)
	defer src.Close()
	j, created, err := f.sub.Upload(ctx, name, "tiny", opt, src)
	require.NoError(t, err)
	require.True(t, created)
	testenv.FinishJob(t, f.st, j.ID)
	return j
}

func (f *fixture) edit(t *testing.T, version int) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, "tiny.yaml"), []byte(profileDoc(version, 96)), 0o644))
	next, errs := profile.Reload(f.dir, f.set)
	require.Empty(t, errs)
	f.set.Replace(next)
}

func TestCampaignRedoesEachOutputOnce(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	var olds []job.Job
	for i := range 5 {
		opt := ingest.Options{}
		if i < 3 {
			opt = ingest.Options{Publish: []string{"movies"}, Labels: map[string]string{"team": "web"}}
		}
		olds = append(olds, f.publish(t, fmt.Sprintf("clip%d.mp4", i), opt))
	}

	_, _, err := f.svc.Create(ctx, campaign.Request{Profile: "tiny"})
	require.ErrorIs(t, err, campaign.ErrInvalid, "nothing older than the current version")
	require.ErrorContains(t, err, "edit the profile first")
	f.edit(t, 2)
	for _, bad := range []campaign.Request{
		{Profile: "nope"},
		{Profile: "tiny", FromVersion: 2},
		{Profile: "tiny", Library: "shows"},
		{Profile: "tiny", Window: "25:00-01:00"},
		{Profile: "tiny", MaxRunning: -1},
		{Profile: "tiny", Query: "nothing like it"},
	} {
		_, _, err := f.svc.Create(ctx, bad)
		require.ErrorIs(t, err, campaign.ErrInvalid, "%+v", bad)
	}

	dry, redo, err := f.svc.Create(ctx, campaign.Request{Profile: "tiny", Library: "movies", DryRun: true})
	require.NoError(t, err)
	require.Len(t, redo, 3)
	require.Equal(t, 3, dry.Counts.Total)
	_, err = f.st.GetCampaign(ctx, dry.ID)
	require.ErrorIs(t, err, job.ErrNotFound, "a dry run stores nothing")

	c, redo, err := f.svc.Create(ctx, campaign.Request{Profile: "tiny", Labels: map[string]string{"team": "web"}, MaxRunning: 2})
	require.NoError(t, err)
	require.Len(t, redo, 3)
	require.Equal(t, 1, c.FromVersion)
	require.Equal(t, 2, c.ToVersion)

	// Two at a time: a step queues two, and another step adds none until one ends.
	require.NoError(t, f.svc.Step(ctx))
	require.Equal(t, []string{"open", "open", "pending"}, f.step(t, c.ID))
	items := f.items(t, c.ID)
	nj, err := f.st.GetJob(ctx, items[0].NewJobID)
	require.NoError(t, err)
	require.Equal(t, 2, nj.ProfileVersion)
	require.Equal(t, olds[0].ID, nj.Replaces)
	require.Equal(t, []string{"movies"}, nj.Publish)
	require.Equal(t, map[string]string{"team": "web"}, nj.Labels)

	// Until its new job succeeds, the old one stays its stream's.
	cur, err := f.st.StreamJob(ctx, olds[0].Source.AssetID, "tiny")
	require.NoError(t, err)
	require.Equal(t, olds[0].ID, cur)
	testenv.FinishJob(t, f.st, nj.ID)
	cur, err = f.st.StreamJob(ctx, olds[0].Source.AssetID, "tiny")
	require.NoError(t, err)
	require.Equal(t, nj.ID, cur)

	// Paused: nothing more is queued; resumed: the rest is.
	_, err = f.svc.Pause(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"succeeded", "open", "pending"}, f.step(t, c.ID))
	_, err = f.svc.Pause(ctx, c.ID)
	require.NoError(t, err, "pausing again is no error")
	_, err = f.svc.Resume(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"succeeded", "open", "open"}, f.step(t, c.ID))
	items = f.items(t, c.ID)

	// A redo asked for again (a server that died between queueing and
	// recording) is the same job.
	again, created, err := f.sub.Redo(ctx, olds[1])
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, items[1].NewJobID, again.ID)

	testenv.FinishJob(t, f.st, items[1].NewJobID)
	testenv.FinishJob(t, f.st, items[2].NewJobID)
	require.NoError(t, f.svc.Step(ctx))
	got, err := f.st.GetCampaign(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, store.CampaignDone, got.State)
	require.Equal(t, store.CampaignCounts{Total: 3, Succeeded: 3}, got.Counts)
	_, err = f.svc.Pause(ctx, c.ID)
	require.ErrorIs(t, err, job.ErrConflict, "a finished campaign cannot be paused")

	// A second campaign over the rest; canceled, its open jobs are canceled
	// and the old outputs stay current.
	c2, redo, err := f.svc.Create(ctx, campaign.Request{Profile: "tiny", Query: "CLIP", MaxRunning: 5})
	require.NoError(t, err)
	require.Len(t, redo, 2, "the three redone already are at version 2")
	require.NoError(t, f.svc.Step(ctx))
	_, err = f.svc.Cancel(ctx, c2.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"canceled", "canceled"}, states(f.items(t, c2.ID)))
	cur, err = f.st.StreamJob(ctx, olds[4].Source.AssetID, "tiny")
	require.NoError(t, err)
	require.Equal(t, olds[4].ID, cur)

	// The replaced outputs go once their keep time has passed, not before.
	require.NoError(t, f.svc.Purge(ctx))
	require.Empty(t, *f.files)
	short := campaign.New(campaign.Config{Store: f.st, Redo: f.sub, Profiles: f.set, Files: f.files, Keep: -1})
	require.NoError(t, short.Purge(ctx))
	require.ElementsMatch(t, []string{olds[0].ID, olds[1].ID, olds[2].ID}, *f.files)
	old, err := f.st.GetJob(ctx, olds[0].ID)
	require.NoError(t, err)
	require.NotNil(t, old.OutputsRemovedAt)
}

// step steps the campaigns and returns the states of campaign id's items.
func (f *fixture) step(t *testing.T, id string) []string {
	t.Helper()
	require.NoError(t, f.svc.Step(context.Background()))
	return states(f.items(t, id))
}

func (f *fixture) items(t *testing.T, id string) []store.CampaignItem {
	t.Helper()
	items, err := f.st.CampaignItems(context.Background(), id)
	require.NoError(t, err)
	return items
}

// states lists the items' states, queued and running both as open (a
// finish claims the oldest task, of whichever job).
func states(items []store.CampaignItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.State
		if it.State == "queued" || it.State == "running" {
			out[i] = "open"
		}
	}
	return out
}
