// Package kubetest starts a real kube-apiserver and etcd for tests (envtest
// from controller-runtime), from binaries hack/kube/build.sh builds from the
// Go module proxy and caches outside the repository.
package kubetest

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Root is the repository's root folder.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "kube", "build.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no hack/kube/build.sh above %s", dir)
		}
		dir = parent
	}
}

// Binaries returns the folder holding etcd, kube-apiserver and kubectl
// (what = "api"), or also the controller manager, scheduler and kubelet
// (what = "all"), building them first when the cache lacks them.
func Binaries(what string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command("bash", filepath.Join(root, "hack", "kube", "build.sh"), what)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/kube/build.sh %s: %w\n%s", what, err, tail(stderr.String(), 2000))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1], nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Required reports whether tests must not skip for want of the binaries
// (make test sets HERD_REQUIRE_KUBE=1).
func Required() bool { return os.Getenv("HERD_REQUIRE_KUBE") == "1" }

// Env is a running control plane.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	Bin    string
}

// Start starts etcd and kube-apiserver on free ports; Stop ends them.
func Start() (*Env, error) {
	bin, err := Binaries("api")
	if err != nil {
		return nil, err
	}
	te := &envtest.Environment{BinaryAssetsDirectory: bin}
	cfg, err := te.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	return &Env{Environment: te, Config: cfg, Bin: bin}, nil
}

var (
	shared  *Env
	skipWhy string
)

// Main is a TestMain body: it starts one control plane for the package's
// tests, or records why it could not. Without HERD_REQUIRE_KUBE=1 the
// tests then skip (Need says why); with it they fail.
func Main(m *testing.M) int {
	e, err := Start()
	if err != nil {
		if Required() {
			fmt.Fprintln(os.Stderr, "kubetest:", err)
			return 1
		}
		skipWhy = err.Error()
		return m.Run()
	}
	shared = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "kubetest: stop:", err)
	}
	return code
}

// Need returns the package's control plane, or skips the test.
func Need(t *testing.T) *Env {
	t.Helper()
	if shared == nil {
		t.Skip("no kube-apiserver: " + skipWhy)
	}
	return shared
}

// Logger writes to the test's log.
func Logger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(tlog{t}, nil)) }

type tlog struct{ t *testing.T }

func (w tlog) Write(b []byte) (int, error) { w.t.Log(strings.TrimSpace(string(b))); return len(b), nil }
