package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/client"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
)

// herdServer is a `herd serve` process the bench started.
type herdServer struct {
	cmd    *exec.Cmd
	URL    string
	Token  string
	Client *client.Client
	log    string
	done   chan struct{}
}

var runningAt = regexp.MustCompile(`running at (http://\S+)`)

// startHerd starts herd serve on a free port with data in data; env is
// added to its environment.
func (e *env) startHerd(ctx context.Context, data string, env []string, args ...string) (*herdServer, error) {
	h := &herdServer{Token: apikey.New("herd_bench_"), log: filepath.Join(data, "serve.log"), done: make(chan struct{})}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	args = append([]string{"serve", "--data", data, "--addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	h.cmd = exec.Command(e.Herd, args...)
	h.cmd.Env = append(append(os.Environ(), "HERD_ADMIN_TOKEN="+h.Token, "HERD_TOKEN=", "HERD_SERVER="), env...)
	m, done, err := startAwait(ctx, h.cmd, h.log, runningAt, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("herd serve: %w", err)
	}
	h.URL, h.done = m[1], done
	h.Client = client.New(h.URL, h.Token)
	return h, nil
}

// startAwait starts cmd with its stderr in the file logPath and waits until
// a line of its stdout matches ready, whose submatches it returns; done is
// closed when stdout ends. A process that exits first, or takes longer than
// within, is killed, and the error carries its log's tail.
func startAwait(ctx context.Context, cmd *exec.Cmd, logPath string, ready *regexp.Regexp, within time.Duration) ([]string, chan struct{}, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done, found := make(chan struct{}), make(chan []string, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m:
				default:
				}
			}
		}
	}()
	fail := func(err error) ([]string, chan struct{}, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, nil, err
	}
	select {
	case m := <-found:
		return m, done, nil
	case <-done:
		return fail(fmt.Errorf("exited at start:\n%s", tailFile(logPath, 2000)))
	case <-time.After(within):
		return fail(fmt.Errorf("did not start in %s:\n%s", within, tailFile(logPath, 2000)))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

func (h *herdServer) pid() int { return h.cmd.Process.Pid }

// stop ends the server with SIGTERM (SIGKILL after a minute).
func (h *herdServer) stop() error {
	if h == nil || h.cmd.ProcessState != nil {
		return nil
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	t := time.AfterFunc(time.Minute, func() { _ = h.cmd.Process.Kill() })
	defer t.Stop()
	<-h.done
	err := h.cmd.Wait()
	if err != nil {
		return fmt.Errorf("herd serve: %w\n%s", err, tailFile(h.log, 2000))
	}
	return nil
}

// submitAndWait uploads file with profile and polls until the job ends.
// It returns the job and the time from the start of the upload to the
// poll that saw it succeed.
func (h *herdServer) submitAndWait(ctx context.Context, file, profile string) (jobview.JobView, time.Duration, error) {
	t0 := time.Now()
	j, _, err := h.Client.Submit(ctx, file, profile, client.SubmitOptions{}, nil)
	if err != nil {
		return j, 0, fmt.Errorf("submit: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	j, err = h.Client.Wait(ctx, j.ID, 10*time.Millisecond, nil)
	took := time.Since(t0)
	if err != nil {
		return j, took, fmt.Errorf("wait for job %s: %w", j.ID, err)
	}
	if j.State != job.Succeeded {
		return j, took, fmt.Errorf("job %s %s: %s\n%s", j.ID, j.State, j.Error, tailFile(h.log, 2000))
	}
	return j, took, nil
}

// herdJob starts herd on a fresh data folder and runs one job of profile
// on src to success: its wall time (submitAndWait) and the CPU time of the
// server and the tools it ran. The server is left running, to fetch the
// outputs from; the caller stops it.
func (e *env) herdJob(ctx context.Context, data, src, profile string) (*herdServer, jobview.JobView, measured, error) {
	h, err := e.startHerd(ctx, data, nil)
	if err != nil {
		return nil, jobview.JobView{}, measured{}, err
	}
	cpu0, err := procCPU(h.pid())
	if err != nil {
		_ = h.stop()
		return nil, jobview.JobView{}, measured{}, err
	}
	j, took, err := h.submitAndWait(ctx, src, profile)
	if err != nil {
		_ = h.stop()
		return nil, j, measured{}, err
	}
	cpu1, err := procCPU(h.pid())
	if err != nil {
		_ = h.stop()
		return nil, j, measured{}, err
	}
	return h, j, measured{Wall: took, CPU: cpu1 - cpu0}, nil
}

// output finds a job's output by name.
func output(j jobview.JobView, name string) (string, error) {
	for _, o := range j.Outputs {
		if o.Name == name {
			return o.URL, nil
		}
	}
	return "", errors.New("job " + j.ID + " has no output " + name)
}

// download saves one of a job's outputs (an /api/v1 URL path) to a file.
func (h *herdServer) download(ctx context.Context, urlPath, to string) error {
	f, err := os.Create(to)
	if err != nil {
		return err
	}
	rc, err := h.opener(ctx)(urlPath)
	if err == nil {
		_, err = io.Copy(f, rc)
		_ = rc.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// taskTime sums how long a job's tasks of a kind ran, by their own clocks.
func taskTime(j jobview.JobView, kind job.Kind) time.Duration {
	var d time.Duration
	for _, t := range j.Tasks {
		if t.Kind == kind && t.StartedAt != nil && t.FinishedAt != nil {
			d += t.FinishedAt.Sub(*t.StartedAt)
		}
	}
	return d
}

// opener reads a job's outputs over HTTP; names are URL paths.
func (h *herdServer) opener(ctx context.Context) opener {
	return func(name string) (io.ReadCloser, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+name, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+h.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			_ = resp.Body.Close()
			return nil, fmt.Errorf("GET %s: %s", name, resp.Status)
		}
		return resp.Body, nil
	}
}
