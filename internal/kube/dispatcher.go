// Package kube is the Kubernetes dispatcher: herd serve --dispatcher
// kubernetes claims each runnable task and runs it as one batch/v1 Job whose
// pod runs `herd run-task`. The database stays the truth; Kubernetes is the
// executor. One loop reconciles the two, level-based, whenever a Job or pod
// changes, work appears, or a lease needs renewing:
//
//   - a Job whose task no longer holds its lease (canceled, taken over) is deleted;
//   - a pod that is OOM-killed, evicted, cannot pull its image or stays
//     unschedulable fails its task at once with that reason;
//   - a Job that ended without its pod reporting fails its task with what the pod shows;
//   - a task leased to the dispatcher with no Job (deleted by hand, or a crash
//     between claim and create) is given back;
//   - while a pod waits to start, the dispatcher keeps its task's lease alive;
//   - then, while fewer Jobs than the caps are in flight, it claims tasks and creates Jobs.
//
// Job names are deterministic (task id and lease token), so a restarted server
// adopts the Jobs it made instead of making them twice.
package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/herdhq/herd/internal/backoff"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
)

// Labels and annotations herd puts on its Jobs and their pods.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelJob       = "herd.io/job"
	LabelTask      = "herd.io/task"
	LabelKind      = "herd.io/kind"
	LabelGPU       = "herd.io/gpu"
	AnnotLease     = "herd.io/lease-owner"
	AnnotFence     = "herd.io/fence"
	// ContainerName is the task container's name in every Job's pod.
	ContainerName = "task"
)

// Selector picks herd's task Jobs and their pods.
var Selector = labels.SelectorFromSet(labels.Set{LabelName: "herd", LabelComponent: "task"})

// GPU is a kind of GPU the cluster offers to task pods.
type GPU struct {
	Kind     string   // nvidia | intel
	Resource string   // extended resource a pod requests: nvidia.com/gpu, gpu.intel.com/i915
	Caps     []string // task needs such a pod meets: nvenc:h264, vaapi:hevc, ...
	MaxJobs  int      // GPU Jobs in flight at once
	Template *corev1.PodTemplateSpec
}

// GPUKind returns the defaults for a GPU kind, or false. Its task pods may
// use every encoder of its families in media's table of hardware encoders,
// the one planning and the pull workers' trial encodes read: a task that
// needs one is claimed, never left waiting, and a GPU without that encoder
// fails the encode with ffmpeg's error, which says so.
func GPUKind(kind string) (GPU, bool) {
	var g GPU
	var families []string
	switch kind {
	case "nvidia":
		g, families = GPU{Kind: kind, Resource: "nvidia.com/gpu", MaxJobs: 1}, []string{media.HWNVENC}
	case "intel":
		g, families = GPU{Kind: kind, Resource: "gpu.intel.com/i915", MaxJobs: 1}, []string{media.HWVAAPI, media.HWQSV}
	default:
		return GPU{}, false
	}
	for _, f := range families {
		for _, e := range media.HWEncoders() {
			if e.Family == f {
				g.Caps = append(g.Caps, media.HWCap(e.Family, e.Codec))
			}
		}
	}
	return g, true
}

// Config is what `herd serve --dispatcher kubernetes` is told.
type Config struct {
	Namespace       string
	Image           string
	ImagePullPolicy corev1.PullPolicy
	ServerURL       string // how task pods reach this server
	WorkerName      string // the worker the dispatcher's leases belong to; default "kube"
	KeySecret       string // Secret holding that worker's key; default DefaultKeySecret
	ServiceAccount  string // task pods' service account (they need no API rights)
	MaxJobs         int    // Jobs in flight at once
	GPU             *GPU
	// Template is the base of every task pod (node selectors, tolerations,
	// security context, host network...); herd fills in the task container.
	Template *corev1.PodTemplateSpec
	// Heavy tasks (encode, thumbnails, verify) get these; probe and publish a little.
	EncodeCPU, EncodeMemory resource.Quantity
	// activeDeadlineSeconds: heavy tasks get DeadlineFactor × the source's
	// duration, at least MinDeadline; light ones MinDeadline.
	MinDeadline          time.Duration
	DeadlineFactor       float64
	TTLAfterFinished     time.Duration
	UnschedulableTimeout time.Duration
	LeaseTTL             time.Duration
	Grace                time.Duration // the pod's SIGTERM grace for its task; default DefaultGrace
	Resync               time.Duration // full reconcile at least this often; default LeaseTTL/3
	Now                  func() time.Time
}

