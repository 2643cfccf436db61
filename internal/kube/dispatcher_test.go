package kube_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/kube"
	"github.com/herdhq/herd/internal/kube/kubetest"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// rig is one dispatcher over a fresh store and namespace.
type rig struct {
	t    *testing.T
	ctx  context.Context
	cs   kubernetes.Interface
	st   store.Store
	q    *queue.Queue
	sig  *queue.Signal
	ns   string
	cfg  kube.Config
	d    *kube.Dispatcher
	skew atomic.Int64 // the dispatcher's clock runs this far ahead
}

func newRig(t *testing.T, tweak func(*kube.Config)) *rig {
	t.Helper()
	env := kubetest.Need(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cs, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)
	ns := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	ns = strings.ReplaceAll(ns, "_", "-")
	if len(ns) > 50 {
		ns = ns[:50]
	}
	ns = strings.Trim(ns, "-") + fmt.Sprintf("-%d", time.Now().UnixNano()%100000)
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "herd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	sig := &queue.Signal{}
	r := &rig{t: t, ctx: ctx, cs: cs, st: st, sig: sig, ns: ns, q: queue.New(st, sig, queue.Config{LeaseTTL: 30 * time.Second})}
	r.cfg = kube.Config{
		Namespace: ns, Image: "herd:test", ServerURL: "http://herd.test:8080", MaxJobs: 4,
		ServiceAccount: "herd-task", LeaseTTL: 30 * time.Second,
		Now: func() time.Time { return time.Now().Add(time.Duration(r.skew.Load())) },
	}
	if tweak != nil {
		tweak(&r.cfg)
	}
	r.d = r.start(cs)
	return r
}

// start makes a dispatcher talking through cs and fills its caches.
func (r *rig) start(cs kubernetes.Interface) *kube.Dispatcher {
	r.t.Helper()
	ctx, cancel := context.WithCancel(r.ctx)
	r.t.Cleanup(cancel)
	d, err := kube.New(r.cfg, cs, r.st, r.q, r.sig, kubetest.Logger(r.t))
	require.NoError(r.t, err)
	require.NoError(r.t, d.Start(ctx))
	return d
}

// submit stores a job with one task of kind k.
func (r *rig) submit(k job.Kind, needs ...string) job.Task {
	r.t.Helper()
	sha := fmt.Sprintf("%064d", time.Now().UnixNano())
	a, err := r.st.PutAsset(r.ctx, job.Asset{ID: job.NewID("a"), Name: "clip.mp4", Size: 10, SHA256: sha, Key: "sources/" + sha, CreatedAt: time.Now()})
	require.NoError(r.t, err)
	j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: job.IdempotencyKey(sha, "web-hls", 1, ""),
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: sha, Duration: 600}}
	tk := job.Task{ID: job.NewID("t"), Kind: k, MaxAttempts: 3, Needs: needs}
	_, _, err = r.st.CreateJob(r.ctx, j, []job.Task{tk}, time.Now())
	require.NoError(r.t, err)
	tk.JobID = j.ID
	return tk
}

func (r *rig) task(id string) job.Task {
	r.t.Helper()
	t, err := r.st.GetTask(r.ctx, id)
	require.NoError(r.t, err)
	return t
}

func (r *rig) jobs() []batchv1.Job {
	r.t.Helper()
	l, err := r.cs.BatchV1().Jobs(r.ns).List(r.ctx, metav1.ListOptions{LabelSelector: kube.Selector.String()})
	require.NoError(r.t, err)
	return l.Items
}

func (r *rig) getJob(name string) (*batchv1.Job, bool) {
	r.t.Helper()
	kj, err := r.cs.BatchV1().Jobs(r.ns).Get(r.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	require.NoError(r.t, err)
	return kj, true
}

// until syncs the dispatcher until cond holds: its caches follow the API a moment later.
func (r *rig) until(d *kube.Dispatcher, what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		require.NoError(r.t, d.Sync(r.ctx))
		if cond() {
			return
		}
		require.True(r.t, time.Now().Before(deadline), "waiting for: %s", what)
		time.Sleep(50 * time.Millisecond)
	}
}

