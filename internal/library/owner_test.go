package library

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

// Where herd may not give the new file the original's owner (it does not
// run as root, and the original is someone else's), it keeps the
// original, says which user it would have to run as, and leaves nothing
// behind. The test runs itself again as nobody (65534) to see it.
func TestOwnerHerdMayNotGive(t *testing.T) {
	if dir := os.Getenv("HERD_TEST_OWNER_DIR"); dir != "" {
		st, err := sqlstore.OpenSQLite(t.Context(), filepath.Join(dir, "herd.db"))
		require.NoError(t, err)
		defer st.Close()
		jobs := doneJobs{Store: st, jobs: map[string]job.Job{"j1": {ID: "j1", State: job.Succeeded,
			Outputs: []byte(`[{"name":"mkv","kind":"mkv","path":"new.mkv","size":6000}]`)}}}
		outs := outputs{"jobs/j1/out/new.mkv": []byte(strings.Repeat("new", 2000))}
		m := New([]Spec{{Name: "movies", Path: filepath.Join(dir, "lib"), Profile: "archive-hevc", Action: ActionReplace, MaxRunning: 1}},
			jobs, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
		fmt.Println("apply:", m.apply(t.Context(), m.libs["movies"]))
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run itself as another user")
	}
	t.Parallel()
	dir := t.TempDir()
	for d := dir; d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
		require.NoError(t, os.Chmod(d, 0o755)) // nobody may reach it
	}
	lib := filepath.Join(dir, "lib")
	require.NoError(t, os.Mkdir(lib, 0o777))
	require.NoError(t, os.Chmod(lib, 0o777))
	require.NoError(t, os.Chmod(dir, 0o777))
	db, err := sqlstore.OpenSQLite(t.Context(), filepath.Join(dir, "herd.db"))
	require.NoError(t, err)
	_, _, old, _ := replacingIn(t, db, lib, "Heat.mkv", 0o644)
	require.NoError(t, db.Close())
	for _, name := range []string{"herd.db", "herd.db-wal", "herd.db-shm"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			require.NoError(t, os.Chmod(p, 0o666))
		}
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	self := filepath.Join(dir, "library.test")
	in, err := os.Open(exe)
	require.NoError(t, err)
	out, err := os.OpenFile(self, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
	_ = in.Close()
	cmd := exec.Command(self, "-test.run=^TestOwnerHerdMayNotGive$")
	cmd.Env = []string{"HERD_TEST_OWNER_DIR=" + dir, "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	got, err := cmd.CombinedOutput()
	require.NoError(t, err, string(got))
	require.Contains(t, string(got), "apply: <nil>")

	after, err := sqlstore.OpenSQLite(t.Context(), filepath.Join(dir, "herd.db"))
	require.NoError(t, err)
	defer after.Close()
	files, err := after.LibraryFiles(t.Context(), "movies")
	require.NoError(t, err)
	require.Len(t, files, 1)
	require.Equal(t, StateKept, files[0].State)
	require.Contains(t, files[0].Note, "herd runs as uid 65534 gid 65534 and may not give the new file the original's owner, uid 0 gid 0: run herd as root or as that user")
	b, err := os.ReadFile(filepath.Join(lib, "Heat.mkv"))
	require.NoError(t, err)
	require.Equal(t, old, b, "the original stays")
	entries, err := os.ReadDir(lib)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing left beside it: %v", entries)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
