package main_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Split-and-stitch with the real binary: a 30 s clip in 8 s chunks (two
// 4 s segments each; the last chunk takes the 14 s rest) is 3 chunk tasks.

const chunkedClipSeconds = 30

// submitChunked submits a 30 s clip as a web-hls job in 8 s chunks.
func (s *server) submitChunked(t *testing.T, dir string) string {
	t.Helper()
	src := clip(t, dir, chunkedClipSeconds, "640x360")
	stdout, stderr, code := s.herd("submit", src, "--profile", "web-hls", "--chunk-seconds", "8")
	require.Equal(t, 0, code, stderr)
	return strings.TrimSpace(stdout)
}

// runningChunk waits until a chunk task runs and has made progress, and
// returns it.
func (s *server) runningChunk(id string, min float64) (chunk int, worker string) {
	s.t.Helper()
	s.waitFor(id, 2*time.Minute, func(j jobJSON) bool {
		for _, task := range j.Tasks {
			if task.Kind == "chunk" && task.State == "running" && task.Progress >= min {
				chunk, worker = task.Chunk, task.Worker
				return true
			}
		}
		return false
	})
	return chunk, worker
}

// killChunkWorker SIGKILLs the worker of a chunk that has made progress,
// and returns the chunk and the worker.
func (s *server) killChunkWorker(workers []*workerProc, id string, min float64) (chunk int, victim string) {
	s.t.Helper()
	chunk, victim = s.runningChunk(id, min)
	killNamed(s.t, workers, victim)
	return chunk, victim
}

// killNamed SIGKILLs the worker called name.
func killNamed(t *testing.T, workers []*workerProc, name string) {
	t.Helper()
	for _, w := range workers {
		if w.name == name {
			require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
		}
	}
}

func kinds(j jobJSON) []string {
	var ks []string
	for _, task := range j.Tasks {
		k := task.Kind
		if task.Chunk > 0 {
			k += " " + strconv.Itoa(task.Chunk)
		}
		ks = append(ks, k)
	}
	return ks
}

// checkStitched checks a chunked job's top rung as ffprobe reads it through
// its media playlist: every source frame once, keyframes exactly on the
// 4 s segment grid, timestamps that run on.
func checkStitched(t *testing.T, out string) {
	t.Helper()
	cmd := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags",
		"-of", "csv=p=0", filepath.Join(out, "media_0.m3u8"))
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	require.NoError(t, cmd.Run())
	var pts, keys []float64
	for line := range strings.Lines(stdout.String()) {
		f := strings.Split(strings.TrimSpace(line), ",")
		v, err := strconv.ParseFloat(f[0], 64)
		require.NoError(t, err, line)
		pts = append(pts, v)
		if strings.Contains(f[1], "K") {
			keys = append(keys, v)
		}
	}
	require.Len(t, pts, chunkedClipSeconds*30, "every frame of the 30 fps source once")
	slices.Sort(pts)
	for i := 1; i < len(pts); i++ {
		require.InDelta(t, 1.0/30, pts[i]-pts[i-1], 0.002, "frame %d follows frame %d", i, i-1)
	}
	var grid []float64
	for k := 0.0; k < chunkedClipSeconds; k += 4 {
		grid = append(grid, k)
	}
	require.InDeltaSlice(t, grid, keys, 0.002, "keyframes on the segment grid, across chunk boundaries too")
}