// dispatched syncs until the task has its Job, and returns it.
func (r *rig) dispatched(tk job.Task) *batchv1.Job {
	r.t.Helper()
	var kj *batchv1.Job
	r.until(r.d, "a Job for "+tk.ID, func() bool {
		for _, j := range r.jobs() {
			if j.Labels[kube.LabelTask] == tk.ID {
				kj = &j
				return true
			}
		}
		return false
	})
	return kj
}

// TestJobSpec: a claimed task becomes one Job with herd's labels, no
// Kubernetes retries, a deadline, a TTL, a pod failure policy, the lease on
// its command line and the worker key from a Secret the dispatcher keeps.
func TestJobSpec(t *testing.T) {
	r := newRig(t, nil)
	enc := r.submit(job.KindEncode)
	kj := r.dispatched(enc)
	tk := r.task(enc.ID)
	require.Equal(t, job.TaskRunning, tk.State)
	require.Equal(t, fmt.Sprintf("herd-%s-1", enc.ID), kj.Name, "deterministic name: task id and lease token")

	require.Equal(t, map[string]string{
		kube.LabelName: "herd", kube.LabelComponent: "task", kube.LabelManagedBy: "herd",
		kube.LabelJob: enc.JobID, kube.LabelTask: enc.ID, kube.LabelKind: "encode",
	}, kj.Labels)
	require.Equal(t, int32(0), *kj.Spec.BackoffLimit, "herd owns retries")
	require.Equal(t, int64(6000), *kj.Spec.ActiveDeadlineSeconds, "10 x the 600 s source")
	require.Equal(t, int32(3600), *kj.Spec.TTLSecondsAfterFinished)
	require.NotNil(t, kj.Spec.PodFailurePolicy)
	require.Len(t, kj.Spec.PodFailurePolicy.Rules, 2)

	ps := kj.Spec.Template.Spec
	require.Equal(t, corev1.RestartPolicyNever, ps.RestartPolicy)
	require.Equal(t, "herd-task", ps.ServiceAccountName)
	require.False(t, *ps.AutomountServiceAccountToken)
	require.True(t, *ps.SecurityContext.RunAsNonRoot)
	require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, ps.SecurityContext.SeccompProfile.Type)
	require.Len(t, ps.Containers, 1)
	c := ps.Containers[0]
	require.Equal(t, "task", c.Name)
	require.Equal(t, "herd:test", c.Image)
	require.Equal(t, []string{"herd", "run-task", "--log-format", "json", "--task", enc.ID, "--lease-owner", "worker/kube/job",
		"--fence", fmt.Sprint(tk.Fence), "--grace", "25s", "--heartbeat", "10s"}, c.Command)
	require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	require.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	require.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
	require.Equal(t, resource.MustParse("2"), c.Resources.Requests[corev1.ResourceCPU])
	require.Equal(t, resource.MustParse("4Gi"), c.Resources.Limits[corev1.ResourceMemory])
	require.Contains(t, c.VolumeMounts, corev1.VolumeMount{Name: "tmp", MountPath: "/tmp"})

	// The pod's worker key: from the Secret, and accepted by the store.
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "HERD_WORKER_TOKEN" })
	require.GreaterOrEqual(t, i, 0)
	ref := c.Env[i].ValueFrom.SecretKeyRef
	require.Equal(t, "herd-task-key", ref.Name)
	sec, err := r.cs.CoreV1().Secrets(r.ns).Get(r.ctx, ref.Name, metav1.GetOptions{})
	require.NoError(t, err)
	k, err := r.st.KeyByHash(r.ctx, apikey.Hash(string(sec.Data[ref.Key])))
	require.NoError(t, err)
	require.Equal(t, "worker", k.Kind)
	w, err := r.st.GetWorker(r.ctx, "kube")
	require.NoError(t, err)
	require.Equal(t, k.ID, w.KeyID)

	// A light task gets a little, and the cap holds: 4 Jobs in flight at most.
	for range 5 {
		r.submit(job.KindProbe)
	}
	r.until(r.d, "4 Jobs", func() bool { return len(r.jobs()) == 4 })
	for range 3 {
		require.NoError(t, r.d.Sync(r.ctx))
	}
	require.Len(t, r.jobs(), 4, "--kube-max-jobs caps the Jobs in flight")
	for _, j := range r.jobs() {
		if j.Labels[kube.LabelKind] == "probe" {
			require.Equal(t, resource.MustParse("250m"), j.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU])
			require.Equal(t, int64(1800), *j.Spec.ActiveDeadlineSeconds)
		}
	}
}