// Defaults of Config, which the flags of herd serve (and, for Grace,
// herd run-task's --grace) show.
const (
	DefaultKeySecret            = "herd-task-key" //nolint:gosec // the name of the Secret that holds the key, not a key
	DefaultEncodeCPU            = "2"
	DefaultEncodeMemory         = "4Gi"
	DefaultMinDeadline          = 30 * time.Minute
	DefaultDeadlineFactor       = 10
	DefaultTTLAfterFinished     = time.Hour
	DefaultUnschedulableTimeout = 5 * time.Minute
	DefaultGrace                = 25 * time.Second
)

func (c *Config) defaults() {
	c.WorkerName = cmp.Or(c.WorkerName, "kube")
	c.KeySecret = cmp.Or(c.KeySecret, DefaultKeySecret)
	c.MaxJobs = max(c.MaxJobs, 1)
	c.ImagePullPolicy = cmp.Or(c.ImagePullPolicy, corev1.PullIfNotPresent)
	if c.EncodeCPU.IsZero() {
		c.EncodeCPU = resource.MustParse(DefaultEncodeCPU)
	}
	if c.EncodeMemory.IsZero() {
		c.EncodeMemory = resource.MustParse(DefaultEncodeMemory)
	}
	c.MinDeadline = cmp.Or(c.MinDeadline, DefaultMinDeadline)
	c.DeadlineFactor = cmp.Or(c.DeadlineFactor, DefaultDeadlineFactor)
	c.TTLAfterFinished = cmp.Or(c.TTLAfterFinished, DefaultTTLAfterFinished)
	c.UnschedulableTimeout = cmp.Or(c.UnschedulableTimeout, DefaultUnschedulableTimeout)
	c.LeaseTTL = cmp.Or(c.LeaseTTL, queue.DefaultLeaseTTL)
	c.Grace = cmp.Or(c.Grace, DefaultGrace)
	c.Resync = cmp.Or(c.Resync, c.LeaseTTL/3)
	if c.Now == nil {
		c.Now = time.Now
	}
}

// TaskStore is what the dispatcher needs from the store: the tasks it runs
// as Jobs, and its worker's key.
type TaskStore interface {
	KeyStore
	GetTask(ctx context.Context, id string) (job.Task, error)
	RunningTasks(ctx context.Context) ([]job.Task, error)
}

// Validate reports a setting the dispatcher cannot do without, other than
// the namespace, which may come from the cluster: a server checks these
// before it opens anything.
func (c Config) Validate() error {
	switch {
	case c.Image == "":
		return errors.New("kubernetes dispatcher: no image for task pods (--kube-image)")
	case c.ServerURL == "":
		return errors.New("kubernetes dispatcher: task pods need this server's address (--kube-server-url, e.g. http://herd.herd.svc:8080)")
	}
	return nil
}

// Dispatcher runs tasks as Kubernetes Jobs.
type Dispatcher struct {
	cfg    Config
	cs     kubernetes.Interface
	st     TaskStore
	q      *queue.Queue
	sig    *queue.Signal
	log    *slog.Logger
	owner  string
	jobs   batchlisters.JobNamespaceLister
	pods   corelisters.PodNamespaceLister
	synced []cache.InformerSynced
	start  func(stop <-chan struct{})
	events chan struct{}
	renew  map[string]time.Time // Job name → when its lease was last renewed here
	// After a Job could not be created, no claims until pauseUntil;
	// createFailures counts such failures in a row.
	createFailures int
	pauseUntil     time.Time
}