func TestChunkedJobSurvivesAKilledWorker(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A 10 s lease, not the other tests' 3 s: this test holds that only
	// the killed worker's chunk runs again, and on a loaded machine a
	// server can leave heartbeats unanswered for seconds (one run lost a
	// live worker's chunk that way). The killed chunk is taken over when
	// its lease runs out all the same.
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0", "--lease-ttl", "10s")
	workers := []*workerProc{s.startWorker(t, "w1"), s.startWorker(t, "w2"), s.startWorker(t, "w3")}
	id := s.submitChunked(t, dir)

	chunk, victim := s.killChunkWorker(workers, id, 0.05)
	j := s.waitFinal(id)
	require.Equal(t, "succeeded", j.State, j.Error)
	require.Equal(t, []string{"probe", "split", "chunk 1", "chunk 2", "chunk 3", "audio", "stitch", "thumbnails", "verify", "finalize"}, kinds(j))
	for _, task := range j.Tasks {
		switch {
		case task.Kind == "chunk" && task.Chunk == chunk:
			require.Equal(t, 2, task.Attempt, "the killed chunk ran again")
			require.NotEqual(t, victim, task.Worker, "elsewhere")
		case task.Kind == "chunk":
			require.Equal(t, 1, task.Attempt, "chunk %d was not encoded again", task.Chunk)
		}
		// Each chunk measures its own quality; verification, after the
		// stitch, decodes the outputs but not the source again.
		measures := slices.ContainsFunc(task.Commands, func(c []string) bool { return strings.Contains(strings.Join(c, " "), "ssim@q0") })
		require.Equal(t, task.Kind == "chunk", measures, "%s %d measures SSIM: %q", task.Kind, task.Chunk, task.Commands)
	}
	for _, o := range j.Outputs {
		if o.Kind == "hls" && o.Name != "audio" && o.Name != "master" {
			require.Greater(t, o.SSIM, 0.9, "%s: the chunks' combined SSIM", o.Name)
		}
	}
	checkStitched(t, filepath.Join(s.data, "blobs", "jobs", id, "out"))
	fmt.Fprintf(os.Stderr, "killed worker %s in chunk %d\n", victim, chunk)
}

func TestChunkedJobKeepsFinishedChunksAcrossAServerKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	s := startServer(t, data, "--local-workers", "1")
	id := s.submitChunked(t, dir)

	// One worker slot: chunks run one after another.
	before := s.waitFor(id, 2*time.Minute, func(j jobJSON) bool {
		done, running := 0, false
		for _, task := range j.Tasks {
			done += map[bool]int{true: 1}[task.Kind == "chunk" && task.State == "succeeded"]
			running = running || (task.Kind == "chunk" && task.State == "running" && task.Progress > 0.05)
		}
		return done >= 1 && running
	})
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGKILL))
	_ = s.cmd.Wait()

	s2 := startServer(t, data, "--local-workers", "2")
	j := s2.waitFinal(id)
	require.Equal(t, "succeeded", j.State, j.Error)
	finished := map[int]*time.Time{}
	for _, task := range before.Tasks {
		if task.Kind == "chunk" && task.State == "succeeded" {
			finished[task.Chunk] = task.FinishedAt
		}
	}
	for _, task := range j.Tasks {
		if at, ok := finished[task.Chunk]; ok && task.Kind == "chunk" {
			require.Equal(t, 1, task.Attempt, "chunk %d finished before the kill and was not encoded again", task.Chunk)
			require.True(t, at.Equal(*task.FinishedAt), "chunk %d kept its result", task.Chunk)
		}
	}
	checkStitched(t, filepath.Join(data, "blobs", "jobs", id, "out"))
}

