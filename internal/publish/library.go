package publish

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/safefs"
)

// Library writes finished files into a media library folder tree.
type Library struct {
	Root     string
	Kind     string
	uid, gid int // -1: leave as is
	mode     os.FileMode
}

// NewLibrary checks a library publisher's settings: its owner and group
// must exist here.
func NewLibrary(p config.Publisher) (*Library, error) {
	l := &Library{Root: p.Path, Kind: p.Kind, uid: -1, gid: -1, mode: 0o644}
	if l.Kind == "" {
		l.Kind = KindAuto
	}
	if p.Mode != "" {
		m, err := strconv.ParseUint(p.Mode, 8, 32)
		if err != nil {
			return nil, fmt.Errorf("publisher %s: mode %q is not octal", p.Name, p.Mode)
		}
		l.mode = os.FileMode(m)
	}
	if p.Owner != "" {
		u, err := user.Lookup(p.Owner)
		if err != nil {
			return nil, fmt.Errorf("publisher %s: no user %q on this machine", p.Name, p.Owner)
		}
		l.uid, _ = strconv.Atoi(u.Uid)
	}
	if p.Group != "" {
		g, err := user.LookupGroup(p.Group)
		if err != nil {
			return nil, fmt.Errorf("publisher %s: no group %q on this machine", p.Name, p.Group)
		}
		l.gid, _ = strconv.Atoi(g.Gid)
	}
	return l, nil
}

// Put writes src as rel inside the library: under a hidden temporary name,
// synced, given its owner and mode, then renamed into place. A file already
// there is replaced as a directory entry, never rewritten, so a hard link
// to it elsewhere keeps the old content. Every step goes through the
// library's root, so a symbolic link (or a folder swapped for one) never
// leads the write outside the library. It returns the final path.
func (l *Library) Put(ctx context.Context, rel string, src io.Reader) (string, error) {
	name := filepath.FromSlash(rel)
	if !filepath.IsLocal(name) {
		return "", fmt.Errorf("library path %q leaves the library", rel)
	}
	if err := os.MkdirAll(l.Root, 0o755); err != nil {
		return "", fmt.Errorf("create library folder: %w", err)
	}
	root, err := os.OpenRoot(l.Root)
	if err != nil {
		return "", fmt.Errorf("open the library folder: %w", err)
	}
	defer root.Close()
	dir := filepath.Dir(name)
	if err := root.MkdirAll(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return "", fmt.Errorf("create library folder %s: %w", filepath.ToSlash(dir), err)
		}
		return "", fmt.Errorf("create library folder %s: %w (herd does not follow a symbolic link out of the library: if a folder on the way is one, make it a real folder)", filepath.ToSlash(dir), err)
	}
	tmp, tmpName, err := safefs.CreateTemp(root, dir, tempPattern(), 0o600)
	if err != nil {
		return "", fmt.Errorf("write into the library: %w", err)
	}
	defer root.Remove(tmpName) // after the rename there is nothing left to remove
	_, err = io.Copy(tmp, readerCtx{ctx, src})
	if err == nil {
		err = tmp.Chmod(l.mode)
	}
	if err == nil && (l.uid >= 0 || l.gid >= 0) {
		if err = tmp.Chown(l.uid, l.gid); err != nil {
			err = fmt.Errorf("%w (herd needs to run as root, or as the owner, to set owner/group)", err)
		}
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write %s into the library: %w", rel, err)
	}
	if err := root.Rename(tmpName, name); err != nil {
		return "", fmt.Errorf("move %s into place: %w", rel, err)
	}
	return filepath.Join(l.Root, name), safefs.SyncDir(root, dir)
}

// Temporary names of library writes: .herd-HOST.RUN-*.tmp, so a sweep
// knows which files this machine's earlier runs left behind.
var (
	tempHost = func() string {
		h, _ := os.Hostname()
		return strings.NewReplacer("/", "_", "-", "_").Replace(cmp.Or(h, "localhost"))
	}()
	tempRun = strconv.FormatInt(time.Now().UnixNano(), 36) + "." + strconv.Itoa(os.Getpid())
)

func tempPattern() string { return ".herd-" + tempHost + "." + tempRun + "-*.tmp" }

// staleAfter is when another machine's temporary file counts as abandoned.
const staleAfter = 24 * time.Hour

// Sweep removes temporary files that writes cut short by a crash left in
// the library: those of this machine's earlier runs, and any a day old (a
// machine sharing the library that never came back). It returns how many.
func (l *Library) Sweep(ctx context.Context) (int, error) {
	n := 0
	ours, mine := ".herd-"+tempHost+".", ".herd-"+tempHost+"."+tempRun+"-"
	root, err := os.OpenRoot(l.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer root.Close()
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		name := d.Name()
		if d.IsDir() || !strings.HasPrefix(name, ".herd-") || !strings.HasSuffix(name, ".tmp") || strings.HasPrefix(name, mine) {
			return nil
		}
		old := strings.HasPrefix(name, ours)
		if !old {
			info, err := d.Info()
			old = err == nil && time.Since(info.ModTime()) > staleAfter
		}
		if old && root.Remove(filepath.FromSlash(p)) == nil {
			n++
		}
		return nil
	})
	return n, err
}

type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
