package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/blob/s3test"
	"github.com/herdhq/herd/internal/store/pgtest"
	"github.com/herdhq/herd/internal/store/sqlstore"
	"github.com/herdhq/herd/internal/testenv"
)

// These tests run the real herd binary as a subprocess against real ffmpeg.

var herdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herd-e2e-")
	if err != nil {
		panic(err)
	}
	herdBin = filepath.Join(dir, "herd")
	out, err := exec.Command("go", "build", "-race", "-o", herdBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build herd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	pgtest.Stop()
	s3test.Stop()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// clip generates a test clip with video and stereo audio.
func clip(t *testing.T, dir string, seconds int, size string) string {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("clip-%ds-%s.mp4", seconds, size))
	require.NoError(t, testenv.Clip{Size: size, Rate: 30, Seconds: float64(seconds), Tone: 440, Stereo: true}.Make(p))
	return p
}

type server struct {
	t       *testing.T
	data    string
	url     string
	cmd     *exec.Cmd
	logs    *testenv.SyncBuffer // stderr
	out     *testenv.SyncBuffer // stdout
	outDone chan struct{}       // closed once all of stdout is in out
}

var urlRe = regexp.MustCompile(`running at (http://\S+)`)

func startServer(t *testing.T, data string, extra ...string) *server {
	t.Helper()
	return startServerEnv(t, data, nil, extra...)
}

