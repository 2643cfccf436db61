package profile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/herdhq/herd/internal/job"
)

// VersionStore keeps every version of every profile: what Versions needs
// of the database.
type VersionStore interface {
	// RecordProfile stores a profile's body under the next version unless
	// the newest stored version has the same digest, and returns the
	// version that holds it. A version is never below atLeast.
	RecordProfile(ctx context.Context, name, digest string, atLeast int, body []byte) (int, error)
	// ProfileVersion returns one stored body (job.ErrNotFound when none).
	ProfileVersion(ctx context.Context, name string, version int) ([]byte, error)
}

// Versions numbers the profiles a server loads and finds any version a
// job was submitted with. The current ones are in Current, the set that
// listings and new jobs use; older ones come from the store, so that an
// edit (or a herd upgrade that changes a built-in) never changes what a
// queued job makes.
type Versions struct {
	Current *Set
	st      VersionStore

	mu  sync.Mutex
	old map[nameVersion]*Profile
}

type nameVersion struct {
	name    string
	version int
}

// NewVersions records set's profiles (see Record) and returns the
// versions with set as Current.
func NewVersions(ctx context.Context, st VersionStore, set *Set) (*Versions, error) {
	v := &Versions{Current: &Set{byName: map[string]*Profile{}}, st: st, old: map[nameVersion]*Profile{}}
	if err := v.Record(ctx, set); err != nil {
		return nil, err
	}
	return v, nil
}

// Record stores next's profiles as versions (a changed profile gets the
// next number; an unchanged one keeps its own, whatever its file says)
// and makes them current.
func (v *Versions) Record(ctx context.Context, next *Set) error {
	numbered := &Set{byName: map[string]*Profile{}}
	for _, p := range next.All() {
		digest, err := p.Digest()
		if err != nil {
			return err
		}
		cp := *p
		body, err := json.Marshal(&cp)
		if err != nil {
			return fmt.Errorf("encode profile %s: %w", p.Name, err)
		}
		n, err := v.st.RecordProfile(ctx, p.Name, digest, p.Version, body)
		if err != nil {
			return fmt.Errorf("record profile %s: %w", p.Name, err)
		}
		cp.Version = n
		numbered.byName[cp.Name] = &cp
	}
	v.Current.Replace(numbered)
	return nil
}

// At returns the profile name as it was at version: the current one, or
// one stored; nil when herd never had it.
func (v *Versions) At(ctx context.Context, name string, version int) (*Profile, error) {
	if p, _ := v.Current.At(ctx, name, version); p != nil {
		return p, nil
	}
	key := nameVersion{name, version}
	v.mu.Lock()
	p, ok := v.old[key]
	v.mu.Unlock()
	if ok {
		return p, nil
	}
	body, err := v.st.ProfileVersion(ctx, name, version)
	if errors.Is(err, job.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read profile %s version %d: %w", name, version, err)
	}
	p = &Profile{}
	if err := json.Unmarshal(body, p); err != nil {
		return nil, fmt.Errorf("decode profile %s version %d: %w", name, version, err)
	}
	p.Version = version
	v.mu.Lock()
	v.old[key] = p
	v.mu.Unlock()
	return p, nil
}

// Digest identifies what a profile makes: the same for two profiles that
// differ only in their version number or where they were read from.
func (p *Profile) Digest() (string, error) {
	cp := *p
	cp.Version, cp.Builtin = 0, false
	b, err := json.Marshal(&cp)
	if err != nil {
		return "", fmt.Errorf("encode profile %s: %w", p.Name, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
