// Package e2e_test runs herd's Kubernetes manifests on a real node: a
// control plane, containerd and a kubelet started by hack/kube/node.sh on
// this machine. `make e2e-kube` runs it; `make test` does too where it runs
// as root on Linux (HERD_KUBE_NODE=1).
package e2e_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/client"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/kube/kubetest"
)

const (
	serverURL = "http://127.0.0.1:18080"          // deploy/e2e/testdata/jobs: HERD_ADDR
	adminKey  = "herd-e2e-admin-key-not-a-secret" // and its herd-admin Secret
	taskUser  = 10001                             // the image's user, owner of the data volume
	selector  = "app.kubernetes.io/name=herd,app.kubernetes.io/component=task"
)

type node struct {
	t        *testing.T
	root     string // the repository
	dir      string // HERD_KUBE_NODE_DIR
	kubectl  string
	started  time.Time
	timeline []string
}

func (n *node) run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = n.root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(n.dir, "admin.kubeconfig"), "HERD_KUBE_NODE_DIR="+n.dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (n *node) must(name string, args ...string) string {
	n.t.Helper()
	out, err := n.run(name, args...)
	require.NoError(n.t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return out
}

func (n *node) k(args ...string) string {
	n.t.Helper()
	return n.must(n.kubectl, args...)
}

// mark records how long the run took to reach a step.
func (n *node) mark(step string) {
	line := fmt.Sprintf("%6.1fs  %s", time.Since(n.started).Seconds(), step)
	n.timeline = append(n.timeline, line)
	n.t.Log(line)
}

// diagnose logs what a person would look at when the run fails.
func (n *node) diagnose() {
	for _, args := range [][]string{
		{"-n", "herd", "get", "all,pvc,secrets", "-o", "wide"},
		{"-n", "herd", "describe", "pods"},
		{"-n", "herd", "get", "events", "--sort-by=.lastTimestamp"},
		{"-n", "herd", "logs", "deploy/herd-server", "--tail=200"},
		{"-n", "herd", "logs", "-l", "app.kubernetes.io/component=task", "--tail=30", "--prefix"},
		{"-n", "herd", "logs", "-l", "app.kubernetes.io/component=worker", "--tail=100", "--prefix"},
	} {
		out, _ := n.run(n.kubectl, args...)
		n.t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
	}
	if b, err := os.ReadFile(filepath.Join(n.dir, "kubelet.log")); err == nil {
		lines := strings.Split(string(b), "\n")
		n.t.Logf("kubelet.log (last 40 lines):\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
}

// TestNode installs herd with the single-node overlay (as patched for this
// node in testdata/jobs), runs real clips through a Kubernetes Job per
// task, kills an encoding pod, then switches the same installation to pull
// workers (testdata/pull) and runs another clip through them.
func TestNode(t *testing.T) {
	if os.Getenv("HERD_KUBE_NODE") != "1" {
		t.Skip("set HERD_KUBE_NODE=1 (make e2e-kube) to run herd on a real Kubernetes node here; it needs root, containerd, runc and the CNI plugins")
	}
	root, err := kubetest.Root()
	require.NoError(t, err)
	// The real clips the repository keeps: nothing is read from outside it.
	media := filepath.Join(root, "internal", "media", "testdata")
	_, err = os.Stat(filepath.Join(media, "realshort.mp4"))
	require.NoError(t, err, "the real clips in internal/media/testdata")
	n := &node{t: t, root: root, dir: cmp.Or(os.Getenv("HERD_KUBE_NODE_DIR"), "/var/lib/herd-kube-node"), started: time.Now()}
	if out, err := n.run("hack/kube/node.sh", "check"); err != nil {
		t.Fatalf("cannot run a Kubernetes node here (install what make deps-test installs): %s", out)
	}
	bin, err := kubetest.Binaries("all")
	require.NoError(t, err)
	n.kubectl = filepath.Join(bin, "kubectl")
	n.mark("Kubernetes binaries at " + bin)

	image := filepath.Join(t.TempDir(), "herd.tar")
	n.must("scripts/build-image.sh", image, "herd:e2e")
	n.mark("image built")

	// herd's data volume: a hostPath folder owned by the image's user.
	data, err := os.MkdirTemp("", "herd-e2e-data-")
	require.NoError(t, err)
	require.NoError(t, os.Chown(data, taskUser, taskUser))
	t.Cleanup(func() { _ = os.RemoveAll(data) })
	t.Cleanup(func() {
		if t.Failed() {
			n.diagnose()
		}
		out, err := n.run("hack/kube/node.sh", "down")
		if err != nil {
			t.Errorf("node.sh down: %v\n%s", err, out)
		}
		t.Logf("timeline:\n%s", strings.Join(n.timeline, "\n"))
	})
	n.must("hack/kube/node.sh", "up", image)
	n.mark("node Ready, image imported")

	pv := fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: herd-e2e-data}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: %q, type: Directory}
`, data)
	pvFile := filepath.Join(t.TempDir(), "pv.yaml")
	require.NoError(t, os.WriteFile(pvFile, []byte(pv), 0o644))
	n.k("apply", "-f", pvFile)

	out := n.k("apply", "-k", "deploy/e2e/testdata/jobs")
	checkPodSecurity(t, out)
	n.k("-n", "herd", "rollout", "status", "deploy/herd-server", "--timeout=180s")
	n.mark("herd server Ready (single-node overlay)")
	holder := n.k("-n", "herd", "get", "lease", "herd-dispatcher", "-o", "jsonpath={.spec.holderIdentity}")
	require.True(t, strings.HasPrefix(holder, "herd-server-"), "the server pod holds the dispatcher Lease: %q", holder)

	// Stop in time for the cleanup to take the node down: go test's own
	// timeout would end the process without it.
	end := time.Now().Add(15 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-time.Minute).Before(end) {
		end = d.Add(-time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	c := client.New(serverURL, adminKey)

	// Phase 1: a Job per task. A long real clip (movie-hello looped to
	// about 50 s) split into three chunks, one of whose pods is killed,
	// and two more clips beside it.
	long := filepath.Join(t.TempDir(), "movie-hello-x6.mp4")
	n.must("ffmpeg", "-nostdin", "-v", "error", "-stream_loop", "5", "-i", filepath.Join(media, "movie-hello.mp4"), "-c", "copy", long)
	chunkSeconds := 16.0
	killed, _, err := c.Submit(ctx, long, "web-hls", client.SubmitOptions{ChunkSeconds: &chunkSeconds}, nil)
	require.NoError(t, err)
	others := []jobview.JobView{
		submit(t, ctx, c, filepath.Join(media, "Megamind.avi"), "mp4-library"),
		submit(t, ctx, c, filepath.Join(media, "cityCC0.mpg"), "mp4-library"),
	}
	n.mark("3 jobs submitted")

	pod, task := n.encoding(t, ctx, c, killed.ID, job.KindChunk, func(task string) string { return "herd.io/task=" + task })
	killedJob := strings.TrimSpace(n.k("-n", "herd", "get", "pod", pod, "-o", `jsonpath={.metadata.labels.batch\.kubernetes\.io/job-name}`))
	require.NotEmpty(t, killedJob)
	n.mark("killing pod " + pod + " mid-chunk")
	n.k("-n", "herd", "delete", "pod", pod, "--grace-period=0", "--force", "--wait=false")

	for _, j := range append([]jobview.JobView{killed}, others...) {
		v := wait(t, ctx, c, j.ID)
		n.mark(fmt.Sprintf("job %s (%s, %s) succeeded", v.ID, v.Source.Name, v.Profile))
		checkOutputs(t, v)
	}
	v, err := c.Job(ctx, killed.ID)
	require.NoError(t, err)
	enc := taskByID(t, v, task)
	require.Equal(t, "succeeded", enc.State)
	require.GreaterOrEqual(t, enc.Attempt, 2, "the killed chunk ran again")
	chunks := 0
	for _, tk := range v.Tasks {
		if tk.Kind == job.KindChunk {
			chunks++
			if tk.ID != task {
				require.Equal(t, 1, tk.Attempt, "chunk %d was not encoded again", tk.Chunk)
			}
		}
	}
	require.Equal(t, 3, chunks, "the long clip ran as three chunk tasks, a Kubernetes Job each")

	// `kubectl get jobs -l app.kubernetes.io/name=herd` shows the work: a
	// Job per task attempt, named after the task and its lease's fencing
	// token; the killed pod's Job failed, its retry completed.
	// A task's pod exits just after it reports, so its Job may finish a
	// moment after the herd job does.
	var jobs map[string]string
	eventually(t, time.Minute, "every task's last Job completes", func() (bool, any) {
		jobs = n.jobs(t)
		for _, j := range append([]jobview.JobView{v}, others...) {
			for _, tk := range j.Tasks {
				if jobs["herd-"+tk.ID+"-"+fmt.Sprint(lastFence(jobs, tk.ID))] != "Complete" {
					return false, jobs
				}
			}
		}
		return true, nil
	})
	if status, ok := jobs[killedJob]; ok {
		require.Equal(t, "Failed", status, "the killed pod's Job %s", killedJob)
	}
	require.NotEqual(t, killedJob, "herd-"+task+"-"+fmt.Sprint(lastFence(jobs, task)), "the rerun has a Job of its own")
	n.mark(fmt.Sprintf("%d Kubernetes Jobs for %d herd jobs", len(jobs), 3))
	requireIdle(t, ctx, c)

	// Phase 2: the same installation with pull workers. The server restarts
	// with the new configuration on the same volume (its jobs are still
	// there), and a worker Deployment dials out to it.
	n.k("apply", "-k", "deploy/e2e/testdata/pull")
	n.k("-n", "herd", "rollout", "status", "deploy/herd-server", "--timeout=180s")
	n.k("-n", "herd", "rollout", "status", "deploy/herd-worker", "--timeout=180s")
	n.mark("switched to pull workers")
	old, err := c.Job(ctx, killed.ID)
	require.NoError(t, err)
	require.Equal(t, job.Succeeded, old.State, "jobs survive the server's restart")

	// Another long real clip (Megamind looped to about 70 s): its worker pod
	// is killed mid-encode; the Deployment starts another, the lease runs
	// out, and the task runs again there. And a short clip beside it.
	long2 := filepath.Join(t.TempDir(), "Megamind-x6.avi")
	n.must("ffmpeg", "-nostdin", "-v", "error", "-stream_loop", "5", "-i", filepath.Join(media, "Megamind.avi"), "-c", "copy", long2)
	pulled := []jobview.JobView{
		submit(t, ctx, c, long2, "web-hls"),
		submit(t, ctx, c, filepath.Join(media, "realshort.mp4"), "mp4-library"),
	}
	worker, task := n.encoding(t, ctx, c, pulled[0].ID, job.KindEncode, func(string) string { return "app.kubernetes.io/component=worker" })
	n.mark("killing worker pod " + worker + " mid-encode")
	n.k("-n", "herd", "delete", "pod", worker, "--grace-period=0", "--force", "--wait=false")
	for _, j := range pulled {
		v := wait(t, ctx, c, j.ID)
		n.mark(fmt.Sprintf("job %s (%s, %s) succeeded on pull workers", v.ID, v.Source.Name, v.Profile))
		checkOutputs(t, v)
		for _, tk := range v.Tasks {
			require.Equal(t, "pool", tk.Worker, "task %s (%s) ran on a pull worker", tk.ID, tk.Kind)
		}
		for name := range n.jobs(t) {
			for _, tk := range v.Tasks {
				require.NotContains(t, name, tk.ID, "no Kubernetes Job for pull-mode work")
			}
		}
		if j.ID == pulled[0].ID {
			require.GreaterOrEqual(t, taskByID(t, v, task).Attempt, 2, "the killed encode ran again")
		}
	}
	requireIdle(t, ctx, c)
}

// checkPodSecurity: the e2e overlay leaves the restricted standard only for
// the host network (and probes on loopback); everything else complies.
func checkPodSecurity(t *testing.T, applyOutput string) {
	t.Helper()
	re := regexp.MustCompile(`would violate PodSecurity "restricted:latest": (.*)`)
	allowed := []string{"host namespaces (hostNetwork=true)", "probe or lifecycle host"}
	for _, m := range re.FindAllStringSubmatch(applyOutput, -1) {
		for _, v := range strings.Split(m[1], "), ") {
			ok := slices.ContainsFunc(allowed, func(a string) bool { return strings.HasPrefix(v, strings.TrimSuffix(a, ")")) })
			require.True(t, ok, "a pod breaks the restricted Pod Security Standard: %s", v)
		}
	}
}

func submit(t *testing.T, ctx context.Context, c *client.Client, file, profile string) jobview.JobView {
	t.Helper()
	j, _, err := c.Submit(ctx, file, profile, client.SubmitOptions{}, nil)
	require.NoError(t, err, "submit %s", file)
	return j
}

func wait(t *testing.T, ctx context.Context, c *client.Client, id string) jobview.JobView {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	v, err := c.Wait(wctx, id, 500*time.Millisecond, nil)
	require.NoError(t, err, "waiting for job %s", id)
	require.Equal(t, job.Succeeded, v.State, "job %s: %s", id, v.Error)
	return v
}

// checkOutputs: herd verified every output against its source; the job
// shows what it measured.
func checkOutputs(t *testing.T, v jobview.JobView) {
	t.Helper()
	require.NotEmpty(t, v.Outputs, "job %s has outputs", v.ID)
	names := map[string]bool{}
	for _, o := range v.Outputs {
		require.False(t, names[o.Name], "job %s lists output %s twice", v.ID, o.Name)
		names[o.Name] = true
		if o.Width > 0 && o.Kind != "poster" && o.Kind != "sprite" {
			require.InDelta(t, v.Source.Duration, o.Duration, 0.5, "job %s output %s duration", v.ID, o.Name)
			require.Greater(t, o.SSIM, 0.9, "job %s output %s SSIM", v.ID, o.Name)
		}
	}
}

func taskByID(t *testing.T, v jobview.JobView, id string) jobview.TaskView {
	t.Helper()
	for _, tk := range v.Tasks {
		if tk.ID == id {
			return tk
		}
	}
	t.Fatalf("job %s has no task %s", v.ID, id)
	return jobview.TaskView{}
}

// encoding waits until a task of the job of kind (encode, or a chunk) has
// run for a moment, then returns the name of the pod matching selector that
// is running it (a task's own pod, or the pull worker) and the task's id.
func (n *node) encoding(t *testing.T, ctx context.Context, c *client.Client, id string, kind job.Kind, selector func(task string) string) (pod, task string) {
	t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		v, err := c.Job(ctx, id)
		require.NoError(t, err)
		require.NotEqual(t, job.Succeeded, v.State, "the encode finished before it could be killed")
		for _, tk := range v.Tasks {
			// Running for a moment: heartbeats carry progress only every few seconds.
			if tk.Kind != kind || tk.State != "running" || tk.StartedAt == nil || time.Since(*tk.StartedAt) < 2*time.Second {
				continue
			}
			out, err := n.run(n.kubectl, "-n", "herd", "get", "pods", "-l", selector(tk.ID),
				"--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}")
			if name := strings.TrimSpace(out); err == nil && name != "" && !strings.Contains(name, " ") {
				return name, tk.ID
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("job %s's encode never ran in a pod", id)
	return "", ""
}

// jobs lists herd's Kubernetes Jobs by name with their status.
func (n *node) jobs(t *testing.T) map[string]string {
	t.Helper()
	out := n.k("-n", "herd", "get", "jobs", "-l", selector, "-o",
		`jsonpath={range .items[*]}{.metadata.name}{" "}{range .status.conditions[?(@.status=="True")]}{.type}{","}{end}{"\n"}{end}`)
	jobs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, conds, _ := strings.Cut(line, " ")
		status := "Running"
		for _, c := range strings.Split(conds, ",") {
			if c == "Complete" || c == "Failed" {
				status = c
			}
		}
		jobs[name] = status
	}
	return jobs
}

// lastFence is the highest fencing token among a task's Jobs.
func lastFence(jobs map[string]string, task string) int {
	best := 0
	for name := range jobs {
		var f int
		if rest, ok := strings.CutPrefix(name, "herd-"+task+"-"); ok {
			if _, err := fmt.Sscan(rest, &f); err == nil && f > best {
				best = f
			}
		}
	}
	return best
}

// requireIdle: nothing is queued or leased once every job is done.
func requireIdle(t *testing.T, ctx context.Context, c *client.Client) {
	t.Helper()
	eventually(t, 30*time.Second, "an idle queue", func() (bool, any) {
		q, err := c.Queue(ctx)
		return err == nil && q.QueuedTasks == 0 && q.RunningTasks == 0, fmt.Sprintf("%+v %v", q, err)
	})
}

// eventually polls cond until it holds, or fails with what it last saw.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, any)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, saw)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
