// Package pgtest starts a throwaway PostgreSQL cluster for tests: initdb in a
// temporary folder, pg_ctl on a free loopback port, one fresh database per
// test, torn down when the test binary ends. It uses Debian's postgresql
// package (`make test` installs it). Without it, tests that need PostgreSQL
// skip, unless HERD_REQUIRE_POSTGRES is set (as `make test` does), in which
// case they fail.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver

	"github.com/herdhq/herd/internal/testenv"
)

var (
	once    sync.Once
	cluster *Cluster
	initErr error
	dbSeq   atomic.Int64
)

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	bin  string
	dir  string
	port int
	cred *syscall.Credential
}

// Main runs the tests and stops the cluster if one was started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the cluster if one was started (for a TestMain that does more than Main).
func Stop() {
	if cluster != nil {
		cluster.stop()
	}
}

// DSN returns the URL of a new, empty database on the shared throwaway cluster.
func DSN(t testing.TB) string {
	t.Helper()
	dsn, err := NewDatabase()
	if errors.Is(err, errNoCluster) {
		if os.Getenv("HERD_REQUIRE_POSTGRES") != "" {
			t.Fatalf("PostgreSQL is required here (HERD_REQUIRE_POSTGRES is set): %v", err)
		}
		t.Skipf("no PostgreSQL to test against (install Debian's postgresql package, or run make test): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

var errNoCluster = errors.New("no PostgreSQL cluster")

// NewDatabase starts the shared throwaway cluster if it is not running yet
// and returns the URL of a new, empty database on it (for programs that are
// not tests: the benchmarks). Stop ends the cluster.
func NewDatabase() (string, error) {
	once.Do(func() { cluster, initErr = start() })
	if initErr != nil {
		return "", fmt.Errorf("%w: %w", errNoCluster, initErr)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	admin, err := sql.Open("pgx", cluster.url("postgres"))
	if err != nil {
		return "", fmt.Errorf("open postgres: %w", err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return cluster.url(name), nil
}

func (c *Cluster) url(db string) string {
	return fmt.Sprintf("postgres://herd@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

func findBin() (string, error) {
	if dir := os.Getenv("HERD_PG_BIN"); dir != "" {
		return dir, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) == 0 {
		if p, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", fmt.Errorf("pg_ctl not found")
	}
	sort.Strings(matches)
	return filepath.Dir(matches[len(matches)-1]), nil
}

func start() (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herd-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, dir: dir}
	// PostgreSQL refuses to run as root: run it as the package's postgres user.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and there is no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", "herd", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	for range 5 {
		if c.port, err = testenv.FreePort(); err != nil {
			return nil, err
		}
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", c.port, dir)
		out, err := c.run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start")
		if err == nil {
			return c, c.waitReady()
		}
		initErr = fmt.Errorf("pg_ctl start: %w: %s", err, out)
	}
	return nil, initErr
}

func (c *Cluster) waitReady() error {
	db, err := sql.Open("pgx", c.url("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not answer: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

func (c *Cluster) stop() {
	_, _ = c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
	_ = os.RemoveAll(c.dir)
}