// New returns a dispatcher; Run starts it.
func New(cfg Config, cs kubernetes.Interface, st TaskStore, q *queue.Queue, sig *queue.Signal, log *slog.Logger) (*Dispatcher, error) {
	cfg.defaults()
	if cfg.Namespace == "" {
		return nil, errors.New("kubernetes dispatcher: no namespace (--kube-namespace)")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Dispatcher{
		cfg: cfg, cs: cs, st: st, q: q, sig: sig, log: log.With("component", "kube"),
		owner:  store.WorkerOwnerPrefix(cfg.WorkerName) + "job",
		events: make(chan struct{}, 1),
		renew:  map[string]time.Time{},
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = Selector.String() }))
	ji, pi := f.Batch().V1().Jobs(), f.Core().V1().Pods()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { d.poke() },
		UpdateFunc: func(any, any) { d.poke() },
		DeleteFunc: func(any) { d.poke() },
	}
	if _, err := ji.Informer().AddEventHandler(h); err != nil {
		return nil, err
	}
	if _, err := pi.Informer().AddEventHandler(h); err != nil {
		return nil, err
	}
	d.jobs, d.pods = ji.Lister().Jobs(cfg.Namespace), pi.Lister().Pods(cfg.Namespace)
	d.synced = []cache.InformerSynced{ji.Informer().HasSynced, pi.Informer().HasSynced}
	d.start = f.Start
	return d, nil
}

func (d *Dispatcher) poke() {
	select {
	case d.events <- struct{}{}:
	default:
	}
}

// Start makes sure task pods have their key and fills the Job and pod
// caches; the informers run until ctx ends.
func (d *Dispatcher) Start(ctx context.Context) error {
	if err := d.ensureKey(ctx); err != nil {
		return err
	}
	d.start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), d.synced...) {
		return fmt.Errorf("kubernetes dispatcher: list Jobs and pods in %s: %w", d.cfg.Namespace, ctx.Err())
	}
	return nil
}

