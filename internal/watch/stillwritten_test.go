package watch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

// A copy that stalls for longer than stable_for is taken half-written; its
// writer then goes on through the file it holds open, which is now in the
// work area. No job is made from a part of the file: one about to be made
// waits, one already made is dropped, and the job that counts is made from
// all of it once it holds still for stable_for.
func TestStillWrittenAfterTaken(t *testing.T) {
	ctx := context.Background()
	fx := setup(t, config.AfterMove)
	st, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "herd.db"))
	require.NoError(t, err)
	fx.w.st = st
	fx.f.StableFor = config.Duration(50 * time.Millisecond)
	fx.w.folders[0] = fx.f
	path := filepath.Join(fx.in, "slow.mkv")
	out, err := os.Create(path)
	require.NoError(t, err)
	defer out.Close()
	more := func(s string) {
		_, err := out.WriteString(s)
		require.NoError(t, err)
	}

	more("part one;")
	seen := observe(t, path)
	more("part two;") // between herd's last look and its move
	require.NoError(t, fx.w.take(ctx, fx.f, path, seen))
	require.NoFileExists(t, path, "taken")
	require.Empty(t, fx.submitted(), "no job from a part of the file")
	require.Equal(t, stateTaken, fx.only(t).State)
	fx.w.finishAll(ctx)
	require.Empty(t, fx.submitted(), "not before it held still for stable_for")

	time.Sleep(60 * time.Millisecond)
	fx.w.finishAll(ctx)
	require.Equal(t, []string{"part one;part two;"}, fx.submitted())
	require.Equal(t, stateQueued, fx.only(t).State)

	more("part three;") // after its job was made
	fx.w.finishAll(ctx)
	it := fx.only(t)
	require.Equal(t, stateTaken, it.State, "the job made from a part is dropped")
	require.Empty(t, it.JobID)
	time.Sleep(60 * time.Millisecond)
	fx.w.finishAll(ctx)
	require.Equal(t, []string{"part one;part two;", "part one;part two;part three;"}, fx.submitted())
	require.Equal(t, stateQueued, fx.only(t).State)
}

// herd stopped after the move and before it noted it; the file grew in the
// meantime (its writer still held it). At restart it is the item's file,
// taken, not something swapped in: it is kept, never removed.
func TestGrownFileSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	fx := setup(t, config.AfterMove)
	path := filepath.Join(fx.in, "grown.mkv")
	write(t, path, "part one;")
	require.NoError(t, fx.w.take(ctx, fx.f, path, observe(t, path)))
	it := fx.only(t)
	it.State = stateTaking
	require.NoError(t, fx.w.save(it))
	held := filepath.Join(fx.work, it.ID, it.held())
	f, err := os.OpenFile(held, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString("part two;")
	require.NoError(t, err)
	require.NoError(t, f.Close())

	require.NoError(t, fx.w.recover(ctx))
	require.Equal(t, stateTaken, fx.only(t).State)
	b, err := os.ReadFile(held)
	require.NoError(t, err)
	require.Equal(t, "part one;part two;", string(b))
}
