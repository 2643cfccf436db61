package server

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/kube"
)

// TestRunChecksBeforeOpening: a mistake in the configuration stops the
// start before anything is created, the data folder included.
func TestRunChecksBeforeOpening(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"dispatcher", Config{Dispatcher: "slurm"}, `--dispatcher "slurm"`},
		{"blob", Config{Blob: "ftp://x"}, `--blob "ftp://x"`},
		{"admin token", Config{AdminToken: "short"}, "at least 16 characters"},
		{"cors wildcard", Config{CORSOrigins: []string{"*"}}, `--cors-origin "*"`},
		{"cors path", Config{CORSOrigins: []string{"https://site.example/"}}, `--cors-origin "https://site.example/"`},
		{"cors scheme", Config{CORSOrigins: []string{"site.example"}}, `--cors-origin "site.example"`},
		{"link presign on local", Config{LinkPresign: true}, "--link-presign needs --blob s3://"},
		{"kube image", Config{Dispatcher: DispatchKubernetes, Kube: KubeConfig{}}, "--kube-image"},
		{"kube gpu", Config{Dispatcher: DispatchKubernetes, Kube: KubeConfig{
			Config: kube.Config{Image: "herd", ServerURL: "http://herd:8080"}, GPU: "amd"}}, `--kube-gpu "amd"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Data = filepath.Join(t.TempDir(), "data")
			err := Run(context.Background(), tc.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard, nil)
			require.ErrorContains(t, err, tc.want)
			require.NoDirExists(t, tc.cfg.Data)
		})
	}
}