// Run starts the dispatcher and reconciles until ctx ends. Jobs keep
// running when it stops: the next start adopts them.
func (d *Dispatcher) Run(ctx context.Context) error {
	if err := d.Start(ctx); err != nil {
		return err
	}
	d.log.Info("dispatching tasks as Kubernetes Jobs", "namespace", d.cfg.Namespace, "image", d.cfg.Image, "max_jobs", d.cfg.MaxJobs)
	go recheckKey(ctx, d.ensureKey, d.cfg.KeySecret, d.log)
	t := time.NewTicker(d.cfg.Resync)
	defer t.Stop()
	for {
		work := d.sig.C()
		if err := d.Sync(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("reconcile Jobs", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.events:
		case <-work:
		case <-t.C:
		}
	}
}

// Sync reconciles once: Jobs against leases, then claims new work.
func (d *Dispatcher) Sync(ctx context.Context) error {
	all, err := d.jobs.List(Selector)
	if err != nil {
		return err
	}
	running, err := d.st.RunningTasks(ctx)
	if err != nil {
		return err
	}
	leased := map[string]job.Task{}
	for _, t := range running {
		if t.LeaseOwner == d.owner {
			leased[t.ID] = t
		}
	}
	// The caps count leases, not the cache: Jobs just created may not be in it yet.
	inflight, gpuInflight := len(leased), 0
	for _, t := range leased {
		if d.gpuTask(t) {
			gpuInflight++
		}
	}
	haveJob := map[string]bool{}
	for _, kj := range all {
		taskID := kj.Labels[LabelTask]
		fence, _ := strconv.ParseInt(kj.Annotations[AnnotFence], 10, 64)
		t, ok := leased[taskID]
		holds := ok && t.Fence == fence && kj.Annotations[AnnotLease] == d.owner
		if holds {
			haveJob[taskID] = true
		}
		if finished(kj) {
			delete(d.renew, kj.Name)
			if holds {
				d.settle(ctx, kj, t, d.endedWhy(kj))
			}
			continue
		}
		if kj.DeletionTimestamp != nil {
			if holds {
				d.giveBack(ctx, t, "a task's Job is being deleted (by hand?); giving the task back", kj.Name)
			}
			continue
		}
		if !holds {
			if !ok && d.reported(ctx, taskID, fence) {
				continue // its pod just reported; the Job finishes on its own, logs kept
			}
			d.log.Info("deleting a Job whose task is no longer its own (canceled, or taken over)", "job", kj.Name, "task_id", taskID)
			d.deleteJob(ctx, kj.Name)
			continue
		}
		if problem, started := d.podProblem(kj); problem != nil {
			d.settle(ctx, kj, t, *problem)
			d.deleteJob(ctx, kj.Name)
		} else if !started {
			d.keepAlive(ctx, kj, t)
		}
	}
	// Leases without a Job: the Job was deleted by hand, or the server died
	// between claim and create. A fresh lease may be another replica's
	// Job in the making: wait for it.
	for id, t := range leased {
		if haveJob[id] || (t.StartedAt != nil && d.cfg.Now().Sub(*t.StartedAt) < 15*time.Second) {
			continue
		}
		name := JobName(t)
		if _, err := d.cs.BatchV1().Jobs(d.cfg.Namespace).Get(ctx, name, metav1.GetOptions{}); err == nil || !apierrors.IsNotFound(err) {
			continue
		}
		d.giveBack(ctx, t, "a task's Job is gone (deleted by hand?); giving the task back", name)
	}
	return d.dispatch(ctx, inflight, gpuInflight)
}

// dispatch claims tasks and creates their Jobs while there is room.
func (d *Dispatcher) dispatch(ctx context.Context, inflight, gpuInflight int) error {
	if d.cfg.Now().Before(d.pauseUntil) || inflight >= d.cfg.MaxJobs {
		return nil // nothing to start: no need to ask whether it may
	}
	// Drained (herd workers drain kube): finish what runs, start nothing.
	if w, err := d.st.GetWorker(ctx, d.cfg.WorkerName); err != nil || w.State != store.WorkerActive {
		return err
	}
	for inflight < d.cfg.MaxJobs {
		// Task pods run herd's image, whose ffmpeg has every software
		// encoder media plans for (a pod without one fails its encode with
		// ffmpeg's error, which says so).
		caps := media.SoftwareCaps()
		if g := d.cfg.GPU; g != nil && gpuInflight < g.MaxJobs {
			caps = append(caps, g.Caps...)
		}
		c, err := d.q.Claim(ctx, d.owner, d.cfg.WorkerName, caps)
		if err != nil || c == nil {
			return err
		}
		kj := d.JobFor(c)
		if _, err := d.cs.BatchV1().Jobs(d.cfg.Namespace).Create(ctx, kj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			// Give it back: it did not start, and the API may be away for a while.
			if rerr := d.q.Release(context.WithoutCancel(ctx), c.Lease); rerr != nil {
				d.log.Error("give back a task whose Job could not be created", "task_id", c.Task.ID, "err", rerr)
			}
			// Wait before claiming again: the API may be away, or refuse every Job.
			d.createFailures++
			pause := backoff.Delay(firstRetry, maxRetry, d.createFailures)
			d.pauseUntil = d.cfg.Now().Add(pause)
			return fmt.Errorf("create Job %s (claiming again in %s): %w", kj.Name, pause, err)
		}
		d.createFailures = 0
		d.renew[kj.Name] = d.cfg.Now()
		d.log.Info("created a Job", "job", kj.Name, "job_id", c.Job.ID, "task_id", c.Task.ID, "kind", c.Task.Kind, "attempt", c.Task.Attempt)
		inflight++
		if d.gpuTask(c.Task) {
			gpuInflight++
		}
	}
	return nil
}

// lease is the dispatcher's lease on a task it holds.
func (d *Dispatcher) lease(t job.Task) job.Lease {
	return job.Lease{TaskID: t.ID, Owner: d.owner, Fence: t.Fence}
}

// gpuTask reports whether a task runs in a GPU pod.
func (d *Dispatcher) gpuTask(t job.Task) bool {
	g := d.cfg.GPU
	return g != nil && slices.ContainsFunc(t.Needs, func(n string) bool { return slices.Contains(g.Caps, n) })
}

// reported tells a Job whose pod finished its task (the task moved on
// from this lease by itself) from one whose task was canceled or taken over.
func (d *Dispatcher) reported(ctx context.Context, taskID string, fence int64) bool {
	t, err := d.st.GetTask(ctx, taskID)
	return err == nil && t.Fence == fence && t.State != job.TaskCanceled
}

// keepAlive renews the lease of a task whose pod has not started (pulling,
// scheduling): the pod's own heartbeats take over once it runs.
func (d *Dispatcher) keepAlive(ctx context.Context, kj *batchv1.Job, t job.Task) {
	if last, ok := d.renew[kj.Name]; ok && d.cfg.Now().Sub(last) < d.cfg.LeaseTTL/3 {
		return
	}
	err := d.q.Heartbeat(ctx, d.lease(t), job.Progress{})
	if err != nil {
		d.log.Warn("renew the lease of a waiting pod", "job", kj.Name, "err", err)
		return
	}
	d.renew[kj.Name] = d.cfg.Now()
}

// giveBack requeues a task without using an attempt: its Job went away
// through no fault of the task.
func (d *Dispatcher) giveBack(ctx context.Context, t job.Task, why, jobName string) {
	d.log.Warn(why, "job", jobName, "task_id", t.ID)
	if err := d.q.Release(ctx, d.lease(t)); err != nil && !errors.Is(err, job.ErrLeaseLost) {
		d.log.Error("give a task back", "job", jobName, "err", err)
	}
	delete(d.renew, jobName)
}

// settle ends a task whose pod stopped without reporting: a pod taken
// away (drained, preempted) gives it back, anything else is a failed attempt.
func (d *Dispatcher) settle(ctx context.Context, kj *batchv1.Job, t job.Task, f job.Failure) {
	if f.Code == codeDisrupted {
		d.giveBack(ctx, t, f.Message+"; giving the task back", kj.Name)
		return
	}
	d.fail(ctx, kj, t, f)
}

func (d *Dispatcher) fail(ctx context.Context, kj *batchv1.Job, t job.Task, f job.Failure) {
	d.log.Warn("a task's pod failed", "job", kj.Name, "task_id", t.ID, "reason", f.Code, "err", f.Message, "permanent", f.Permanent)
	if err := d.q.Fail(ctx, d.lease(t), f); err != nil && !errors.Is(err, job.ErrLeaseLost) {
		d.log.Error("record a pod's failure", "job", kj.Name, "err", err)
	}
	delete(d.renew, kj.Name)
}

func (d *Dispatcher) deleteJob(ctx context.Context, name string) {
	err := d.cs.BatchV1().Jobs(d.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	if err != nil && !apierrors.IsNotFound(err) {
		d.log.Error("delete Job", "job", name, "err", err)
	}
	delete(d.renew, name)
}

func finished(kj *batchv1.Job) bool {
	for _, c := range kj.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed || c.Type == batchv1.JobFailureTarget) {
			return true
		}
	}
	return false
}