func startServerEnv(t *testing.T, data string, env []string, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--data", data, "--addr", "127.0.0.1:0", "--log-format", "json", "--lease-ttl", "3s"}, extra...)
	cmd := exec.Command(herdBin, args...)
	cmd.Env = append(append(os.Environ(), "HERD_TOKEN=", "HERD_SERVER=", "HERD_ADMIN_TOKEN="), env...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	logs := &testenv.SyncBuffer{}
	cmd.Stderr = logs
	require.NoError(t, cmd.Start())
	s := &server{t: t, data: data, cmd: cmd, logs: logs, out: &testenv.SyncBuffer{}, outDone: make(chan struct{})}
	reap(t, "server", cmd, logs, 6000)
	found := make(chan string, 1)
	go func() {
		defer close(s.outDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(s.out, sc.Text())
			if m := urlRe.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case s.url = <-found:
	case <-time.After(30 * time.Second):
		t.Fatalf("herd serve did not start:\n%s", logs.String())
	}
	return s
}

// reap kills cmd when the test ends, if it still runs, and logs the tail
// of what it wrote (n bytes) when the test failed.
func reap(t *testing.T, what string, cmd *exec.Cmd, logs *testenv.SyncBuffer, n int) {
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("%s (pid %d) log:\n%s", what, cmd.Process.Pid, tail(logs.String(), n))
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// herd runs the CLI against s and returns stdout, stderr and the exit code.
func (s *server) herd(args ...string) (string, string, int) {
	s.t.Helper()
	return s.herdEnv([]string{"HERD_TOKEN=", "HERD_SERVER="}, append([]string{"--data", s.data}, args...)...)
}

// herdEnv runs the CLI against s with env added to the environment.
func (s *server) herdEnv(env []string, args ...string) (string, string, int) {
	s.t.Helper()
	cmd := exec.Command(herdBin, append([]string{"--server", s.url}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(s.t, err)
	}
	return out.String(), errb.String(), code
}

func (s *server) token() string {
	b, err := os.ReadFile(filepath.Join(s.data, "admin.token"))
	require.NoError(s.t, err)
	return strings.TrimSpace(string(b))
}

func (s *server) get(path string, hdr map[string]string) (*http.Response, []byte) {
	s.t.Helper()
	return s.request(http.MethodGet, path, nil, hdr)
}

// request sends a request with the admin key and hdr, and reads the answer.
func (s *server) request(method, path string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, body)
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+s.token())
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp, b
}

type jobJSON struct {
	ID             string  `json:"id"`
	State          string  `json:"state"`
	Profile        string  `json:"profile"`
	ProfileVersion int     `json:"profile_version"`
	Progress       float64 `json:"progress"`
	Attempts       int     `json:"attempts"`
	Error          string  `json:"error"`
	Source         struct {
		Name, SHA256, VideoCodec string
		Size                     int64
		Duration                 float64
		Width, Height            int
		AudioChannels            int `json:"audio_channels"`
		Subtitles                []struct{ ID string }
	} `json:"source"`
	Outputs []struct {
		Name, Kind, URL, Codec string
		Size                   int64
		Width, Height          int
		Bitrate                int64
		SSIM, PSNR             float64
		VMAF                   *struct {
			Mean, Low float64
			Frames    int
			Model     string
		}
		Loudness *struct {
			Integrated float64
			TruePeak   float64 `json:"true_peak"`
		}
	} `json:"outputs"`
	Deliveries []struct {
		Publisher, Type, Event, Detail string
		OK                             bool
	} `json:"deliveries"`
	Labels  map[string]string `json:"labels"`
	Publish []string          `json:"publish"`
	Tasks   []taskJSON        `json:"tasks"`
}

type taskJSON struct {
	Kind, State, Worker string
	Chunk               int
	Attempt             int
	Progress            float64
	FinishedAt          *time.Time `json:"finished_at"`
	Commands            [][]string
}

func (s *server) job(id string) jobJSON {
	s.t.Helper()
	return getJSON[jobJSON](s, "/api/v1/jobs/"+id)
}

// getJSON reads path with the admin key and decodes its answer, which must be 200.
func getJSON[T any](s *server, path string) T {
	s.t.Helper()
	resp, body := s.get(path, nil)
	require.Equal(s.t, http.StatusOK, resp.StatusCode, string(body))
	var v T
	require.NoError(s.t, json.Unmarshal(body, &v), string(body))
	return v
}

func (s *server) waitFor(id string, d time.Duration, cond func(jobJSON) bool) jobJSON {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		j := s.job(id)
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("job %s: condition not met within %s; last state %s progress %.2f error %q", id, d, j.State, j.Progress, j.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFinal waits until the job succeeded, failed or was canceled.
func (s *server) waitFinal(id string) jobJSON {
	s.t.Helper()
	return s.waitFor(id, 3*time.Minute, func(j jobJSON) bool {
		return j.State == "succeeded" || j.State == "failed" || j.State == "canceled"
	})
}

// waitEncoding waits until the job's encode task runs and has reported progress.
func (s *server) waitEncoding(id string) {
	s.t.Helper()
	s.waitFor(id, 2*time.Minute, func(j jobJSON) bool {
		for _, task := range j.Tasks {
			if task.Kind == "encode" && task.State == "running" && task.Progress > 0.02 {
				return true
			}
		}
		return false
	})
}

func TestSubmitWaitAndInspect(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"))
	src := clip(t, dir, 3, "320x180")

	stdout, stderr, code := s.herd("submit", src, "--profile", "mp4-library", "--wait")
	require.Equal(t, 0, code, stderr)
	id := strings.TrimSpace(stdout)
	require.Regexp(t, `^j[0-9a-f]+$`, id, "stdout holds only the job id")
	require.Contains(t, stderr, "succeeded")

	out, _, code := s.herd("job", id, "-o", "json")
	require.Equal(t, 0, code)
	var j jobJSON
	require.NoError(t, json.Unmarshal([]byte(out), &j))
	require.Equal(t, "succeeded", j.State)
	require.Equal(t, "mp4-library", j.Profile)
	require.Equal(t, 1, j.ProfileVersion)
	require.InDelta(t, 1.0, j.Progress, 1e-9)
	require.Equal(t, 320, j.Source.Width)
	require.InDelta(t, 3.0, j.Source.Duration, 0.1)
	require.Equal(t, 2, j.Source.AudioChannels)
	var mp4URL string
	for _, o := range j.Outputs {
		if o.Kind == "mp4" {
			mp4URL = o.URL
			require.Equal(t, "h264", o.Codec)
			require.Greater(t, o.SSIM, 0.9)
			require.Greater(t, o.PSNR, 30.0)
		}
	}
	require.NotEmpty(t, mp4URL)
	require.GreaterOrEqual(t, len(j.Tasks), 4)
	for _, task := range j.Tasks {
		require.Equal(t, "succeeded", task.State, task.Kind)
		if task.Kind == "encode" {
			require.NotEmpty(t, task.Commands)
			require.Contains(t, task.Commands[0], "-progress")
		}
	}

	// Ranged download with the right content type.
	resp, body := s.get(mp4URL, map[string]string{"Range": "bytes=0-99"})
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.Equal(t, "video/mp4", resp.Header.Get("Content-Type"))
	require.Len(t, body, 100)

	// The same file and profile again is the same job.
	stdout, stderr, code = s.herd("submit", src, "--profile", "mp4-library")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, id, strings.TrimSpace(stdout))

	// Metrics and health.
	resp, body = s.get("/metrics", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), `herd_jobs{state="succeeded"} 1`)
	require.Contains(t, string(body), `herd_task_duration_seconds_count{kind="encode",outcome="succeeded"} 1`)
	require.Contains(t, string(body), "herd_encode_speed_ratio_count 1")
	require.Contains(t, string(body), `herd_http_request_duration_seconds_count{code="200",method="GET",route="GET /api/v1/jobs/{id}"}`)
	resp, body = s.get("/readyz", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.JSONEq(t, `{"ready": true, "checks": {"database": "ok", "storage": "ok", "ffmpeg": "ok"}}`, string(body))

	// Table, yaml and list views work.
	out, _, code = s.herd("jobs")
	require.Equal(t, 0, code)
	require.Contains(t, out, id)
	out, _, code = s.herd("job", id, "-o", "yaml")
	require.Equal(t, 0, code)
	require.Contains(t, out, "state: succeeded")
	_, stderr, code = s.herd("cancel", id)
	require.NotEqual(t, 0, code)
	require.Contains(t, stderr, "already succeeded")
}

func TestSubmitRejectedInputFailsClearly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"))
	bad := filepath.Join(dir, "notes.mp4")
	require.NoError(t, os.WriteFile(bad, []byte("this is not a video\n"), 0o644))
	stdout, stderr, code := s.herd("submit", bad, "--profile", "web-hls", "--wait")
	require.Equal(t, 1, code)
	id := strings.TrimSpace(stdout)
	j := s.job(id)
	require.Equal(t, "failed", j.State)
	require.Equal(t, 1, j.Attempts, "a permanent error does not burn retries")
	require.NotContains(t, j.Error, dir, "no server paths in user errors")
	require.NotContains(t, j.Error, s.data)
	require.Contains(t, stderr, j.Error)
}

// A subtitle file given with a source that cannot be packaged is refused
// at submit, before the video is sent, saying what is wrong and where;
// nothing is queued.
func TestSubtitleFileRefusedAtSubmit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0")
	src := filepath.Join(dir, "movie.mkv")
	require.NoError(t, os.WriteFile(src, []byte("never read"), 0o644))
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	good := write("good.srt", "1\n00:00:01,000 --> 00:00:02,000\nBon.\n")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--subtitle", "fr=" + write("timing.srt", "1\n00:00:01,000 --> 00:00:02,000\nUn.\n\n2\n00:00:04,000 --> 00:00:03,500\nDeux.\n")},
			"timing.srt: the subtitle file was refused: line 6: the cue ends (0:00:03.500) before it starts (0:00:04.000)"},
		{[]string{"--subtitle", "fr=" + write("stamp.srt", "1\n00:00:01,000 --> 00:00:0x,000\nUn.\n")}, "line 2: parsing srt duration"},
		{[]string{"--subtitle", "fr=" + write("notes.txt", "Some notes about the film.\n")}, "not a subtitle format herd reads: send SRT, WebVTT, ASS/SSA or TTML"},
		{[]string{"--subtitle", "fr=" + write("latin1.srt", "1\n00:00:01,000 --> 00:00:02,000\nCaf\xe9\n")}, "line 3: not UTF-8 text (save the file as UTF-8"},
		{[]string{"--subtitle", good}, "write LANGUAGE=FILE"},
		{[]string{"--subtitle", "klingon!=" + good}, `"klingon!" is not a language tag`},
		{[]string{"--subtitle", "fr=" + good, "--profile", "mp4-library"}, "profile mp4-library keeps only the source's own subtitle streams"},
	} {
		_, stderr, code := s.herd(append([]string{"submit", src}, tc.args...)...)
		require.NotEqual(t, 0, code, tc.args)
		require.Contains(t, stderr, tc.msg, tc.args)
	}
	// The API names what to send when the id is not a stored file's.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	require.NoError(t, mw.WriteField("profile", "web-hls"))
	require.NoError(t, mw.WriteField("subtitles", "fr="+strings.Repeat("0", 64)))
	fw, err := mw.CreateFormFile("file", "movie.mkv")
	require.NoError(t, err)
	_, _ = fw.Write([]byte("never read"))
	require.NoError(t, mw.Close())
	resp, b := s.request(http.MethodPost, "/api/v1/jobs", &body, map[string]string{"Content-Type": mw.FormDataContentType()})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, string(b), "POST it to /api/v1/subtitles first")
	out, _, code := s.herd("jobs", "-o", "json")
	require.Equal(t, 0, code)
	require.NotContains(t, out, "movie.mkv", "nothing queued")
}

