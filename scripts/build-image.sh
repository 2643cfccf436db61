#!/usr/bin/env bash
# Build the herd container image without a Docker engine or a registry: the
# root file system from scripts/image-rootfs.sh, written as a `docker save`
# archive by hack/image (go-containerregistry). The Dockerfile builds the
# same image where Docker exists; keep the two in step (a test compares them).
#
#   scripts/build-image.sh [OUT.tar] [TAG]      # default bin/herd-image.tar, herd:$(git describe)
#
# Load it with `docker load -i`, `podman load -i` or `ctr -n k8s.io images import`.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
out=$(realpath -m "${1:-bin/herd-image.tar}")
tag=${2:-herd:${version}}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$(dirname "$out")"
scripts/image-rootfs.sh "$root" "$version"
(cd hack/image && ${GO:-go} run . -rootfs "$root" -tag "$tag" -o "$out" \
	-user 10001:10001 -owned data -owned tmp -workdir /data -volume /data -port 8080 \
	-entrypoint /usr/local/bin/herd -cmd serve \
	-env HERD_DATA=/data -env HERD_ADDR=0.0.0.0:8080 -env TMPDIR=/tmp \
	-label org.opencontainers.image.title=herd -label "org.opencontainers.image.version=${version}" \
	-label org.opencontainers.image.source=https://github.com/herdhq/herd)