// Reasons a waiting container will not start without someone fixing something.
var pullFailures = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true}

var configFailures = map[string]bool{"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true}

// podProblem looks at a running Job's pods for a failure herd will not hear
// of from the pod itself, and reports whether the task has started.
func (d *Dispatcher) podProblem(kj *batchv1.Job) (*job.Failure, bool) {
	started := false
	pods := d.jobPods(kj)
	if len(pods) == 0 && neverHadPod(kj) && d.cfg.Now().Sub(kj.CreationTimestamp.Time) > d.cfg.UnschedulableTimeout {
		return &job.Failure{Code: "no_pod", Message: fmt.Sprintf("Kubernetes made no pod for the task's Job %s in %s; kubectl describe job/%s says why (a resource quota, an admission policy, a missing service account...)", kj.Name, d.cfg.UnschedulableTimeout, kj.Name)}, false
	}
	for _, p := range pods {
		if f := failureOf(p); f != nil {
			return f, started
		}
		// The pod's own heartbeats begin a little after it starts: renew
		// for it until it has run for a whole lease.
		if p.Status.Phase == corev1.PodRunning && p.Status.StartTime != nil && d.cfg.Now().Sub(p.Status.StartTime.Time) > d.cfg.LeaseTTL {
			started = true
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				since := c.LastTransitionTime.Time
				if since.IsZero() {
					since = p.CreationTimestamp.Time
				}
				if d.cfg.Now().Sub(since) > d.cfg.UnschedulableTimeout {
					return &job.Failure{Code: "unschedulable", Message: fmt.Sprintf("the task's pod could not be scheduled for %s: %s (check the cluster's free CPU, memory and GPUs, node selectors and taints)", d.cfg.UnschedulableTimeout, c.Message)}, false
				}
			}
		}
	}
	return nil, started
}

