package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

type workerProc struct {
	name string
	dir  string // its --data
	cmd  *exec.Cmd
	logs *testenv.SyncBuffer
}

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := testenv.FreePort()
	require.NoError(t, err)
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// startWorker runs `herd worker` against s; the first start trades a registration token.
func (s *server) startWorker(t *testing.T, name string, extra ...string) *workerProc {
	t.Helper()
	tok, stderr, code := s.herd("token", "create", "--registration")
	require.Equal(t, 0, code, stderr)
	return spawnWorker(t, s.url, name, filepath.Join(t.TempDir(), name), strings.TrimSpace(tok), extra...)
}

// spawnWorker runs `herd worker` against the server at url with its data in
// dir until it says it is running; tok is a registration token to trade
// (the first start), or "" to use the worker key kept in dir.
func spawnWorker(t *testing.T, url, name, dir, tok string, extra ...string) *workerProc {
	t.Helper()
	args := []string{"worker", "--server", url, "--name", name, "--data", dir,
		"--health-addr", freeAddr(t), "--heartbeat", "500ms", "--log-format", "json"}
	if tok != "" {
		args = append(args, "--registration-token", tok)
	}
	cmd := exec.Command(herdBin, append(args, extra...)...)
	cmd.Env = append(os.Environ(), "HERD_TOKEN=", "HERD_SERVER=", "HERD_WORKER_TOKEN=")
	logs := &testenv.SyncBuffer{}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	reap(t, "worker "+name, cmd, logs, 4000)
	awaitRunning(t, name, stdout, logs)
	return &workerProc{name: name, dir: dir, cmd: cmd, logs: logs}
}

// awaitRunning reads a worker's stdout until it says it is running; the
// test fails if the worker exits first or takes more than a minute.
func awaitRunning(t *testing.T, name string, stdout io.Reader, logs *testenv.SyncBuffer) {
	t.Helper()
	running, exited := make(chan struct{}), make(chan struct{})
	var once sync.Once
	go func() {
		defer close(exited) // stdout ends when the process does
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "is running") {
				once.Do(func() { close(running) })
			}
		}
	}()
	select {
	case <-running:
	case <-exited:
		t.Fatalf("worker %s exited at start:\n%s", name, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("worker %s did not start within 60 s:\n%s", name, logs.String())
	}
}

func TestRemoteWorkerRunsEverything(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0")
	w := s.startWorker(t, "box-1", "--max-tasks", "2")

	src := clip(t, dir, 4, "320x180")
	// With a subtitle file, which the worker fetches from the server.
	srt := filepath.Join(dir, "clip.fr.srt")
	require.NoError(t, os.WriteFile(srt, []byte("1\n00:00:00,500 --> 00:00:01,500\nBonjour.\n"), 0o644))
	stdout, stderr, code := s.herd("submit", src, "--profile", "web-hls", "--subtitle", "fre:sdh="+srt, "--wait")
	require.Equal(t, 0, code, stderr)
	j := s.job(strings.TrimSpace(stdout))
	require.Equal(t, "succeeded", j.State)
	for _, task := range j.Tasks {
		require.Equal(t, "box-1", task.Worker, "task %s ran on the remote worker", task.Kind)
	}
	// The audio and the subtitles are the audio task's, as in a split job;
	// the verify fetched them and the encode from the server to join them.
	require.Equal(t, []string{"probe", "audio", "encode", "thumbnails", "verify", "finalize"}, kinds(j))
	require.FileExists(t, filepath.Join(s.data, "blobs", "jobs", j.ID, "out", "master.m3u8"))
	resp, body := s.get("/api/v1/jobs/"+j.ID+"/outputs/master.m3u8", nil)
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, string(body), "#EXT-X-STREAM-INF")
	require.Contains(t, string(body), `TYPE=SUBTITLES,GROUP-ID="subs",NAME="Français (SDH)",LANGUAGE="fr"`)
	resp, body = s.get("/api/v1/jobs/"+j.ID+"/outputs/subs_0_00001.vtt", nil)
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, string(body), "Bonjour.")

	out, _, code := s.herd("workers", "-o", "json")
	require.Equal(t, 0, code)
	var ws struct {
		Workers []struct {
			Name, State string
			Caps        []string `json:"capabilities"`
			Slots       int
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &ws))
	require.Len(t, ws.Workers, 1)
	require.Equal(t, "active", ws.Workers[0].State)
	require.Contains(t, ws.Workers[0].Caps, "h264")
	require.NotContains(t, ws.Workers[0].Caps, "nvenc:h264", "only encoders proven by a trial encode")
	require.Equal(t, 2, ws.Workers[0].Slots)

	// Drained: new work waits; resumed: it runs.
	_, _, code = s.herd("workers", "drain", "box-1")
	require.Equal(t, 0, code)
	src2 := clip(t, dir, 2, "256x144")
	stdout, _, code = s.herd("submit", src2, "--profile", "mp4-library")
	require.Equal(t, 0, code)
	id2 := strings.TrimSpace(stdout)
	time.Sleep(1500 * time.Millisecond)
	require.Equal(t, "queued", s.job(id2).State, "a drained worker takes nothing new")
	_, _, code = s.herd("workers", "resume", "box-1")
	require.Equal(t, 0, code)
	require.Equal(t, "succeeded", s.waitFinal(id2).State)

	// Revoked: its key stops working, and the worker stops at once, non-zero
	// (so Kubernetes shows it), naming the key it used and what to do,
	// instead of retrying a refused key forever.
	_, _, code = s.herd("workers", "revoke", "box-1")
	require.Equal(t, 0, code)
	require.NotEqual(t, 0, waitExit(t, w.cmd, 60*time.Second), "a worker whose key is refused exits non-zero")
	msg := w.logs.String()
	require.Regexp(t, `refused the worker key saved in \S*`+filepath.Join("box-1", "worker.key"), msg)
	require.Contains(t, msg, "herd token create --registration")
}

