package apikey_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/apikey"
)

// A key is its prefix and 256 random bits; only its hash is stored, and the
// hash of a key never changes (stored hashes must keep matching).
func TestNewAndHash(t *testing.T) {
	t.Parallel()
	a, b := apikey.New("herd_adm_"), apikey.New("herd_adm_")
	require.True(t, strings.HasPrefix(a, "herd_adm_"))
	require.Len(t, a, len("herd_adm_")+43)
	require.NotEqual(t, a, b)
	require.Equal(t, "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881", apikey.Hash("x"))
}