func TestRestartAfterSIGKILLMidEncode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	s := startServer(t, data)
	src := clip(t, dir, 30, "640x360")
	stdout, stderr, code := s.herd("submit", src, "--profile", "web-hls")
	require.Equal(t, 0, code, stderr)
	id := strings.TrimSpace(stdout)

	s.waitEncoding(id)
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGKILL))
	_ = s.cmd.Wait()
	out := filepath.Join(data, "blobs", "jobs", id, "out")
	require.NoDirExists(t, out, "nothing visible before verification")

	s2 := startServer(t, data)
	j := s2.waitFinal(id)
	require.Equal(t, "succeeded", j.State, j.Error)
	for _, task := range j.Tasks {
		if task.Kind == "encode" {
			require.Equal(t, 2, task.Attempt, "the killed attempt counts, the second one finished")
		} else {
			require.LessOrEqual(t, task.Attempt, 2, task.Kind) // thumbnails may have been running too
		}
	}
	require.DirExists(t, out)
	require.FileExists(t, filepath.Join(out, "master.m3u8"))
	require.NoDirExists(t, filepath.Join(data, "blobs", "jobs", id, "stage"))
	tmp, err := os.ReadDir(filepath.Join(data, "blobs", ".tmp"))
	require.NoError(t, err)
	require.Empty(t, tmp, "no scratch left behind")

	// Exactly one job exists.
	resp, body := s2.get("/api/v1/jobs", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var list struct{ Jobs []jobJSON }
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Jobs, 1)
}

