// Package deploy_test checks the Kubernetes manifests in deploy/kustomize:
// every overlay renders, names only flags, environment variables, ports,
// files and endpoints the herd binary has, runs every pod locked down, and
// applies to a real kube-apiserver (server-side dry run); the dispatcher's
// Role is enough for it and no more.
package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/cli"
	"github.com/herdhq/herd/internal/kube"
	"github.com/herdhq/herd/internal/kube/kubetest"
)

var overlays = []string{"cpu", "nvidia", "intel", "single-node", "ha"}

// render runs kubectl kustomize on an overlay.
func render(t *testing.T, bin, overlay string) []byte {
	t.Helper()
	// kubectl reads the manifests in another process: read them here too,
	// so that go test's cache knows a changed manifest changes the result.
	require.NoError(t, filepath.WalkDir("kustomize", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			_, err = os.ReadFile(p)
		}
		return err
	}))
	out, err := exec.Command(filepath.Join(bin, "kubectl"), "kustomize", filepath.Join("kustomize", "overlays", overlay)).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return out
}

// docs splits a rendered stream into objects.
func docs(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, d := range regexp.MustCompile(`(?m)^---$`).Split(string(b), -1) {
		if strings.TrimSpace(d) == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(d), &m))
		out = append(out, m)
	}
	return out
}

func decode[T any](t *testing.T, m map[string]any) *T {
	t.Helper()
	b, err := yaml.Marshal(m)
	require.NoError(t, err)
	var v T
	require.NoError(t, yaml.UnmarshalStrict(b, &v))
	return &v
}

func kubectlBin(t *testing.T) string {
	t.Helper()
	bin, err := kubetest.Binaries("api")
	if err != nil {
		if kubetest.Required() {
			t.Fatal(err)
		}
		t.Skip("no kubectl: " + err.Error())
	}
	return bin
}

// podSpec is one pod template found in the manifests.
type podSpec struct {
	where string
	spec  corev1.PodSpec
	long  bool // a Deployment's pod: it must have probes
}

// envByName: HERD_* names a command reads: each flag's HERD_<FLAG>, and the
// names the CLI reads itself.
func envNames(t *testing.T, cmd *cobra.Command) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	add := func(f *pflag.Flag) { names["HERD_"+strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))] = true }
	cmd.Flags().VisitAll(add)
	cmd.InheritedFlags().VisitAll(add)
	src, err := filepath.Glob(filepath.Join("..", "internal", "cli", "*.go"))
	require.NoError(t, err)
	for _, f := range src {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range regexp.MustCompile(`"(HERD_[A-Z0-9_]*[A-Z0-9])"`).FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
	}
	return names
}

func lookup(c *cobra.Command, name string) *pflag.Flag {
	if f := c.Flags().Lookup(name); f != nil {
		return f
	}
	return c.InheritedFlags().Lookup(name)
}

func subcommand(t *testing.T, root *cobra.Command, args []string) *cobra.Command {
	t.Helper()
	require.NotEmpty(t, args, "a herd container names its subcommand")
	c, _, err := root.Find(args[:1])
	require.NoError(t, err)
	require.NotEqual(t, root, c, "herd has no subcommand %q", args[0])
	return c
}

// TestManifests: every overlay renders; each herd container's subcommand,
// flags and HERD_* variables exist in the binary; probe paths are served;
// files the configuration names are mounted, and pod templates parse; every
// pod runs as non-root with a read-only root, no privilege escalation, no
// capabilities, seccomp RuntimeDefault, requests and limits.
func TestManifests(t *testing.T) {
	bin := kubectlBin(t)
	root := cli.Command()
	routes := map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true} // the worker's health port serves these three
	for _, r := range new(api.Server).Routes() {
		routes[r.Path] = true
	}
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			objs := docs(t, render(t, bin, overlay))
			configMaps := map[string]map[string]string{}
			var pods []podSpec
			kinds := map[string]int{}
			for _, o := range objs {
				kind := o["kind"].(string)
				kinds[kind]++
				name := o["metadata"].(map[string]any)["name"].(string)
				switch kind {
				case "ConfigMap":
					configMaps[name] = decode[corev1.ConfigMap](t, o).Data
				case "Deployment":
					d := decode[appsv1.Deployment](t, o)
					pods = append(pods, podSpec{"Deployment " + name, d.Spec.Template.Spec, true})
				case "CronJob":
					c := decode[batchv1.CronJob](t, o)
					pods = append(pods, podSpec{"CronJob " + name, c.Spec.JobTemplate.Spec.Template.Spec, false})
				}
			}
			require.Equal(t, 1, kinds["Role"])
			require.Equal(t, 2, kinds["NetworkPolicy"], "for workers and for the server")
			require.GreaterOrEqual(t, kinds["PodDisruptionBudget"], 1)
			require.Equal(t, 1, kinds["CronJob"], "the backup")

			for _, p := range pods {
				checkPod(t, p, root, routes, configMaps)
			}
		})
	}
}

