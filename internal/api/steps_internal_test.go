package api

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/protocol"
)

// An attempt that asks for upload URLs again and again (straight to S3)
// is held to one budget for all its files: asking again for the same file
// replaces its size, new files add theirs.
func TestPlannedUploadsShareOneBudget(t *testing.T) {
	t.Parallel()
	var b budgets
	const limit = 100
	require.True(t, b.plan("w-t1-1-encode", []protocol.StagedFile{{Path: "a", Size: 60}}, limit))
	require.True(t, b.plan("w-t1-1-encode", []protocol.StagedFile{{Path: "a", Size: 60}}, limit), "a retry of the same plan")
	require.False(t, b.plan("w-t1-1-encode", []protocol.StagedFile{{Path: "b", Size: 60}}, limit), "more files past the budget")
	require.True(t, b.plan("w-t1-1-encode", []protocol.StagedFile{{Path: "b", Size: 40}}, limit))
	require.True(t, b.plan("w-t2-1-encode", []protocol.StagedFile{{Path: "a", Size: 100}}, limit), "another attempt has its own")
	b.forget("w-t1-1-encode")
	require.True(t, b.plan("w-t1-1-encode", []protocol.StagedFile{{Path: "c", Size: 100}}, limit), "committed: a new budget")
}