// TestGPUJobs: a task that needs NVENC gets a GPU, from the GPU pod
// template, and only as many GPU Jobs run as the GPU cap allows, while CPU
// tasks still go out.
func TestGPUJobs(t *testing.T) {
	r := newRig(t, func(c *kube.Config) {
		g, _ := kube.GPUKind("nvidia")
		g.Template = &corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RuntimeClassName: ptr.To("nvidia"),
			NodeSelector:     map[string]string{"nvidia.com/gpu.present": "true"},
			Tolerations:      []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		}}
		c.GPU = &g
	})
	g1 := r.submit(job.KindEncode, "nvenc:h264")
	g2 := r.submit(job.KindEncode, "nvenc:hevc")
	cpu := r.submit(job.KindEncode)
	av1 := r.submit(job.KindEncode, "av1") // SVT-AV1, in software: herd's image has it
	kj := r.dispatched(g1)
	r.dispatched(cpu)
	av1Job := r.dispatched(av1)
	require.Empty(t, av1Job.Labels[kube.LabelGPU], "a software encoder's need runs in a CPU pod")
	require.Equal(t, "nvidia", kj.Labels[kube.LabelGPU])
	ps := kj.Spec.Template.Spec
	require.Equal(t, "nvidia", *ps.RuntimeClassName)
	require.Equal(t, "true", ps.NodeSelector["nvidia.com/gpu.present"])
	require.Equal(t, resource.MustParse("1"), ps.Containers[0].Resources.Limits["nvidia.com/gpu"])
	require.Equal(t, job.TaskQueued, r.task(g2.ID).State, "one GPU Job at a time (--kube-gpu-max-jobs 1)")
	cpuJob, _ := r.getJob(kube.JobName(r.task(cpu.ID)))
	_, hasGPU := cpuJob.Spec.Template.Spec.Containers[0].Resources.Limits["nvidia.com/gpu"]
	require.False(t, hasGPU)
	require.Nil(t, cpuJob.Spec.Template.Spec.RuntimeClassName)
}

// podFor creates the pod the Job controller would, then sets its status.
func (r *rig) podFor(kj *batchv1.Job, status corev1.PodStatus) *corev1.Pod {
	r.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: kj.Name + "-x", Namespace: r.ns, Labels: map[string]string{
			"batch.kubernetes.io/job-name": kj.Name, kube.LabelName: "herd", kube.LabelComponent: "task", kube.LabelTask: kj.Labels[kube.LabelTask],
		}},
		Spec: kj.Spec.Template.Spec,
	}
	p, err := r.cs.CoreV1().Pods(r.ns).Create(r.ctx, p, metav1.CreateOptions{})
	require.NoError(r.t, err)
	p.Status = status
	p, err = r.cs.CoreV1().Pods(r.ns).UpdateStatus(r.ctx, p, metav1.UpdateOptions{})
	require.NoError(r.t, err)
	return p
}

