#!/usr/bin/env bash
# Builds etcd and the Kubernetes control-plane and node binaries from the Go
# module proxy (no release downloads, no Docker) and caches them outside the
# repository, keyed by version. Prints the folder holding them.
#
# Usage: hack/kube/build.sh [all|api]    api: etcd, kube-apiserver and kubectl only (envtest)
# Env:   HERD_KUBE_VERSION (1.35.4), HERD_CACHE (~/.cache/herd)
#
# k8s.io/kubernetes points every k8s.io/* staging module at ./staging with
# replace directives, which Go ignores in a dependency; the scratch module
# below pins each staging module to its published v0.X.Y instead.
set -euo pipefail
V=${HERD_KUBE_VERSION:-1.35.4}
CACHE=${HERD_CACHE:-$HOME/.cache/herd}
OUT=$CACHE/kube/v$V
W=$CACHE/kube/build-v$V
WHAT=${1:-all}
case $WHAT in
api) CMDS="kube-apiserver kubectl" ;;
all) CMDS="kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet" ;;
*) echo "usage: $0 [all|api]" >&2; exit 2 ;;
esac
missing=""
for c in etcd $CMDS; do [ -x "$OUT/$c" ] || missing="$missing $c"; done
if [ -z "$missing" ]; then echo "$OUT"; exit 0; fi

mkdir -p "$W/cmd/etcd" "$OUT"
cd "$W"
KMOD=$(go mod download -json "k8s.io/kubernetes@v$V" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -n "$KMOD" ] || { echo "cannot download k8s.io/kubernetes@v$V from the module proxy" >&2; exit 1; }
{
	echo "module herd.local/kubebuild"
	echo
	awk '/^go /{print; exit}' "$KMOD"
	grep -E '^godebug ' "$KMOD" || true
	echo
	echo "require k8s.io/kubernetes v$V"
	echo
	echo "replace ("
	grep -E '=> \./staging/' "$KMOD" | awk -v v="v0.${V#1.}" '{print "\t" $1 " => " $1 " " v}'
	echo ")"
} >go.mod
cat >cmd/etcd/main.go <<'EOT'
// Command etcd is etcd's own server main, built at the version Kubernetes pins.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOT
ETCDV=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$KMOD")
PKGS=""
TARGETS=""
for c in $CMDS; do
	PKGS="$PKGS k8s.io/kubernetes/cmd/$c@v$V"
	TARGETS="$TARGETS k8s.io/kubernetes/cmd/$c"
done
go get $PKGS "go.etcd.io/etcd/server/v3/etcdmain@$ETCDV" >&2
MINOR=$(echo "$V" | cut -d. -f2)
LDF="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	LDF="$LDF -X $p.gitVersion=v$V -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
done
# Build into a temporary folder and move into place, so a killed build never
# leaves a half-written binary that the check above would take as done.
TMP=$(mktemp -d "$OUT/.build-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags "$LDF" -o "$TMP/" ./cmd/etcd $TARGETS >&2
for c in etcd $CMDS; do mv -f "$TMP/$c" "$OUT/$c"; done
echo "$OUT"