func TestSIGTERMReleasesAfterGrace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	s := startServer(t, data, "--grace", "500ms")
	src := clip(t, dir, 30, "640x360")
	stdout, _, code := s.herd("submit", src, "--profile", "web-hls")
	require.Equal(t, 0, code)
	id := strings.TrimSpace(stdout)
	s.waitEncoding(id)
	stopCleanly(t, s.cmd, "herd serve")
	require.Contains(t, s.logs.String(), "released the task at shutdown")

	s2 := startServer(t, data, "--local-workers", "0")
	j := s2.job(id)
	for _, task := range j.Tasks {
		if task.Kind == "encode" {
			require.Equal(t, "queued", task.State, "released, not failed")
			require.Equal(t, 0, task.Attempt, "a release burns no attempt")
		}
	}
}

func TestAdminTokenFromEnvironment(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	const key = "automation-key-0123456789abcdef"
	s := startServerEnv(t, data, []string{"HERD_ADMIN_TOKEN=" + key})
	require.NoFileExists(t, filepath.Join(data, "admin.token"), "no key is generated when one is given")
	req, err := http.NewRequest(http.MethodGet, s.url+"/api/v1/profiles", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	cmd := exec.Command(herdBin, "--server", s.url, "profiles")
	cmd.Env = append(os.Environ(), "HERD_TOKEN="+key, "HERD_DATA="+t.TempDir())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "web-hls")
	require.NotContains(t, s.logs.String(), key, "keys never appear in logs")
}

func TestServeOnPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	dir := t.TempDir()
	out, err := exec.Command(herdBin, "migrate", "--database", dsn).CombinedOutput()
	require.NoError(t, err, string(out))
	ms, err := sqlstore.Migrations("postgres")
	require.NoError(t, err)
	require.Contains(t, string(out), fmt.Sprintf("database schema at version %d", len(ms)))

	s := startServer(t, filepath.Join(dir, "data"), "--database", dsn)
	src := clip(t, dir, 2, "320x180")
	stdout, stderr, code := s.herd("submit", src, "--profile", "mp4-library", "--wait")
	require.Equal(t, 0, code, stderr)
	j := s.job(strings.TrimSpace(stdout))
	require.Equal(t, "succeeded", j.State)
	require.NoFileExists(t, filepath.Join(dir, "data", "herd.db"), "the state lives in PostgreSQL")
}

// stopCleanly sends SIGTERM and requires a clean exit within a minute.
func stopCleanly(t *testing.T, cmd *exec.Cmd, what string) {
	t.Helper()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "%s: clean exit after SIGTERM", what)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit after SIGTERM", what)
	}
}