// neverHadPod: the Job controller counts no pod of a (not suspended) Job.
func neverHadPod(kj *batchv1.Job) bool {
	st := kj.Status
	return st.Active+st.Failed+st.Succeeded == 0 && ptr.Deref(st.Terminating, 0) == 0 && !ptr.Deref(kj.Spec.Suspend, false)
}

// jobPods are a Job's pods, from the cache.
func (d *Dispatcher) jobPods(kj *batchv1.Job) []*corev1.Pod {
	pods, _ := d.pods.List(labels.SelectorFromSet(labels.Set{batchv1.JobNameLabel: kj.Name}))
	return pods
}

// failureOf is what a pod shows of a failure: OOM kill, eviction, an image
// that cannot be pulled, a container that cannot be created.
func failureOf(p *corev1.Pod) *job.Failure {
	for _, cs := range p.Status.ContainerStatuses {
		for _, term := range []*corev1.ContainerStateTerminated{cs.State.Terminated, cs.LastTerminationState.Terminated} {
			if term != nil && term.Reason == "OOMKilled" {
				return &job.Failure{Code: "oom_killed", Message: fmt.Sprintf("the task's pod was OOM-killed at its memory limit%s; raise --kube-encode-memory, or encode fewer rungs at once", memLimit(p))}
			}
		}
		if w := cs.State.Waiting; w != nil {
			switch {
			case w.Reason == "InvalidImageName":
				return &job.Failure{Code: "image_pull", Permanent: true, Message: fmt.Sprintf("the task image %q is not a valid image name: fix --kube-image", cs.Image)}
			case pullFailures[w.Reason]:
				return &job.Failure{Code: "image_pull", Message: fmt.Sprintf("the task's pod could not pull its image %s (%s: %s); check --kube-image and the registry credentials", cs.Image, w.Reason, w.Message)}
			case configFailures[w.Reason]:
				return &job.Failure{Code: "pod_config", Message: fmt.Sprintf("the task's container could not start (%s: %s); check the task pod template and the %s Secret", w.Reason, w.Message, "worker key")}
			}
		}
	}
	if p.Status.Reason == "Evicted" { // by its node, short of memory or disk: the task may be the cause
		return &job.Failure{Code: "evicted", Message: "the task's pod was evicted: " + p.Status.Message}
	}
	for _, c := range p.Status.Conditions {
		// A pod being drained or preempted gets SIGTERM: herd run-task
		// finishes or gives the task back within its grace. Only a pod that
		// ended without doing either is settled here.
		if c.Type != corev1.DisruptionTarget || c.Status != corev1.ConditionTrue || p.Status.Phase != corev1.PodFailed {
			continue
		}
		return &job.Failure{Code: codeDisrupted, Message: fmt.Sprintf("the task's pod was stopped before it could finish (%s: %s)", c.Reason, c.Message)}
	}
	return nil
}

// codeDisrupted marks a pod taken away through no fault of its task
// (drained, preempted, its node gone): the task goes back unrun, no attempt used.
const codeDisrupted = "disrupted"

func memLimit(p *corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			return " of " + q.String()
		}
	}
	return ""
}

