package deploy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/kube"
	"github.com/herdhq/herd/internal/kube/kubetest"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// kubectl runs kubectl against the test control plane as an admin.
type kubectl struct {
	t          *testing.T
	env        *kubetest.Env
	bin        string
	kubeconfig string
}

func newKubectl(t *testing.T) *kubectl {
	t.Helper()
	env := kubetest.Need(t)
	u, err := env.ControlPlane.AddUser(envtest.User{Name: "deploy-test", Groups: []string{"system:masters"}}, nil)
	require.NoError(t, err)
	kc, err := u.KubeConfig()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(path, kc, 0o600))
	return &kubectl{t: t, env: env, bin: filepath.Join(env.Bin, "kubectl"), kubeconfig: path}
}

func (k *kubectl) run(stdin []byte, args ...string) string {
	k.t.Helper()
	cmd := exec.Command(k.bin, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	out, err := cmd.CombinedOutput()
	require.NoError(k.t, err, "kubectl %s: %s", strings.Join(args, " "), out)
	return string(out)
}

func (k *kubectl) ensureNamespace(name string) {
	k.run([]byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+name+"\n"), "apply", "-f", "-")
}

// TestOverlaysApply: every overlay is accepted by a real kube-apiserver
// (server-side apply, dry run), CRD-backed kinds included.
func TestOverlaysApply(t *testing.T) {
	k := newKubectl(t)
	k.run(nil, "apply", "--server-side", "-f", filepath.Join("testdata", "crds.yaml"))
	k.run(nil, "wait", "--for", "condition=established", "--timeout=60s", "crd/podmonitors.monitoring.coreos.com", "crd/scaledobjects.keda.sh")
	k.ensureNamespace("herd")
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			out := k.run(render(t, k.env.Bin, overlay), "apply", "--server-side", "--dry-run=server", "--field-manager=herd-test", "-f", "-")
			require.Contains(t, out, "deployment.apps/herd-server serverside-applied (server dry run)")
		})
	}
}

// TestRBAC: running as the herd service account with only the shipped
// Role, the dispatcher does its whole job (keeps both key Secrets, creates,
// watches and deletes Jobs, reads pods), and the account can do nothing
// else the test asks about.
func TestRBAC(t *testing.T) {
	k := newKubectl(t)
	const ns = "herd" // the namespace the manifests name
	k.ensureNamespace(ns)
	var rbac []string
	for _, o := range docs(t, render(t, k.env.Bin, "single-node")) {
		kind, name := o["kind"], o["metadata"].(map[string]any)["name"]
		if kind == "Role" || kind == "RoleBinding" || (kind == "ServiceAccount" && name == "herd") {
			b, err := yaml.Marshal(o)
			require.NoError(t, err)
			rbac = append(rbac, string(b))
		}
	}
	require.Len(t, rbac, 3, "the Role, its binding and the server's service account")
	k.run([]byte(strings.Join(rbac, "\n---\n")), "apply", "-f", "-")

	sa := rest.CopyConfig(k.env.Config)
	sa.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":herd",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	cs, err := kubernetes.NewForConfig(sa)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	st, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "herd.db"))
	require.NoError(t, err)
	defer st.Close()
	sig := &queue.Signal{}
	q := queue.New(st, sig, queue.Config{})
	log := kubetest.Logger(t)
	// The pull workers' key: created, then (revoked) replaced.
	require.NoError(t, kube.EnsureWorkerKey(ctx, cs, st, ns, "herd-worker-key", "pool", 1, log))
	require.NoError(t, st.SetWorkerState(ctx, "pool", store.WorkerRevoked, time.Now()))
	require.NoError(t, kube.EnsureWorkerKey(ctx, cs, st, ns, "herd-worker-key", "pool", 1, log))

	// The Lease that makes it the one server that dispatches: taken, then given up.
	lctx, stopLead := context.WithCancel(ctx)
	var led bool
	require.NoError(t, kube.Lead(lctx, cs, ns, "rbac-test", log, func(context.Context) error { led = true; stopLead(); return nil }))
	require.True(t, led, "the service account can take the Lease")
	l, err := cs.CoordinationV1().Leases(ns).Get(ctx, kube.LeaseName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Empty(t, *l.Spec.HolderIdentity, "and give it up")

	d, err := kube.New(kube.Config{Namespace: ns, Image: "herd:test", ServerURL: "http://herd:8080"}, cs, st, q, sig, log)
	require.NoError(t, err)
	require.NoError(t, d.Start(ctx), "list and watch Jobs and pods, keep the task key")
	a, err := st.PutAsset(ctx, job.Asset{ID: "a1", Name: "x.mp4", Size: 1, SHA256: "s1", Key: "sources/s1", CreatedAt: time.Now()})
	require.NoError(t, err)
	j := job.Job{ID: "j1", Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: "i1", Source: job.Source{AssetID: a.ID, SHA256: "s1"}}
	_, _, err = st.CreateJob(ctx, j, []job.Task{{ID: "t1", Kind: job.KindProbe, MaxAttempts: 3}}, time.Now())
	require.NoError(t, err)
	require.NoError(t, d.Sync(ctx))
	_, err = cs.BatchV1().Jobs(ns).Get(ctx, "herd-t1-1", metav1.GetOptions{})
	require.NoError(t, err, "the dispatcher created the Job")
	_, err = st.CancelJob(ctx, "j1", time.Now())
	require.NoError(t, err)
	deadline := time.Now().Add(15 * time.Second)
	for {
		require.NoError(t, d.Sync(ctx))
		if _, err := cs.BatchV1().Jobs(ns).Get(ctx, "herd-t1-1", metav1.GetOptions{}); err != nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "the canceled task's Job is deleted")
		time.Sleep(50 * time.Millisecond)
	}

	// And nothing more.
	for _, a := range []authv1.ResourceAttributes{
		{Verb: "create", Resource: "pods"},
		{Verb: "delete", Resource: "pods"},
		{Verb: "create", Resource: "pods", Subresource: "exec"},
		{Verb: "list", Resource: "secrets"},
		{Verb: "get", Resource: "secrets", Name: "someone-elses"},
		{Verb: "update", Resource: "secrets", Name: "someone-elses"},
		{Verb: "delete", Resource: "secrets", Name: "herd-task-key"},
		{Verb: "update", Group: "batch", Resource: "jobs"},
		{Verb: "patch", Group: "batch", Resource: "jobs"},
		{Verb: "create", Group: "batch", Resource: "cronjobs"},
		{Verb: "create", Group: "apps", Resource: "deployments"},
		{Verb: "update", Resource: "configmaps"},
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "roles"},
		{Verb: "create", Group: "batch", Resource: "jobs", Namespace: "default"},
		{Verb: "list", Resource: "pods", Namespace: "kube-system"},
		{Verb: "list", Resource: "nodes", Namespace: ""},
		{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Name: "someone-elses"},
		{Verb: "delete", Group: "coordination.k8s.io", Resource: "leases", Name: kube.LeaseName},
	} {
		if a.Namespace == "" && a.Resource != "nodes" {
			a.Namespace = ns
		}
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authv1.SelfSubjectAccessReview{
			Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a}}, metav1.CreateOptions{})
		require.NoError(t, err)
		require.False(t, r.Status.Allowed, "the herd service account may %s", fmt.Sprintf("%s %s/%s %s in %q", a.Verb, a.Group, a.Resource, a.Name, a.Namespace))
	}
}