// TestPodFailures: what a pod shows of a failure fails its task at once,
// with the reason, and removes the Job; the task is retried unless the
// failure is one that retrying cannot fix.
func TestPodFailures(t *testing.T) {
	waiting := func(reason, msg string) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "task", Image: "herd:test", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}}}
	}
	now := metav1.Now()
	for _, tc := range []struct {
		name      string
		status    corev1.PodStatus
		skew      time.Duration
		want      string
		permanent bool
	}{
		{"OOMKilled", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "task", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}}},
			0, "OOM-killed at its memory limit of 4Gi", false},
		{"Evicted", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory."},
			0, "evicted: The node was low on resource: memory.", false},
		{"ImagePullBackOff", waiting("ImagePullBackOff", `Back-off pulling image "herd:test"`), 0, "could not pull its image herd:test", false},
		{"InvalidImageName", waiting("InvalidImageName", "bad"), 0, "is not a valid image name", true},
		{"NoPod", corev1.PodStatus{}, 6 * time.Minute, "Kubernetes made no pod for the task's Job", false},
		{"Unschedulable", corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.", LastTransitionTime: now}}},
			6 * time.Minute, "could not be scheduled for 5m0s: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, nil)
			tk := r.submit(job.KindEncode)
			kj := r.dispatched(tk)
			if tc.name != "NoPod" {
				r.podFor(kj, tc.status)
			}
			if tc.skew > 0 {
				// Still waiting inside the timeout: nothing happens.
				for range 3 {
					require.NoError(t, r.d.Sync(r.ctx))
					time.Sleep(50 * time.Millisecond)
				}
				require.Equal(t, job.TaskRunning, r.task(tk.ID).State)
				r.skew.Store(int64(tc.skew))
			}
			r.until(r.d, "the task to fail", func() bool { return r.task(tk.ID).State != job.TaskRunning })
			got := r.task(tk.ID)
			require.Contains(t, got.Error, tc.want)
			if tc.permanent {
				require.Equal(t, job.TaskFailed, got.State)
			} else {
				require.Equal(t, job.TaskQueued, got.State, "retried")
			}
			_, exists := r.getJob(kj.Name)
			require.False(t, exists, "the failed pod's Job is deleted")
		})
	}
}

// TestDisruptedPodGivesTaskBack: a drained pod is left to finish or give
// its task back in its grace period; one that ended without doing either
// gives the task back with no attempt used, and the task gets a new Job.
func TestDisruptedPodGivesTaskBack(t *testing.T) {
	r := newRig(t, nil)
	tk := r.submit(job.KindEncode)
	kj := r.dispatched(tk)
	disrupted := corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
		Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting", LastTransitionTime: metav1.Now()}
	start := metav1.Now()
	pod := r.podFor(kj, corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &start, Conditions: []corev1.PodCondition{disrupted}})
	r.until(r.d, "the dispatcher to see the pod", func() bool { return r.d.SeesPod(pod.Name, pod.ResourceVersion) })
	for range 5 {
		require.NoError(t, r.d.Sync(r.ctx))
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, job.TaskRunning, r.task(tk.ID).State, "a stopping pod keeps its task")
	_, exists := r.getJob(kj.Name)
	require.True(t, exists)

	pod.Status = corev1.PodStatus{Phase: corev1.PodFailed, StartTime: &start, Conditions: []corev1.PodCondition{disrupted},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "task", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error"}}}}}
	_, err := r.cs.CoreV1().Pods(r.ns).UpdateStatus(r.ctx, pod, metav1.UpdateOptions{})
	require.NoError(t, err)
	r.until(r.d, "the task to be given back and dispatched again", func() bool { return r.task(tk.ID).Fence == 2 })
	got := r.task(tk.ID)
	require.Equal(t, 1, got.Attempt, "given back: no attempt used")
	require.Empty(t, got.Error)
}