// endedWhy explains a Job that finished while its task still held the
// lease: its pod exited without reporting.
func (d *Dispatcher) endedWhy(kj *batchv1.Job) job.Failure {
	for _, p := range d.jobPods(kj) {
		if f := failureOf(p); f != nil {
			return *f
		}
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
				return job.Failure{Code: "pod_failed", Message: fmt.Sprintf("the task's pod exited with status %d (%s) without reporting; its log has details (kubectl logs job/%s)", t.ExitCode, cmp.Or(t.Reason, "Error"), kj.Name)}
			}
		}
	}
	for _, c := range kj.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobFailed || c.Type == batchv1.JobFailureTarget) {
			// Its pod is gone, but the Job's pod failure policy saw it disrupted.
			if c.Reason == batchv1.JobReasonPodFailurePolicy && strings.Contains(c.Message, string(corev1.DisruptionTarget)) {
				return job.Failure{Code: codeDisrupted, Message: fmt.Sprintf("the task's pod was stopped before it could finish (%s)", c.Message)}
			}
			if c.Reason == batchv1.JobReasonDeadlineExceeded {
				return job.Failure{Code: "deadline", Message: fmt.Sprintf("the task ran past its Job's deadline of %ds and was stopped", ptr.Deref(kj.Spec.ActiveDeadlineSeconds, 0))}
			}
			return job.Failure{Code: "pod_failed", Message: fmt.Sprintf("the task's Job failed (%s: %s)", c.Reason, c.Message)}
		}
	}
	return job.Failure{Code: "pod_failed", Message: fmt.Sprintf("the task's pod ended without reporting to the server (kubectl logs job/%s)", kj.Name)}
}

// JobName is the deterministic name of a task's Job: the task id and the
// lease's fencing token, which counts every time the task was handed out
// (an attempt given back unrun, as after a Job deleted by hand, keeps its
// attempt number but gets a new token, so never an old Job's name).
func JobName(t job.Task) string { return fmt.Sprintf("herd-%s-%d", strings.ToLower(t.ID), t.Fence) }

// heavy tasks decode or encode video: the whole of it, or a chunk's.
func heavy(k job.Kind) bool {
	return k.Encodes() || k == job.KindSearch || k == job.KindThumbnails || k == job.KindVerify
}

