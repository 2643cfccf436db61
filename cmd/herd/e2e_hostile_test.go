package main_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

// TestHostileInputs feeds the real server what the world will: broken,
// empty and fake files, playlists that name files outside the job, a frame
// too big to decode safely, file names that try to be paths or patterns,
// and uploads over the size limit. Each ends in a clear permanent error or
// an early refusal; nothing outside the job is read (a FIFO stands guard:
// opening it for reading is noticed); nothing appears in an output
// location; and herd keeps serving.
func TestHostileInputs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const maxUpload = 8 << 20
	// A long lease: on a loaded machine a late heartbeat must not turn a
	// refusal into a retry.
	s := startServer(t, data, "--max-upload", fmt.Sprint(maxUpload), "--local-workers", "2", "--lease-ttl", "60s")

	// The canary: a FIFO outside the data folder. While nobody reads it, a
	// non-blocking open for writing fails; once anything opens it to read,
	// such an open succeeds. A reader that opens it the usual (blocking) way
	// waits in open() until the guard's next try, so it cannot slip by; one
	// that opens it non-blocking and closes it within 5 ms could.
	canary := filepath.Join(dir, "canary.ts")
	require.NoError(t, syscall.Mkfifo(canary, 0o644))
	var canaryRead atomic.Bool
	stopGuard := make(chan struct{})
	guarded := make(chan struct{})
	go func() {
		defer close(guarded)
		for {
			if fd, err := syscall.Open(canary, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				canaryRead.Store(true)
				_ = syscall.Close(fd)
			}
			select {
			case <-stopGuard:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()

	post := func(name string, content []byte) (int, []byte) {
		t.Helper()
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		require.NoError(t, mw.WriteField("profile", "mp4-library"))
		w, err := mw.CreateFormFile("file", name)
		require.NoError(t, err)
		_, _ = w.Write(content)
		require.NoError(t, mw.Close())
		req, err := http.NewRequest("POST", s.url+"/api/v1/jobs", &buf)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+s.token())
		req.Header.Set("Content-Type", mw.FormDataContentType())
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	readFile := func(p string) []byte {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		return b
	}
	ffmpeg := func(args ...string) { require.NoError(t, testenv.FFmpeg(args...)) }

	// A good job first: its stored source is a file a playlist may try to reach.
	listing := func() []string {
		var names []string
		require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if rel, _ := filepath.Rel(dir, p); rel == "data" {
				return filepath.SkipDir
			}
			names = append(names, p)
			return nil
		}))
		return names
	}
	status, body := post("good.mp4", readFile(clip(t, dir, 2, "160x90")))
	require.Equal(t, http.StatusCreated, status, string(body))
	var good jobJSON
	require.NoError(t, json.Unmarshal(body, &good))
	require.Equal(t, "succeeded", s.waitFinal(good.ID).State)
	stored := filepath.Join(data, "blobs", "sources", s.job(good.ID).Source.SHA256)
	require.FileExists(t, stored)

	// Every input is made before the first hostile one is sent.
	for i := range 5 {
		clip(t, dir, 1+i%2, fmt.Sprintf("%dx%d", 128+16*i, 72+8*i))
	}
	afterClip := clip(t, dir, 2, "96x54")
	noise := make([]byte, 64<<10)
	_, _ = rand.Read(noise)
	noise[0] = 0xff
	whole := readFile(clip(t, dir, 3, "160x90")) // moov at the end: half of it has none
	tone := filepath.Join(dir, "tone.m4a")
	ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", tone)
	huge := filepath.Join(dir, "huge.mp4")
	ffmpeg("-f", "lavfi", "-i", "color=size=8192x8192:d=0.04", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", huge)
	inputs := listing()
	hls := func(target string) []byte {
		return []byte("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n" + target + "\n#EXT-X-ENDLIST\n")
	}
	hostile := []struct{ name, why string }{
		{"empty.mp4", ""}, {"noise.mp4", ""}, {"truncated.mp4", ""}, {"notes.mp4", ""}, {"tone.m4a", ""},
		{"passwd.mp4", ""}, {"other-job.mp4", ""}, {"canary.mp4", ""}, {"list.mp4", ""}, {"huge.mp4", ""},
	}
	contents := map[string][]byte{
		"empty.mp4":     nil,
		"noise.mp4":     noise,
		"truncated.mp4": whole[:len(whole)/2],
		"notes.mp4":     []byte("These are my holiday notes, not a video.\n"),
		"tone.m4a":      readFile(tone),
		"passwd.mp4":    hls("file:///etc/passwd"),
		"other-job.mp4": hls(stored),
		"canary.mp4":    hls(canary),
		"list.mp4":      []byte("ffconcat version 1.0\nfile '" + canary + "'\nfile '" + stored + "'\n"),
		"huge.mp4":      readFile(huge),
	}
	for i := range hostile {
		h := &hostile[i]
		status, body := post(h.name, contents[h.name])
		switch {
		case status >= 400:
			// Refused at the door: a JSON error that says what is wrong.
			require.Less(t, status, 500, "%s: %s", h.name, body)
			var e struct {
				Error struct{ Code, Message string }
			}
			require.NoError(t, json.Unmarshal(body, &e), "%s: %s", h.name, body)
			require.NotEmpty(t, e.Error.Message, h.name)
			h.why = "refused: " + e.Error.Message
		default:
			require.Equal(t, http.StatusCreated, status, "%s: %s", h.name, body)
			var j jobJSON
			require.NoError(t, json.Unmarshal(body, &j))
			j = s.waitFinal(j.ID)
			require.Equal(t, "failed", j.State, h.name)
			require.Equal(t, 1, j.Attempts, "%s: a refusal is permanent and burns no retries", h.name)
			require.NotEmpty(t, j.Error, h.name)
			require.NotContains(t, j.Error, dir, "%s: no server paths in errors", h.name)
			require.Empty(t, j.Outputs, h.name)
			require.NoDirExists(t, filepath.Join(data, "blobs", "jobs", j.ID, "out"), "%s: nothing in an output location", h.name)
			h.why = "failed: " + j.Error
		}
		t.Logf("%-14s %s", h.name, h.why)
	}
	wantWhy := map[string]string{
		"empty.mp4": "empty", "noise.mp4": "not a video", "truncated.mp4": "corrupt", "notes.mp4": "text",
		"tone.m4a": "no video", "passwd.mp4": "playlist", "other-job.mp4": "playlist", "canary.mp4": "playlist",
		"list.mp4": "list of other files", "huge.mp4": "8192x8192",
	}
	for _, h := range hostile {
		require.Contains(t, strings.ToLower(h.why), wantWhy[h.name], h.name)
	}

	// Names that try to be paths, patterns or trouble: the video is fine, so
	// the job succeeds; the name is only a label, cleaned.
	names := []string{"../../escape.mp4", "nul\x00byte.mp4", strings.Repeat("a", 300) + ".mp4", "Ünïcødé 🎬 clip.mp4", "frame%03d.jpg"}
	for i, name := range names {
		src := clip(t, dir, 1+i%2, fmt.Sprintf("%dx%d", 128+16*i, 72+8*i))
		status, body := post(name, readFile(src))
		var j jobJSON
		if strings.Contains(name, "\x00") {
			// A NUL cannot be in a form's header: refused at the door...
			require.Equal(t, http.StatusBadRequest, status, "%q: %s", name, body)
			require.Contains(t, string(body), "malformed multipart body")
			// ...but tus carries names in base64, so one can arrive that way.
			j.ID = tusUpload(t, s, name, readFile(src))
		} else {
			require.Equal(t, http.StatusCreated, status, "%q: %s", name, body)
			require.NoError(t, json.Unmarshal(body, &j))
		}
		j = s.waitFinal(j.ID)
		require.Equal(t, "succeeded", j.State, "%q: %s", name, j.Error)
		n := j.Source.Name
		require.True(t, utf8.ValidString(n) && len(n) <= 200 && n != "", "%q became %q", name, n)
		require.False(t, strings.ContainsAny(n, "/\\\x00"), "%q became %q", name, n)
		require.InDelta(t, float64(1+i%2), j.Source.Duration, 0.1, "%q: the file itself was read, not what its name says", name)
		if name == "frame%03d.jpg" {
			require.Equal(t, name, n, "a pattern is kept as a plain name")
		}
	}
	require.NoFileExists(t, filepath.Join(dir, "escape.mp4"))
	require.NoFileExists(t, filepath.Join(data, "escape.mp4"))

	// Over the size limit: refused before the disk fills, whether the size
	// is declared up front, only found while reading, or announced to tus.
	storedBytes := func() int64 {
		return diskUse(t, filepath.Join(data, "blobs")) + diskUse(t, filepath.Join(data, "uploads"))
	}
	before := storedBytes()
	sent := &countingZeros{n: 64 << 20}
	req, err := http.NewRequest("POST", s.url+"/api/v1/jobs?profile=mp4-library", sent)
	require.NoError(t, err)
	req.ContentLength = sent.n
	req.Header.Set("Authorization", "Bearer "+s.token())
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		_ = resp.Body.Close()
	} // else the server hung up mid-body, which is also a refusal
	require.Less(t, sent.read.Load(), int64(32<<20), "a declared 64 MiB upload over an 8 MiB limit was read far past the limit")

	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	require.NoError(t, mw.WriteField("profile", "mp4-library"))
	fw, err := mw.CreateFormFile("file", "big.mp4")
	require.NoError(t, err)
	_, _ = fw.Write(whole)
	_, _ = fw.Write(make([]byte, 3*maxUpload))
	require.NoError(t, mw.Close())
	req, err = http.NewRequest("POST", s.url+"/api/v1/jobs", io.MultiReader(&mp)) // no Content-Length: chunked
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.token())
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Logf("chunked upload over the limit: the server hung up (%v)", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, string(b))
		require.Contains(t, string(b), "limit")
	}

	req, err = http.NewRequest("POST", s.url+"/api/v1/uploads", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.token())
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", fmt.Sprint(64<<20))
	req.Header.Set("Upload-Metadata", "filename YmlnLm1wNA==,profile bXA0LWxpYnJhcnk=")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	require.Less(t, storedBytes()-before, int64(2<<20), "refused uploads left bytes on the disk")

	// herd keeps serving, and nothing read the canary.
	resp2, body := s.get("/readyz", nil)
	require.Equal(t, http.StatusOK, resp2.StatusCode, string(body))
	status, body = post("after.mp4", readFile(afterClip))
	require.Equal(t, http.StatusCreated, status, string(body))
	var after jobJSON
	require.NoError(t, json.Unmarshal(body, &after))
	require.Equal(t, "succeeded", s.waitFinal(after.ID).State)
	close(stopGuard)
	<-guarded
	require.False(t, canaryRead.Load(), "something opened the canary FIFO named by a playlist")
	require.NotContains(t, s.logs.String(), `"level":"ERROR"`, "hostile input is the user's problem, not an internal error")
	// Nothing was written outside the data folder.
	require.Equal(t, inputs, listing(), "files appeared next to the data folder")
}

// tusUpload uploads content in one PATCH through the tus route and returns the job it made.
func tusUpload(t *testing.T, s *server, name string, content []byte) string {
	t.Helper()
	do := func(method, url string, hdr map[string]string, body []byte) *http.Response {
		return testenv.Tus(t, s.token(), method, url, hdr, body)
	}
	b64 := func(v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) }
	resp := do("POST", s.url+"/api/v1/uploads", map[string]string{"Upload-Length": fmt.Sprint(len(content)),
		"Upload-Metadata": "filename " + b64(name) + ",profile " + b64("mp4-library")}, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	loc, err := resp.Location()
	require.NoError(t, err)
	resp = do("PATCH", loc.String(), map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, content)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	id := resp.Header.Get("Herd-Job-Id")
	require.NotEmpty(t, id, "the last PATCH names the job")
	return id
}

// countingZeros is an n-byte body of zeros that counts what was read.
type countingZeros struct {
	n    int64
	read atomic.Int64
}

func (c *countingZeros) Read(p []byte) (int, error) {
	left := c.n - c.read.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), left)]
	clear(p)
	c.read.Add(int64(len(p)))
	return len(p), nil
}

// diskUse is the bytes of the regular files under dir.
func diskUse(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // removed while walking
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	}))
	return n
}