// TestDisruptedJobWithoutPod: a Job failed by its pod failure policy for a
// disrupted pod that is already gone gives its task back all the same.
func TestDisruptedJobWithoutPod(t *testing.T) {
	r := newRig(t, nil)
	tk := r.submit(job.KindEncode)
	kj := r.dispatched(tk)
	start := metav1.Now()
	kj.Status.StartTime = &start
	kj.Status.Conditions = []batchv1.JobCondition{{
		Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonPodFailurePolicy,
		Message: "Pod " + r.ns + "/x has condition DisruptionTarget matching FailJob rule at index 0", LastTransitionTime: start, LastProbeTime: start,
	}}
	_, err := r.cs.BatchV1().Jobs(r.ns).UpdateStatus(r.ctx, kj, metav1.UpdateOptions{})
	require.NoError(t, err)
	r.until(r.d, "the task to be given back and dispatched again", func() bool { return r.task(tk.ID).Fence == 2 })
	require.Equal(t, 1, r.task(tk.ID).Attempt, "given back: no attempt used")
}

// TestJobEndedWithoutReport: a Job that ran past its deadline while its
// task still held the lease fails the task with that reason.
func TestJobEndedWithoutReport(t *testing.T) {
	r := newRig(t, nil)
	tk := r.submit(job.KindEncode)
	kj := r.dispatched(tk)
	start := metav1.NewTime(time.Now().Add(-2 * time.Hour))
	kj.Status.StartTime = &start
	kj.Status.Conditions = []batchv1.JobCondition{{
		Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonDeadlineExceeded,
		Message: "Job was active longer than specified deadline", LastTransitionTime: metav1.Now(), LastProbeTime: metav1.Now(),
	}}
	_, err := r.cs.BatchV1().Jobs(r.ns).UpdateStatus(r.ctx, kj, metav1.UpdateOptions{})
	require.NoError(t, err)
	r.until(r.d, "the task to fail", func() bool { return r.task(tk.ID).State != job.TaskRunning })
	got := r.task(tk.ID)
	require.Equal(t, job.TaskQueued, got.State)
	require.Contains(t, got.Error, "ran past its Job's deadline of 6000s")
}

// TestDeletedJobGivesTaskBack: a Job deleted by hand gives its task back
// at once (no attempt used), and the next Job is a new attempt.
func TestDeletedJobGivesTaskBack(t *testing.T) {
	r := newRig(t, func(c *kube.Config) { c.MaxJobs = 1 })
	tk := r.submit(job.KindEncode)
	kj := r.dispatched(tk)
	require.NoError(t, r.cs.BatchV1().Jobs(r.ns).Delete(r.ctx, kj.Name, metav1.DeleteOptions{}))
	r.skew.Store(int64(time.Minute)) // past the grace for Jobs still being made
	r.until(r.d, "a new Job", func() bool { return len(r.jobs()) == 2 })
	got := r.task(tk.ID)
	require.Equal(t, job.TaskRunning, got.State)
	require.Equal(t, 1, got.Attempt, "given back: no attempt used")
	require.Equal(t, int64(2), got.Fence)
	var live []string
	for _, j := range r.jobs() {
		if j.DeletionTimestamp == nil {
			live = append(live, j.Name)
		}
	}
	require.Equal(t, []string{kube.JobName(got)}, live, "one Job, the new one (the old one waits for the garbage collector)")
}

// TestCancelDeletesJob: canceling the herd job deletes its Jobs.
func TestCancelDeletesJob(t *testing.T) {
	r := newRig(t, nil)
	tk := r.submit(job.KindEncode)
	kj := r.dispatched(tk)
	_, err := r.st.CancelJob(r.ctx, tk.JobID, time.Now())
	require.NoError(t, err)
	r.until(r.d, "the Job to go", func() bool { _, ok := r.getJob(kj.Name); return !ok })
}