func TestCancelStopsEveryChunk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0")
	workers := []*workerProc{s.startWorker(t, "c1"), s.startWorker(t, "c2")}
	id := s.submitChunked(t, dir)
	s.runningChunk(id, 0)
	// Cancel while a chunk's ffmpeg runs on one of the workers.
	require.Eventually(t, func() bool {
		for _, w := range workers {
			if len(children(t, w.cmd.Process.Pid, "ffmpeg")) > 0 {
				return s.job(id).State == "running"
			}
		}
		return false
	}, time.Minute, 20*time.Millisecond, "a chunk's ffmpeg runs")
	_, stderr, code := s.herd("cancel", id)
	require.Equal(t, 0, code, stderr)
	j := s.job(id)
	require.Equal(t, "canceled", j.State)
	for _, task := range j.Tasks {
		require.NotEqual(t, "running", task.State, "%s %d", task.Kind, task.Chunk)
	}
	// Each worker learns at its next heartbeat that its lease is gone and
	// stops its ffmpeg.
	require.Eventually(t, func() bool {
		for _, w := range workers {
			if len(children(t, w.cmd.Process.Pid, "ffmpeg")) > 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "no chunk's ffmpeg runs on after the cancel")
	for _, w := range workers {
		require.Nil(t, w.cmd.ProcessState, "worker %s stays up for other work", w.name)
	}
}

// children lists the pids of pid's child processes named comm.
func children(t *testing.T, pid int, comm string) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	require.NoError(t, err)
	var out []int
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(s[closing+1:])
		if len(f) < 2 || s[open+1:closing] != comm || f[1] != strconv.Itoa(pid) {
			continue
		}
		child, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		out = append(out, child)
	}
	return out
}

// An mp4-library job is split at the source's keyframes and stitched into
// one MP4 by stream copy: two remote workers share its chunks, a worker
// killed mid-chunk costs that chunk only, and the file has every frame
// once, the audio whole and its index in front (faststart).
func TestChunkedMP4Job(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0")
	workers := []*workerProc{s.startWorker(t, "w1"), s.startWorker(t, "w2"), s.startWorker(t, "w3")}
	// x264's default GOP puts the source's keyframes 250 frames (8.3 s)
	// apart: 10 s chunks start at 0 s and 16.7 s, the tail joins the last.
	src := clip(t, dir, 25, "320x180")
	stdout, stderr, code := s.herd("submit", src, "--profile", "mp4-library", "--chunk-seconds", "10")
	require.Equal(t, 0, code, stderr)
	id := strings.TrimSpace(stdout)

	chunk, _ := s.killChunkWorker(workers, id, 0.1)
	j := s.waitFinal(id)
	require.Equal(t, "succeeded", j.State, j.Error)
	require.Equal(t, []string{"probe", "split", "chunk 1", "chunk 2", "audio", "stitch", "thumbnails", "verify", "finalize"}, kinds(j))
	for _, task := range j.Tasks {
		if task.Kind == "chunk" && task.Chunk != chunk {
			require.Equal(t, 1, task.Attempt, "chunk %d was not encoded again", task.Chunk)
		}
	}
	outs, err := filepath.Glob(filepath.Join(s.data, "blobs", "jobs", id, "out", "*.mp4"))
	require.NoError(t, err)
	require.Len(t, outs, 1, "one file")
	probe := func(args ...string) string {
		out, err := exec.Command("ffprobe", append([]string{"-v", "error", "-of", "csv=p=0"}, append(args, outs[0])...)...).Output()
		require.NoError(t, err)
		return strings.TrimSpace(string(out))
	}
	require.Equal(t, "750", probe("-count_packets", "-select_streams", "v:0", "-show_entries", "stream=nb_read_packets"), "every frame of the 30 fps source once")
	var pts []float64
	for line := range strings.Lines(probe("-select_streams", "v:0", "-show_entries", "packet=pts_time")) {
		v, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
		require.NoError(t, err, line)
		pts = append(pts, v)
	}
	slices.Sort(pts)
	for i := 1; i < len(pts); i++ {
		require.InDelta(t, 1.0/30, pts[i]-pts[i-1], 0.002, "frame %d follows frame %d", i, i-1)
	}
	adur, err := strconv.ParseFloat(probe("-select_streams", "a:0", "-show_entries", "stream=duration"), 64)
	require.NoError(t, err)
	require.InDelta(t, 25, adur, 0.05, "the audio, encoded once, runs the whole length")
	head := make([]byte, 64)
	f, err := os.Open(outs[0])
	require.NoError(t, err)
	_, err = f.ReadAt(head, 0)
	require.NoError(t, f.Close())
	require.NoError(t, err)
	require.Contains(t, string(head), "moov", "faststart: the index before the media")
}