// configMapFor finds the generated ConfigMap whose name starts with base.
func configMapFor(cms map[string]map[string]string, base string) (map[string]string, bool) {
	for n, d := range cms {
		if n == base || strings.HasPrefix(n, base+"-") {
			return d, true
		}
	}
	return nil, false
}

func checkPod(t *testing.T, p podSpec, root *cobra.Command, routes map[string]bool, cms map[string]map[string]string) {
	t.Helper()
	ps := p.spec
	psc := ps.SecurityContext
	require.NotNil(t, psc, p.where)
	require.True(t, psc.RunAsNonRoot != nil && *psc.RunAsNonRoot, "%s: runAsNonRoot", p.where)
	require.True(t, psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault, "%s: seccomp", p.where)
	for _, c := range ps.Containers {
		where := p.where + " container " + c.Name
		sc := c.SecurityContext
		require.NotNil(t, sc, where)
		require.True(t, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "%s: readOnlyRootFilesystem", where)
		require.True(t, sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation", where)
		require.True(t, sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL"), "%s: drop ALL", where)
		require.NotEmpty(t, c.Resources.Requests, "%s: requests", where)
		require.NotEmpty(t, c.Resources.Limits, "%s: limits", where)
		if p.long {
			require.NotNil(t, c.LivenessProbe, "%s: liveness probe", where)
			require.NotNil(t, c.ReadinessProbe, "%s: readiness probe", where)
		}
		if !strings.HasPrefix(c.Image, "herd") {
			continue
		}
		sub := subcommand(t, root, c.Args)
		for _, a := range c.Args[1:] {
			if f, ok := strings.CutPrefix(a, "--"); ok {
				f, _, _ = strings.Cut(f, "=")
				require.NotNil(t, lookup(sub, f), "%s: herd %s has no --%s", where, sub.Name(), f)
			}
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		for _, ef := range c.EnvFrom {
			require.NotNil(t, ef.ConfigMapRef, where)
			data, ok := configMapFor(cms, ef.ConfigMapRef.Name)
			require.True(t, ok, "%s: no ConfigMap %s", where, ef.ConfigMapRef.Name)
			for k, v := range data {
				env[k] = v
			}
		}
		known := envNames(t, sub)
		for name, v := range env {
			if strings.HasPrefix(name, "HERD_") {
				require.True(t, known[name], "%s: herd %s reads no %s", where, sub.Name(), name)
				if f := lookup(sub, strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "HERD_"), "_", "-"))); f != nil && v != "" {
					require.NoError(t, f.Value.Set(v), "%s: %s=%q is not a valid --%s", where, name, v, f.Name)
				}
			}
		}
		// Ports: what herd listens on is what the container declares.
		for _, addrVar := range []string{"HERD_ADDR", "HERD_HEALTH_ADDR"} {
			if a, ok := env[addrVar]; ok {
				_, port, _ := strings.Cut(a, ":")
				require.True(t, slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return fmt.Sprint(cp.ContainerPort) == port }),
					"%s: %s=%s but no containerPort %s", where, addrVar, a, port)
			}
		}
		for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if pr != nil && pr.HTTPGet != nil {
				require.True(t, routes[pr.HTTPGet.Path], "%s: herd serves no %s", where, pr.HTTPGet.Path)
				require.True(t, slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == pr.HTTPGet.Port.String() }),
					"%s: probe port %s is not a named container port", where, pr.HTTPGet.Port.String())
			}
		}
		// Files the configuration names are in a mounted ConfigMap, and parse.
		for _, fileVar := range []string{"HERD_KUBE_POD_TEMPLATE", "HERD_KUBE_GPU_POD_TEMPLATE"} {
			path, ok := env[fileVar]
			if !ok {
				continue
			}
			data := mountedFile(t, ps, c, cms, path)
			require.NotNil(t, data, "%s: %s=%s is not in a mounted ConfigMap", where, fileVar, path)
			f := filepath.Join(t.TempDir(), "pod.yaml")
			require.NoError(t, os.WriteFile(f, []byte(*data), 0o600))
			tmpl, err := kube.LoadTemplate(f)
			require.NoError(t, err, "%s: %s", where, path)
			for _, tc := range tmpl.Spec.Containers {
				if tc.Name != kube.ContainerName {
					continue
				}
				runTask := subcommand(t, root, []string{"run-task"})
				knownTask := envNames(t, runTask)
				for _, e := range tc.Env {
					if strings.HasPrefix(e.Name, "HERD_") {
						require.True(t, knownTask[e.Name], "%s: herd run-task reads no %s", path, e.Name)
					}
				}
			}
		}
	}
}

func mountedFile(t *testing.T, ps corev1.PodSpec, c corev1.Container, cms map[string]map[string]string, path string) *string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range ps.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				if data, ok := configMapFor(cms, v.ConfigMap.Name); ok {
					if s, ok := data[rel]; ok {
						return &s
					}
				}
			}
		}
	}
	return nil
}
