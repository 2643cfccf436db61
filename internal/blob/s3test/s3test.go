// Package s3test starts a throwaway MinIO server for tests: one per test
// binary, on a free loopback port, with its data in a temporary folder, and
// one fresh bucket per test. The MinIO binary comes from HERD_MINIO, else
// ~/.cache/herd/bin/minio (which `make test` builds from the Go module proxy
// at a pinned version), else PATH. Without one, tests that need it skip,
// unless HERD_REQUIRE_MINIO is set (as `make test` does): then they fail.
package s3test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/herdhq/herd/internal/testenv"
)

// Credentials of the throwaway server.
const (
	AccessKey = "herdtest"
	SecretKey = "herdtest-secret-key"
)

var (
	once    sync.Once
	srv     *Server
	initErr error
	seq     atomic.Int64
)

// Server is a running MinIO.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	cmd      *exec.Cmd
	dir      string
}

// Main runs the tests and stops MinIO if one was started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops MinIO if one was started.
func Stop() {
	if srv != nil {
		_ = srv.cmd.Process.Kill()
		_ = srv.cmd.Wait()
		_ = os.RemoveAll(srv.dir)
	}
}

// Bucket is a fresh, empty bucket on the shared server.
type Bucket struct {
	Endpoint string
	Name     string
	Client   *minio.Client
}

// Env is the environment a herd process needs to use the bucket.
func (b Bucket) Env() []string {
	return []string{"AWS_ENDPOINT_URL=" + b.Endpoint, "AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey, "AWS_REGION=us-east-1"}
}

// NewBucket creates a bucket for one test.
func NewBucket(t testing.TB) Bucket {
	t.Helper()
	once.Do(func() { srv, initErr = start() })
	if initErr != nil {
		if os.Getenv("HERD_REQUIRE_MINIO") != "" {
			t.Fatalf("MinIO is required here (HERD_REQUIRE_MINIO is set): %v", initErr)
		}
		t.Skipf("no MinIO to test against (run make test, which builds it): %v", initErr)
	}
	c, err := client(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("t%d-%d", os.Getpid(), seq.Add(1))
	if err := c.MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	return Bucket{Endpoint: srv.Endpoint, Name: name, Client: c}
}

func client(endpoint string) (*minio.Client, error) {
	return minio.New(endpoint[len("http://"):], &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), Region: "us-east-1"})
}

// Binary finds the MinIO server binary.
func Binary() (string, error) {
	if p := os.Getenv("HERD_MINIO"); p != "" {
		return p, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "herd", "bin", "minio")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("minio")
}

func start() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, fmt.Errorf("minio binary not found: %w", err)
	}
	dir, err := os.MkdirTemp("", "herd-minio-")
	if err != nil {
		return nil, err
	}
	for range 5 {
		port, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "server", "--quiet", "--address", fmt.Sprintf("127.0.0.1:%d", port), filepath.Join(dir, "data"))
		cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey, "MINIO_BROWSER=off", "MINIO_UPDATE=off")
		log, err := os.Create(filepath.Join(dir, "log"))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start minio: %w", err)
		}
		s := &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, dir: dir}
		if err := s.waitReady(30 * time.Second); err == nil {
			return s, nil
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		out, _ := os.ReadFile(filepath.Join(dir, "log"))
		initErr = fmt.Errorf("minio did not start: %s", out)
	}
	return nil, initErr
}

func (s *Server) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s", within)
}