func TestKilledWorkerTaskFinishesElsewhere(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0")
	workers := []*workerProc{s.startWorker(t, "w1"), s.startWorker(t, "w2"), s.startWorker(t, "w3")}

	src := clip(t, dir, 30, "640x360")
	stdout, stderr, code := s.herd("submit", src, "--profile", "web-hls")
	require.Equal(t, 0, code, stderr)
	id := strings.TrimSpace(stdout)
	s.waitEncoding(id)
	var victim string
	for _, task := range s.job(id).Tasks {
		if task.Kind == "encode" {
			victim = task.Worker
		}
	}
	killNamed(t, workers, victim)
	require.NotEmpty(t, victim)
	j := s.waitFinal(id)
	require.Equal(t, "succeeded", j.State, j.Error)
	for _, task := range j.Tasks {
		if task.Kind == "encode" {
			require.Equal(t, 2, task.Attempt)
			require.NotEqual(t, victim, task.Worker, "finished elsewhere")
		}
	}
	_, body := s.get("/metrics", nil)
	require.Contains(t, string(body), "herd_lease_expiries_total 1")
	fmt.Fprintln(os.Stderr, "killed worker", victim)
}

func TestPartitionedWorkerLosesLeaseAndIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0")
	p := startProxy(t, strings.TrimPrefix(s.url, "http://"))
	direct := s.url
	s.url = "http://" + p.addr() // the cut-off worker registers and runs through the proxy
	cutoff := s.startWorker(t, "far")
	s.url = direct

	src := clip(t, dir, 30, "640x360")
	stdout, stderr, code := s.herd("submit", src, "--profile", "web-hls")
	require.Equal(t, 0, code, stderr)
	id := strings.TrimSpace(stdout)
	s.waitEncoding(id)
	p.setCut(true)
	s.startWorker(t, "near")

	j := s.waitFinal(id)
	require.Equal(t, "succeeded", j.State, j.Error)
	for _, task := range j.Tasks {
		if task.Kind == "encode" {
			require.Equal(t, "near", task.Worker, "the task finished elsewhere")
			require.Equal(t, 2, task.Attempt)
		}
	}
	// When the network comes back, the cut-off worker's late report is refused.
	p.setCut(false)
	require.Eventually(t, func() bool { return strings.Contains(cutoff.logs.String(), "lease lost") }, 2*time.Minute, 200*time.Millisecond)
	require.Nil(t, cutoff.cmd.ProcessState, "still running, ready for other work")
	final := s.job(id)
	require.Equal(t, "succeeded", final.State)
	require.Len(t, final.Outputs, len(j.Outputs), "the outputs are those of the finished attempt")
}

func TestWorkerSIGTERMReleases(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0")
	w := s.startWorker(t, "leaving", "--grace", "300ms")
	src := clip(t, dir, 30, "640x360")
	stdout, _, code := s.herd("submit", src, "--profile", "web-hls")
	require.Equal(t, 0, code)
	id := strings.TrimSpace(stdout)
	s.waitEncoding(id)
	stopCleanly(t, w.cmd, "herd worker")
	for _, task := range s.job(id).Tasks {
		if task.Kind == "encode" {
			require.Equal(t, "queued", task.State, "released at once, not left to expire")
			require.Equal(t, 0, task.Attempt)
		}
	}
	s.startWorker(t, "next")
	require.Equal(t, "succeeded", s.waitFinal(id).State)
}
