#!/usr/bin/env bash
# Installs what herd needs when it is missing (Debian/Ubuntu packages):
#   scripts/install-deps.sh        ffmpeg and ffprobe, for herd itself
#   scripts/install-deps.sh test   also PostgreSQL, MinIO, etcd, kube-apiserver and kubectl,
#                                  for the tests' throwaway database clusters, S3-compatible
#                                  servers and Kubernetes control planes; as root on Linux also
#                                  containerd, runc, the CNI plugins and the other Kubernetes
#                                  binaries, for the real-node test (make e2e-kube); and
#                                  chromium, which the web UI's browser tests drive headless; and
#                                  HandBrakeCLI, which the benchmarks compare herd with; and a
#                                  static ffmpeg with libvmaf (npm registry) that the VMAF tests
#                                  measure with
# Safe to run again.
set -euo pipefail
missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
node=""
[ "${1:-}" = test ] && [ "$(id -u)" -eq 0 ] && [ "$(uname -s)" = Linux ] && node=1
if [ "${1:-}" = test ]; then
  compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
  command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1 || missing+=(curl)
  command -v HandBrakeCLI >/dev/null 2>&1 || missing+=(handbrake-cli)
  if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    # Debian packages chromium; Ubuntu names it chromium-browser.
    if grep -qs '^ID=ubuntu' /etc/os-release; then missing+=(chromium-browser); else missing+=(chromium); fi
  fi
fi
if [ -n "$node" ]; then
  command -v containerd >/dev/null 2>&1 || missing+=(containerd)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
fi
if ! command -v go >/dev/null 2>&1; then
  echo "Go is not installed: install Go 1.26 or newer (https://go.dev/doc/install), then run make again." >&2
  exit 1
fi
if [ "${1:-}" = test ]; then
  # MinIO (an S3-compatible server) is built from the Go module proxy at a
  # pinned version into a cache outside the repository, once (about 2 minutes).
  # It builds beside the Kubernetes binaries below: each build spends part
  # of its time downloading modules, which the other's compiling fills.
  MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
  MINIO_BIN="${HERD_MINIO:-$HOME/.cache/herd/bin/minio}"
  minio=""
  if [ ! -x "$MINIO_BIN" ]; then
    echo "Building MinIO $MINIO_VERSION into $(dirname "$MINIO_BIN") for the S3 tests (once) ..." >&2
    mkdir -p "$(dirname "$MINIO_BIN")"
    (cd / && GOBIN="$(dirname "$MINIO_BIN")" GOFLAGS= go install "github.com/minio/minio@$MINIO_VERSION") &
    minio=$!
  fi
  # etcd, kube-apiserver and kubectl for the Kubernetes API tests, built from
  # the module proxy into a cache keyed by version (about 4 minutes, once);
  # for the real node also the controller manager, scheduler and kubelet
  # (about 2 minutes more).
  what=api
  [ -n "$node" ] && what=all
  kube=0
  "$(dirname "$0")/../hack/kube/build.sh" $what >/dev/null || kube=$?
  if [ -n "$minio" ] && ! wait "$minio"; then
    echo "Could not build MinIO $MINIO_VERSION (go install github.com/minio/minio@$MINIO_VERSION)." >&2
    exit 1
  fi
  if [ "$kube" -ne 0 ]; then
    echo "Could not build the Kubernetes test binaries (hack/kube/build.sh $what)." >&2
    exit 1
  fi
fi

# The measuring ffmpeg for the VMAF tests: a static ffmpeg 4.1 built with
# libvmaf 1.x, as the npm registry ships it (@ffmpeg-installer/linux-x64
# 4.1.0, 23 MB), checked against the registry's SHA-512. herd only
# measures with it (raw frames its own ffmpeg decodes); it never encodes.
fetch_vmaf_ffmpeg() {
  local bin="${HERD_VMAF_FFMPEG:-$HOME/.cache/herd/bin/ffmpeg-4.1.0-vmaf/ffmpeg}"
  [ -x "$bin" ] && return 0
  [ "$(uname -sm)" = "Linux x86_64" ] || return 0
  echo "Fetching a measuring ffmpeg with libvmaf into $(dirname "$bin") for the VMAF tests (once) ..." >&2
  local tmp url sum
  tmp="$(mktemp -d)"
  url=https://registry.npmjs.org/@ffmpeg-installer/linux-x64/-/linux-x64-4.1.0.tgz
  sum=6390568462d4fd6a508ce02b3488170f7cf99b1c5d57c738d42f94d799ec139c85f2d55c74219eb79ccfb39672dd36ba6d4ee1686a48cebcaeb6a086400fd6f0
  if command -v curl >/dev/null 2>&1; then curl -fsSL -o "$tmp/p.tgz" "$url"; else wget -q -O "$tmp/p.tgz" "$url"; fi
  if [ "$(sha512sum "$tmp/p.tgz" | cut -d' ' -f1)" != "$sum" ]; then
    echo "The measuring ffmpeg from $url does not match its SHA-512." >&2
    exit 1
  fi
  tar -xzf "$tmp/p.tgz" -C "$tmp" package/ffmpeg
  mkdir -p "$(dirname "$bin")"
  install -m 0755 "$tmp/package/ffmpeg" "$bin"
  rm -rf "$tmp"
}

if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "Please install: ${missing[*]} (herd drives ffmpeg as a subprocess)." >&2
    exit 1
  fi
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "Installing ${missing[*]} with apt-get ..." >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "${1:-}" = test ] && fetch_vmaf_ffmpeg
exit 0