// TestRestartAdopts: a new dispatcher over the same store and namespace
// adopts the Jobs of the old one (no second Job), keeps their pending
// pods' leases alive, and gives back a task claimed but never made a Job.
func TestRestartAdopts(t *testing.T) {
	r := newRig(t, nil)
	tk := r.submit(job.KindEncode)
	kj := r.dispatched(tk)
	before := r.task(tk.ID)

	// A claim whose Job was never created: the server died in between.
	orphan := r.submit(job.KindProbe)
	c, err := r.q.Claim(r.ctx, "worker/kube/job", "kube", nil)
	require.NoError(t, err)
	require.Equal(t, orphan.ID, c.Task.ID)

	d2 := r.start(r.cs)
	r.skew.Store(int64(time.Minute))
	r.until(d2, "the orphan given back and dispatched", func() bool {
		_, ok := r.getJob(kube.JobName(r.task(orphan.ID)))
		return r.task(orphan.ID).Fence == 2 && ok
	})
	after := r.task(tk.ID)
	require.Equal(t, before.Fence, after.Fence, "adopted: the same lease")
	require.True(t, after.LeaseExpiry.After(*before.LeaseExpiry), "the waiting pod's lease is renewed")
	names := []string{}
	for _, j := range r.jobs() {
		names = append(names, j.Name)
	}
	require.ElementsMatch(t, []string{kj.Name, kube.JobName(r.task(orphan.ID))}, names, "no duplicate Job")
}

// TestReportedJobKept: a Job whose pod reported its task done is left to
// finish on its own (its logs stay for kubectl until the TTL), not deleted.
func TestReportedJobKept(t *testing.T) {
	r := newRig(t, nil)
	tk := r.submit(job.KindEncode)
	kj := r.dispatched(tk)
	got := r.task(tk.ID)
	require.NoError(t, r.q.Complete(r.ctx, job.Lease{TaskID: tk.ID, Owner: "worker/kube/job", Fence: got.Fence}, job.Result{}))
	for range 5 {
		require.NoError(t, r.d.Sync(r.ctx))
		time.Sleep(50 * time.Millisecond)
	}
	_, ok := r.getJob(kj.Name)
	require.True(t, ok, "the reported task's Job is kept")
}

// TestDrainedDispatcher: `herd workers drain kube` stops new Jobs (running
// ones go on); resuming starts them again.
func TestDrainedDispatcher(t *testing.T) {
	r := newRig(t, nil)
	require.NoError(t, r.st.SetWorkerState(r.ctx, "kube", store.WorkerDraining, time.Now()))
	tk := r.submit(job.KindEncode)
	for range 5 {
		require.NoError(t, r.d.Sync(r.ctx))
		time.Sleep(20 * time.Millisecond)
	}
	require.Empty(t, r.jobs())
	require.Equal(t, job.TaskQueued, r.task(tk.ID).State)
	// A new key (its Secret deleted by hand) leaves it drained.
	require.NoError(t, r.cs.CoreV1().Secrets(r.ns).Delete(r.ctx, "herd-task-key", metav1.DeleteOptions{}))
	require.NoError(t, kube.EnsureWorkerKey(r.ctx, r.cs, r.st, r.ns, "herd-task-key", "kube", 4, kubetest.Logger(t)))
	w, err := r.st.GetWorker(r.ctx, "kube")
	require.NoError(t, err)
	require.Equal(t, store.WorkerDraining, w.State)
	require.NoError(t, r.st.SetWorkerState(r.ctx, "kube", store.WorkerActive, time.Now()))
	r.dispatched(tk)
}

// Every hardware encoder herd plans for is claimed by one of the GPU kinds
// the Kubernetes dispatcher knows, so a task that needs one never waits for
// a claim that cannot come.
func TestGPUKindsClaimEveryHardwareEncoder(t *testing.T) {
	var caps []string
	for _, kind := range []string{"nvidia", "intel"} {
		g, ok := kube.GPUKind(kind)
		require.True(t, ok, kind)
		caps = append(caps, g.Caps...)
	}
	for _, e := range media.HWEncoders() {
		require.Contains(t, caps, media.HWCap(e.Family, e.Codec), "no GPU kind of the dispatcher claims %s", e.Encoder)
	}
}
