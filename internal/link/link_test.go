package link_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/link"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	secret := link.NewSecret()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	tok := link.Sign(secret, "j_1", exp)

	got, err := link.Check(secret, tok, "j_1", now)
	require.NoError(t, err)
	require.Equal(t, exp, got)

	_, err = link.Check(secret, tok, "j_2", now)
	require.ErrorIs(t, err, link.ErrSignature, "another job's files")
	_, err = link.Check(link.NewSecret(), tok, "j_1", now)
	require.ErrorIs(t, err, link.ErrSignature, "a rotated secret")
	_, err = link.Check(secret, tok, "j_1", exp)
	require.ErrorIs(t, err, link.ErrExpired, "at the expiry")
	require.Contains(t, err.Error(), "2026-12-06T13:00:00Z")

	// A later expiry with the old signature is refused: the expiry is signed.
	e, sig, _ := strings.Cut(tok, ".")
	later := link.Sign(secret, "j_1", exp.Add(time.Hour))
	le, _, _ := strings.Cut(later, ".")
	require.NotEqual(t, e, le)
	_, err = link.Check(secret, le+"."+sig, "j_1", now)
	require.ErrorIs(t, err, link.ErrSignature)

	flip := []byte(sig) // one character changed to another of the alphabet
	flip[3] = map[bool]byte{true: 'B', false: 'A'}[flip[3] == 'A']
	for _, bad := range []string{"", ".", tok + "x", "x" + tok, "0" + tok, "-1." + sig, e, e + "." + string(flip[:len(flip)-1]) + "!",
		"99999999999999999999." + sig, e + ".." + sig} {
		_, err := link.Check(secret, bad, "j_1", now)
		require.Error(t, err, "%q", bad)
		require.NotErrorIs(t, err, link.ErrExpired, "%q", bad)
	}
	_, err = link.Check(secret, e+"."+string(flip), "j_1", now)
	require.ErrorIs(t, err, link.ErrSignature)
}

func FuzzCheck(f *testing.F) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	f.Add(link.Sign(secret, "j_1", now.Add(time.Hour)), "j_1")
	f.Add("1.AAAA", "j")
	f.Fuzz(func(t *testing.T, tok, job string) {
		exp, err := link.Check(secret, tok, job, now)
		if err == nil && (link.Sign(secret, job, exp) != tok || !exp.After(now)) {
			t.Fatalf("accepted %q for %q, which Sign did not make", tok, job)
		}
	})
}