// JobFor builds the Job that runs a claimed task.
func (d *Dispatcher) JobFor(c *job.Claimed) *batchv1.Job {
	t := c.Task
	var gpu *GPU
	if d.gpuTask(t) {
		gpu = d.cfg.GPU
	}
	lbl := map[string]string{
		LabelName: "herd", LabelComponent: "task", LabelManagedBy: "herd",
		LabelJob: c.Job.ID, LabelTask: t.ID, LabelKind: string(t.Kind),
	}
	if gpu != nil {
		lbl[LabelGPU] = gpu.Kind
	}
	annot := map[string]string{AnnotLease: c.Lease.Owner, AnnotFence: strconv.FormatInt(c.Lease.Fence, 10)}

	tmpl := &corev1.PodTemplateSpec{}
	switch {
	case gpu != nil && gpu.Template != nil:
		tmpl = gpu.Template.DeepCopy()
	case d.cfg.Template != nil:
		tmpl = d.cfg.Template.DeepCopy()
	}
	tmpl.Labels = merge(tmpl.Labels, lbl)
	tmpl.Annotations = merge(tmpl.Annotations, annot)
	ps := &tmpl.Spec
	ps.RestartPolicy = corev1.RestartPolicyNever
	if ps.ServiceAccountName == "" {
		ps.ServiceAccountName = d.cfg.ServiceAccount
	}
	if ps.AutomountServiceAccountToken == nil {
		ps.AutomountServiceAccountToken = ptr.To(false) // a task needs no Kubernetes API
	}
	ps.TerminationGracePeriodSeconds = ptr.To(int64((d.cfg.Grace + 5*time.Second).Seconds()))
	if ps.SecurityContext == nil {
		ps.SecurityContext = &corev1.PodSecurityContext{
			RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(10001)), RunAsGroup: ptr.To(int64(10001)), FSGroup: ptr.To(int64(10001)),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
	}
	if !slices.ContainsFunc(ps.Volumes, func(v corev1.Volume) bool { return v.Name == "tmp" }) {
		ps.Volumes = append(ps.Volumes, corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}

	i := slices.IndexFunc(ps.Containers, func(c corev1.Container) bool { return c.Name == ContainerName })
	if i < 0 {
		ps.Containers = append(ps.Containers, corev1.Container{Name: ContainerName})
		i = len(ps.Containers) - 1
	}
	ct := &ps.Containers[i]
	if ct.Image == "" {
		ct.Image = d.cfg.Image
	}
	if ct.ImagePullPolicy == "" {
		ct.ImagePullPolicy = d.cfg.ImagePullPolicy
	}
	ct.Command = []string{"herd", "run-task", "--log-format", "json",
		"--task", t.ID, "--lease-owner", c.Lease.Owner, "--fence", strconv.FormatInt(c.Lease.Fence, 10),
		"--grace", d.cfg.Grace.String(), "--heartbeat", (d.cfg.LeaseTTL / 3).String()}
	ct.Args = nil
	ct.Env = append(slices.DeleteFunc(ct.Env, func(e corev1.EnvVar) bool {
		return e.Name == "HERD_SERVER" || e.Name == "HERD_WORKER_TOKEN"
	}),
		corev1.EnvVar{Name: "HERD_SERVER", Value: d.cfg.ServerURL},
		corev1.EnvVar{Name: "HERD_WORKER_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: d.cfg.KeySecret}, Key: SecretKey}}},
	)
	if !slices.ContainsFunc(ct.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" }) {
		ct.VolumeMounts = append(ct.VolumeMounts, corev1.VolumeMount{Name: "tmp", MountPath: "/tmp"})
	}
	if ct.SecurityContext == nil {
		ct.SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true), RunAsNonRoot: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
	}
	ct.Resources = d.resources(t.Kind, gpu, ct.Resources)

	deadline := d.cfg.MinDeadline
	if heavy(t.Kind) || t.Kind == job.KindSplit || t.Kind == job.KindAudio || t.Kind == job.KindStitch {
		deadline = max(deadline, time.Duration(d.cfg.DeadlineFactor*c.Job.Source.Duration*float64(time.Second)))
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: JobName(t), Namespace: d.cfg.Namespace, Labels: lbl, Annotations: annot},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To(int32(0)), // herd owns retries
			ActiveDeadlineSeconds:   ptr.To(int64(deadline.Seconds())),
			TTLSecondsAfterFinished: ptr.To(int32(d.cfg.TTLAfterFinished.Seconds())),
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
				// Drained, preempted or evicted: end the Job, not retry the pod (herd decides).
				{Action: batchv1.PodFailurePolicyActionFailJob, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}}},
				// herd run-task's own exit statuses: herd already knows why.
				{Action: batchv1.PodFailurePolicyActionFailJob, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
					ContainerName: ptr.To(ContainerName), Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{1, 2, 3, 4, 5}}},
			}},
			Template: *tmpl,
		},
	}
}

// resources: the template's, else by kind; GPU tasks also ask for one GPU.
func (d *Dispatcher) resources(k job.Kind, gpu *GPU, r corev1.ResourceRequirements) corev1.ResourceRequirements {
	if len(r.Requests) == 0 && len(r.Limits) == 0 {
		if heavy(k) {
			r.Requests = corev1.ResourceList{corev1.ResourceCPU: d.cfg.EncodeCPU, corev1.ResourceMemory: d.cfg.EncodeMemory}
			r.Limits = corev1.ResourceList{corev1.ResourceMemory: d.cfg.EncodeMemory}
		} else {
			r.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")}
			r.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
		}
	}
	if gpu != nil {
		r.Limits = maps.Clone(r.Limits)
		if r.Limits == nil {
			r.Limits = corev1.ResourceList{}
		}
		r.Limits[corev1.ResourceName(gpu.Resource)] = resource.MustParse("1")
	}
	return r
}

func merge(dst, src map[string]string) map[string]string {
	if dst == nil {
		dst = map[string]string{}
	}
	maps.Copy(dst, src)
	return dst
}
