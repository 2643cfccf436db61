package blob

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Cache keeps sources a worker downloaded, by SHA-256, on local disk, so the
// tasks of one job fetch its source once. Entries unused for MaxAge are
// removed when the next download starts.
type Cache struct {
	dir    string
	maxAge time.Duration
	mu     sync.Mutex // one download at a time: tasks of a job want the same file
}

// DefaultCacheMaxAge is how long the server's and workers' source caches
// keep a file nobody used.
const DefaultCacheMaxAge = 6 * time.Hour

// NewCache opens (creating) a cache folder.
func NewCache(dir string, maxAge time.Duration) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create cache folder: %w", err)
	}
	return &Cache{dir: dir, maxAge: maxAge}, nil
}

// Get returns the path of the file whose SHA-256 is sha, calling fetch to
// download it into part (which may hold an earlier, partial try) when it is
// not cached. What fetch wrote is checked against sha before it is used.
func (c *Cache) Get(ctx context.Context, sha string, fetch func(ctx context.Context, part string) error) (string, error) {
	if len(sha) != 64 || strings.Trim(sha, "0123456789abcdef") != "" {
		return "", fmt.Errorf("no valid source digest %q", sha)
	}
	final := filepath.Join(c.dir, sha)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if _, err := os.Stat(final); err == nil {
		_ = os.Chtimes(final, now, now)
		return final, nil
	}
	c.prune(now)
	part := final + ".part"
	if err := fetch(ctx, part); err != nil {
		return "", err
	}
	got, err := FileSHA256(part)
	if err != nil {
		return "", err
	}
	if got != sha {
		_ = os.Remove(part)
		return "", fmt.Errorf("downloaded source is damaged (SHA-256 differs); it will be fetched again")
	}
	return final, os.Rename(part, final)
}

// prune removes entries not used for maxAge. A task still reading one keeps
// its open file; a later task downloads it again.
func (c *Cache) prune(now time.Time) {
	if c.maxAge <= 0 {
		return
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > c.maxAge {
			_ = os.RemoveAll(filepath.Join(c.dir, e.Name()))
		}
	}
}
