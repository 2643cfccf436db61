package kube

import (
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// Connect returns a client for the cluster herd runs in (in-cluster
// config), or the one a kubeconfig names: path, else $KUBECONFIG, else
// ~/.kube/config. It also returns that config's namespace.
func Connect(path string) (kubernetes.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes dispatcher: no cluster to talk to (run herd in a pod with a service account, or pass --kubeconfig): %w", err)
	}
	rc.UserAgent = "herd"
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, "", err
	}
	return cs, ns, nil
}

// LoadTemplate reads a pod template from a YAML file (a PodTemplateSpec:
// metadata and spec), refusing unknown fields.
func LoadTemplate(path string) (*corev1.PodTemplateSpec, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pod template: %w", err)
	}
	var t corev1.PodTemplateSpec
	if err := yaml.UnmarshalStrict(b, &t); err != nil {
		return nil, fmt.Errorf("pod template %s: %w (it is a PodTemplateSpec: metadata and spec)", path, err)
	}
	return &t, nil
}
