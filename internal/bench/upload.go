package bench

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/herdhq/herd/internal/client"
)

// tusChunk is the size of each PATCH, as the web UI sends them.
const tusChunk = 8 << 20

// upload measures a big upload through the API (one multipart POST, as
// herd submit sends it) and through tus (8 MiB PATCHes, as the web UI sends
// them) against dd writing the same bytes to the same disk, and the
// server's peak resident memory while it receives them.
func upload(ctx context.Context, e *env, s *Section) error {
	size := int64(2 << 30)
	runs := 3
	if e.Quick {
		size, runs = 32<<20, 1
	}
	work, err := e.dir("upload")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "source.bin")
	if err := randomFile(src, size); err != nil {
		return err
	}
	type result struct {
		wall []time.Duration
		rss  []int64
	}
	res := map[string]*result{"dd": {}, "api": {}, "tus": {}}
	for i := range runs {
		// dd: the same bytes, same disk, flushed before it ends (herd syncs
		// an upload before it answers).
		syscall.Sync()
		out := filepath.Join(work, "dd.bin")
		m, err := runCmd(ctx, filepath.Join(work, "dd.log"), "dd", "if="+src, "of="+out, "bs=1M", "conv=fsync")
		if err != nil {
			return err
		}
		_ = os.Remove(out)
		res["dd"].wall = append(res["dd"].wall, m.Wall)
		e.logf("upload: dd run %d: %s", i+1, secs(m.Wall))

		for _, how := range []string{"api", "tus"} {
			data := filepath.Join(work, how)
			h, err := e.startHerd(ctx, data, nil, "--local-workers", "0")
			if err != nil {
				return err
			}
			syscall.Sync()
			t0 := time.Now()
			if how == "api" {
				_, _, err = h.Client.Submit(ctx, src, "mp4-library", client.SubmitOptions{}, nil)
			} else {
				err = tusUpload(ctx, h, src, size)
			}
			took := time.Since(t0)
			rss, rerr := peakRSS(h.pid())
			if serr := h.stop(); err == nil {
				err = serr
			}
			if err == nil {
				err = rerr
			}
			if err != nil {
				return fmt.Errorf("%s upload: %w", how, err)
			}
			_ = os.RemoveAll(data)
			res[how].wall = append(res[how].wall, took)
			res[how].rss = append(res[how].rss, rss)
			e.logf("upload: %s run %d: %s, peak RSS %s", how, i+1, secs(took), mib(rss))
		}
	}
	ddw := median(res["dd"].wall)
	rate := func(d time.Duration) string { return fmt.Sprintf("%.0f MB/s", float64(size)/1e6/d.Seconds()) }
	t := s.table(fmt.Sprintf("%s of random bytes, median of %d runs", mib(size), runs), "how", "wall", "throughput", "throughput ÷ dd", "server peak RSS (max of runs)")
	t.add("dd bs=1M conv=fsync", secs(ddw), rate(ddw), "1.00 ×", "–")
	for _, how := range []struct{ key, name string }{{"api", "API: POST /api/v1/jobs (multipart)"}, {"tus", "tus: POST + 8 MiB PATCHes"}} {
		r := res[how.key]
		w := median(r.wall)
		peak := r.rss[0]
		for _, v := range r.rss {
			peak = max(peak, v)
		}
		t.add(how.name, secs(w), rate(w), ratio(ddw.Seconds(), w.Seconds()), mib(peak))
		s.target(fmt.Sprintf("%s ≥ 0.8 × dd's throughput", how.key), ratio(ddw.Seconds(), w.Seconds()), ddw.Seconds() >= 0.8*w.Seconds())
		s.target(fmt.Sprintf("server peak RSS < 100 MB during the %s upload", how.key), mib(peak), peak < 100e6)
	}
	s.About = append(s.About,
		"A file of random bytes (incompressible) on the same disk as the server's data folder; the page cache holds it for every reader alike. Each upload goes to a fresh `herd serve --local-workers 0` (the job it makes is queued, not run, so nothing else competes), over loopback HTTP, and ends when the server has answered: the bytes are stored, fsynced, hashed and the job is created.",
		"dd writes the same bytes to the same disk and flushes them (conv=fsync). Peak RSS is the server's VmHWM after the upload (it includes the server's start).")
	s.Ran = append(s.Ran, "dd if=FILE of=DATA/dd.bin bs=1M conv=fsync", "herd submit FILE (multipart POST /api/v1/jobs)", "tus: POST /api/v1/uploads (Upload-Length, Upload-Metadata), then PATCH with Upload-Offset, 8 MiB each")
	return nil
}

// randomFile writes n random bytes.
func randomFile(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var seed [32]byte
	r := rand.NewChaCha8(seed)
	if _, err := io.CopyN(f, r, n); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// tusUpload sends a file through tus in tusChunk PATCHes and checks that
// the last one made a job.
func tusUpload(ctx context.Context, h *herdServer, path string, size int64) error {
	b64 := func(v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) }
	do := func(method, url string, hdr map[string]string, body io.Reader, n int64) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, body)
		if err != nil {
			return nil, err
		}
		req.ContentLength = n
		req.Header.Set("Authorization", "Bearer "+h.Token)
		req.Header.Set("Tus-Resumable", "1.0.0")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp, nil
	}
	resp, err := do(http.MethodPost, h.URL+"/api/v1/uploads", map[string]string{
		"Upload-Length":   strconv.FormatInt(size, 10),
		"Upload-Metadata": "filename " + b64(filepath.Base(path)) + ",profile " + b64("mp4-library"),
	}, nil, 0)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("tus create: %s", resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for off := int64(0); off < size; off += tusChunk {
		n := min(tusChunk, size-off)
		resp, err := do(http.MethodPatch, loc.String(), map[string]string{
			"Upload-Offset": strconv.FormatInt(off, 10),
			"Content-Type":  "application/offset+octet-stream",
		}, io.NewSectionReader(f, off, n), n)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("tus PATCH at %d: %s", off, resp.Status)
		}
		if off+n == size && resp.Header.Get("Herd-Job-Id") == "" {
			return fmt.Errorf("the last PATCH made no job")
		}
	}
	return nil
}
