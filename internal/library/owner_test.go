package library

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// Where herd may not give the new file the original's owner (it does not
// run as root, and the original is someone else's), it keeps the
// original and says which user it would have to run as. The test runs
// itself again as nobody (65534) to see it.
func TestOwnerHerdMayNotGive(t *testing.T) {
	if dir := os.Getenv("HERD_TEST_OWNER_DIR"); dir != "" {
		root, err := os.OpenRoot(dir)
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(2)
		}
		orig, err := root.Stat("orig.mkv")
		if err != nil {
			fmt.Println("stat:", err)
			os.Exit(2)
		}
		err = owned(root, "new.mkv", orig)
		fmt.Println(err)
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run itself as another user")
	}
	t.Parallel()
	dir := t.TempDir()
	for d := dir; d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
		require.NoError(t, os.Chmod(d, 0o755)) // nobody may reach it
	}
	require.NoError(t, os.Chmod(dir, 0o777))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "orig.mkv"), []byte("old"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "new.mkv"), []byte("new"), 0o644))
	require.NoError(t, os.Chown(filepath.Join(dir, "new.mkv"), 65534, 65534))
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
	cmd.Env = []string{"HERD_TEST_OWNER_DIR=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	got, err := cmd.CombinedOutput()
	require.NoError(t, err, string(got))
	require.Contains(t, string(got), "herd runs as uid 65534 gid 65534 and may not give the new file the original's owner, uid 0 gid 0: run herd as root or as that user")
}
