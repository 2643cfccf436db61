package main_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

type imageConfig struct {
	Config struct {
		User         string
		Env          []string
		Entrypoint   []string
		Cmd          []string
		WorkingDir   string
		ExposedPorts map[string]struct{}
		Volumes      map[string]struct{}
	} `json:"config"`
}

// The image `make image` builds without Docker: its config says non-root,
// the same as the Dockerfile; only /data and /tmp belong to that user; and
// inside it (chroot, as uid 10001) herd and ffmpeg run, ffmpeg can encode
// into /tmp but not write to /, and herd serve gets ready.
func TestImage(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root on Linux (chroot and setuid to run inside the image)")
	}
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "herd.tar")
	cmd := exec.Command("scripts/build-image.sh", tarPath, "herd:test")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))

	// The archive: manifest -> config and the one layer.
	files := map[string][]byte{}
	f, err := os.Open(tarPath)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[h.Name] = b
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	require.NoError(t, json.Unmarshal(files["manifest.json"], &manifest))
	require.Len(t, manifest, 1)
	require.Equal(t, []string{"herd:test"}, manifest[0].RepoTags)
	require.Len(t, manifest[0].Layers, 1)
	var cfg imageConfig
	require.NoError(t, json.Unmarshal(files[manifest[0].Config], &cfg))
	c := cfg.Config
	require.Equal(t, "10001:10001", c.User)
	require.Equal(t, []string{"/usr/local/bin/herd"}, c.Entrypoint)
	require.Equal(t, []string{"serve"}, c.Cmd)
	require.Contains(t, c.Env, "HERD_DATA=/data")
	require.Contains(t, c.ExposedPorts, "8080/tcp")

	// The Dockerfile says the same.
	df, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	final := string(df[strings.LastIndex(string(df), "FROM scratch"):])
	require.Contains(t, final, "USER "+c.User+"\n")
	require.Contains(t, final, "WORKDIR "+c.WorkingDir+"\n")
	require.Contains(t, final, `ENTRYPOINT ["`+strings.Join(c.Entrypoint, `", "`)+`"]`)
	require.Contains(t, final, `CMD ["`+strings.Join(c.Cmd, `", "`)+`"]`)
	require.Contains(t, final, "ENV "+strings.Join(c.Env, " ")+"\n")
	for p := range c.ExposedPorts {
		require.Contains(t, final, "EXPOSE "+strings.TrimSuffix(p, "/tcp")+"\n")
	}
	for v := range c.Volumes {
		require.Contains(t, final, "VOLUME "+v+"\n")
	}

	// Unpack the layer as the runtime would, checking owners and modes.
	root := filepath.Join(dir, "root")
	require.NoError(t, os.Mkdir(root, 0o755))
	zr, err := gzip.NewReader(bytes.NewReader(files[manifest[0].Layers[0]]))
	require.NoError(t, err)
	lt := tar.NewReader(zr)
	var size int64
	for {
		h, err := lt.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		name := strings.TrimSuffix(h.Name, "/")
		mine := name == "data" || name == "tmp" || strings.HasPrefix(name, "data/") || strings.HasPrefix(name, "tmp/")
		if mine {
			require.Equal(t, 10001, h.Uid, name)
		} else {
			require.Equal(t, 0, h.Uid, "%s belongs to root: the user cannot change it", name)
		}
		require.Zero(t, h.Mode&(04000|02000), "%s has no setuid/setgid bit", name)
		p := filepath.Join(root, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			require.NoError(t, os.MkdirAll(p, os.FileMode(h.Mode).Perm()))
			require.NoError(t, os.Chmod(p, os.FileMode(h.Mode).Perm()|stickyBit(h.Mode)))
		case tar.TypeSymlink:
			require.NoError(t, os.Symlink(h.Linkname, p))
		case tar.TypeReg:
			w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			require.NoError(t, err)
			n, err := io.Copy(w, lt)
			require.NoError(t, err)
			require.NoError(t, w.Close())
			size += n
		default:
			t.Fatalf("unexpected entry %s (type %c)", name, h.Typeflag)
		}
		require.NoError(t, os.Lchown(p, h.Uid, h.Gid))
	}
	t.Logf("image: %d MB in the archive, %d MB unpacked", len(files[manifest[0].Layers[0]])>>20, size>>20)

	inside := func(env []string, args ...string) *exec.Cmd {
		c := exec.Command(args[0], args[1:]...)
		c.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HERD_DATA=/data", "TMPDIR=/tmp"}, env...)
		c.Dir = "/"
		c.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 10001, Gid: 10001}}
		return c
	}
	out, err = inside(nil, "/usr/local/bin/herd", "version").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Regexp(t, `^herd \S+`, string(out))
	out, err = inside(nil, "/usr/bin/ffmpeg", "-hide_banner", "-version").CombinedOutput()
	require.NoError(t, err, string(out))
	out, err = inside(nil, "/usr/bin/ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15",
		"-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "/tmp/out.mp4").CombinedOutput()
	require.NoError(t, err, "ffmpeg encodes with the libraries in the image: %s", out)
	out, err = inside(nil, "/usr/bin/ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15",
		"-t", "1", "-c:v", "libx264", "/out.mp4").CombinedOutput()
	require.Error(t, err, "the user cannot write outside /data and /tmp")
	require.Contains(t, string(out), "Permission denied")

	// herd serve, as the image's command starts it, gets ready (database, storage and ffmpeg checks).
	addr := freeAddr(t)
	srv := inside([]string{"HERD_ADDR=" + addr}, "/usr/local/bin/herd", "serve")
	stdout, err := srv.StdoutPipe()
	require.NoError(t, err)
	var logs testenv.SyncBuffer
	srv.Stderr = &logs
	require.NoError(t, srv.Start())
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := regexp.MustCompile(`running at (http://\S+)`).FindStringSubmatch(sc.Text()); m != nil {
				started <- m[1]
			}
		}
	}()
	var url string
	select {
	case url = <-started:
	case <-time.After(30 * time.Second):
		t.Fatalf("herd serve did not start in the image:\n%s", logs.String())
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 100*time.Millisecond, "ready:\n%s", logs.String())
}

func stickyBit(mode int64) os.FileMode {
	if mode&01000 != 0 {
		return os.ModeSticky
	}
	return 0
}
