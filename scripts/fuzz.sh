#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (go test runs one
# target per package at a time). A failing input is written to the
# package's testdata/fuzz/<Target>/ and from then on runs in `make test`
# as a seed: commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-2m}
GO=${GO:-go}
found=0
while IFS=: read -r file name; do
	pkg=./$(dirname "$file")
	echo "== $name in $pkg for $FUZZTIME"
	"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"
	found=$((found + 1))
done < <(grep -rEo --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' cmd internal | sed -E 's/:func /:/' | sort)
echo "== $found fuzz targets passed, $FUZZTIME each"
