#!/usr/bin/env bash
# A real one-node Kubernetes cluster on this machine, with no Docker engine
# and no registry: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler on loopback, Debian's containerd + runc + CNI plugins, and a
# kubelet registered as node "localhost". For make e2e-kube (deploy/e2e/node_test.go).
#
#   hack/kube/node.sh up [IMAGE.tar ...]   start it (after cleaning up any earlier run), import images
#   hack/kube/node.sh images IMAGE.tar ... import docker-archive images into the node's containerd
#   hack/kube/node.sh down                 stop everything, unmount, remove cgroups, restore sysctls
#   hack/kube/node.sh check                say what is missing to run it (exit 1 if anything)
#
# Env: HERD_KUBE_NODE_DIR (/var/lib/herd-kube-node): everything it writes
#      (a root-owned folder), and $HERD_KUBE_NODE_DIR/admin.kubeconfig for kubectl.
#
# Needs root on Linux. Every component listens on 127.0.0.1: the node is
# named localhost so the apiserver reaches its kubelet at 127.0.0.1:10250
# (its InternalIP, which the kubelet will not take from loopback, is this
# machine's own address, and so are host-network pods' IPs). There is no
# kube-proxy: pods that must reach the apiserver or herd use hostNetwork.
# Pods' cgroups live under /herd-e2e, and down touches nothing outside that,
# this folder, the herde2e0 bridge and the sysctls the kubelet changed.
# Ports (fixed, one node per machine): 2379 2380 6443 10248 10250 10257 10259.
set -euo pipefail
R=${HERD_KUBE_NODE_DIR:-/var/lib/herd-kube-node}
CGROOT=herd-e2e
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
HERE=$(cd "$(dirname "$0")" && pwd)
PORTS="2379 2380 6443 10248 10250 10257 10259"
SOCK=$R/containerd/containerd.sock
export KUBECONFIG=$R/admin.kubeconfig

say() { echo "node: $*" >&2; }
die() { say "$*"; exit 1; }
elapsed() { echo "$(($(date +%s%N) / 1000000 - T0))ms"; }

missing() {
	local m=()
	[ "$(uname -s)" = Linux ] || m+=("Linux")
	[ "$(id -u)" = 0 ] || m+=("root")
	command -v containerd >/dev/null || m+=("containerd (apt-get install containerd)")
	command -v runc >/dev/null || m+=("runc (apt-get install runc)")
	[ -x /usr/lib/cni/bridge ] || m+=("CNI plugins (apt-get install containernetworking-plugins)")
	for c in openssl curl ss; do command -v $c >/dev/null || m+=("$c"); done
	echo "${m[*]}"
}

# own: the run folder is root's alone (it holds keys, PIDs and sysctl values).
own() {
	if [ -e "$R" ] || [ -L "$R" ]; then
		[ -d "$R" ] && [ ! -L "$R" ] && [ "$(stat -c %u "$R")" = 0 ] ||
			die "$R is not a folder owned by root; remove it or set HERD_KUBE_NODE_DIR"
		chmod 700 "$R"
	else
		mkdir -m 700 -p "$R"
	fi
}

# wait_for WHAT SECONDS CMD...: run CMD until it succeeds.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local end=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$end" ] || { say "$what not ready after ${secs}s"; return 1; }
		sleep 0.2
	done
}

# start NAME CMD...: run CMD in the background, logging to $R/NAME.log.
start() {
	local name=$1
	shift
	nohup "$@" >"$R/$name.log" 2>&1 &
	echo $! >"$R/$name.pid"
}

alive() { kill -0 "$(cat "$R/$1.pid")" 2>/dev/null || { say "$1 died:"; tail -20 "$R/$1.log" >&2; return 1; }; }

pki() {
	local P=$R/pki
	# Reuse a whole PKI that has a day left; else make a new one.
	if [ -f "$P/done" ] && openssl x509 -checkend 86400 -noout -in "$P/ca.crt" >/dev/null 2>&1 &&
		openssl x509 -checkend 86400 -noout -in "$P/apiserver.crt" >/dev/null 2>&1; then
		return
	fi
	rm -rf "$P" "$P.new"
	mkdir -p "$P.new"
	(
		cd "$P.new"
		q() { "$@" >/dev/null 2>&1; }
		q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=herd-e2e-ca"
		# cert NAME CN O EXTENSIONS
		cert() {
			printf '%s\n' "$4" >"$1.ext"
			q openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2${3:+/O=$3}"
			q openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 30 -extfile "$1.ext"
			rm -f "$1.csr" "$1.ext"
		}
		cert apiserver kube-apiserver "" "subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1
extendedKeyUsage=serverAuth"
		cert admin admin system:masters "extendedKeyUsage=clientAuth"
		cert kubelet system:node:localhost system:nodes "extendedKeyUsage=clientAuth"
		cert kubelet-server localhost "" "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
		q openssl genrsa -out sa.key 2048
		q openssl rsa -in sa.key -pubout -out sa.pub
		rm -f ca.srl
		touch done
	)
	mv "$P.new" "$P"
	kubeconfig admin "$R/admin.kubeconfig"
	kubeconfig kubelet "$R/kubelet.kubeconfig"
}

# kubeconfig USER FILE
kubeconfig() {
	cat >"$2" <<EOT
apiVersion: v1
kind: Config
clusters:
- name: herd-e2e
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$R/pki/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$R/pki/$1.crt", client-key: "$R/pki/$1.key"}
contexts:
- name: herd-e2e
  context: {cluster: herd-e2e, user: $1}
current-context: herd-e2e
EOT
}

configs() {
	mkdir -p "$R/cni" "$R/containerd"
	cat >"$R/containerd.toml" <<EOT
version = 2
root = "$R/containerd/root"
state = "$R/containerd/state"
[grpc]
  address = "$SOCK"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "herd.local/pause:1"
    # Without CAP_SYS_RESOURCE (as in this VM) runc cannot lower the pause
    # container's oom_score_adj and every sandbox fails to start.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "$R/containerd/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$R/cni"
  [plugins."io.containerd.internal.v1.opt"]
    path = "$R/containerd/opt"
EOT
	# A bridge with no gateway and no masquerading: pods on the pod network
	# reach each other only. herd's e2e pods use hostNetwork.
	cat >"$R/cni/10-herd-e2e.conflist" <<EOT
{"cniVersion": "0.4.0", "name": "herd-e2e",
 "plugins": [
  {"type": "bridge", "bridge": "herde2e0", "isGateway": false, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "dataDir": "$R/cni/ipam"}},
  {"type": "loopback"}]}
EOT
	cat >"$R/kubelet.yaml" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$R/pki/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$R/pki/kubelet-server.crt"
tlsPrivateKeyFile: "$R/pki/kubelet-server.key"
containerRuntimeEndpoint: "unix://$SOCK"
cgroupDriver: cgroupfs
cgroupRoot: /$CGROOT
# Kubernetes 1.35 refuses cgroup v1 unless told otherwise; this VM has v1.
failCgroupV1: false
failSwapOn: false
resolvConf: /etc/resolv.conf
registerNode: true
maxPods: 30
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
EOT
}

images() {
	[ $# -gt 0 ] || return 0
	for t in "$@"; do
		ctr --address "$SOCK" -n k8s.io images import "$t" >/dev/null || die "could not import $t"
	done
}

up() {
	local m
	m=$(missing)
	[ -z "$m" ] || die "cannot start a node here; missing: $m"
	own
	for p in $PORTS; do
		if ss -Htln "sport = :$p" | grep -q .; then
			down >/dev/null 2>&1 || true
			! ss -Htln "sport = :$p" | grep -q . || die "port $p is in use (another cluster on this machine?); stop it first"
		fi
	done
	down >/dev/null 2>&1 || true
	local BIN
	BIN=$("$HERE/build.sh" all)
	export PATH=$BIN:$PATH
	T0=$(($(date +%s%N) / 1000000))
	pki
	configs

	start etcd "$BIN/etcd" --name herd-e2e --data-dir "$R/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster herd-e2e=http://127.0.0.1:2380 --unsafe-no-fsync
	wait_for etcd 30 curl -sf http://127.0.0.1:2379/health || { alive etcd; exit 1; }

	local P=$R/pki
	# --endpoint-reconciler-type=none: the apiserver would refuse 127.0.0.1
	# as the kubernetes Service's endpoint.
	start apiserver "$BIN/kube-apiserver" \
		--etcd-servers=http://127.0.0.1:2379 \
		--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=6443 \
		--cert-dir="$R/apiserver-certs" \
		--tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
		--client-ca-file="$P/ca.crt" \
		--authorization-mode=Node,RBAC \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
		--service-cluster-ip-range=10.0.0.0/24 \
		--kubelet-client-certificate="$P/admin.crt" --kubelet-client-key="$P/admin.key" \
		--kubelet-certificate-authority="$P/ca.crt" \
		--kubelet-preferred-address-types=Hostname \
		--endpoint-reconciler-type=none \
		--profiling=false
	wait_for kube-apiserver 90 kubectl get --raw /readyz || { alive apiserver; exit 1; }

	start kcm "$BIN/kube-controller-manager" \
		--kubeconfig="$R/admin.kubeconfig" \
		--authentication-kubeconfig="$R/admin.kubeconfig" --authorization-kubeconfig="$R/admin.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=10257 \
		--service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
		--use-service-account-credentials=false --leader-elect=false
	start scheduler "$BIN/kube-scheduler" \
		--kubeconfig="$R/admin.kubeconfig" \
		--authentication-kubeconfig="$R/admin.kubeconfig" --authorization-kubeconfig="$R/admin.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false
	wait_for kube-controller-manager 30 curl -skf https://127.0.0.1:10257/healthz || { alive kcm; exit 1; }
	wait_for kube-scheduler 30 curl -skf https://127.0.0.1:10259/healthz || { alive scheduler; exit 1; }

	start containerd containerd --config "$R/containerd.toml"
	wait_for containerd 30 ctr --address "$SOCK" version || { alive containerd; exit 1; }
	pause_image
	images "$@"

	# The kubelet rewrites these (its kernel tunables): keep the originals for down.
	[ -f "$R/sysctl.orig" ] || for k in $SYSCTLS; do
		echo "$k=$(sysctl -n "$k")"
	done >"$R/sysctl.orig"
	for c in $(cgroups); do mkdir -p "$c"; done
	start kubelet "$BIN/kubelet" --config="$R/kubelet.yaml" --kubeconfig="$R/kubelet.kubeconfig" \
		--root-dir="$R/kubelet" --cert-dir="$R/kubelet/pki" --hostname-override=localhost --v=1
	wait_for "node localhost" 120 node_ready || { alive kubelet; grep -E '^E' "$R/kubelet.log" | tail -10 >&2; exit 1; }
	# Pods need their namespace's default ServiceAccount, made by the controller manager.
	wait_for "default ServiceAccount" 30 kubectl -n default get serviceaccount default
	say "up in $(elapsed); export KUBECONFIG=$KUBECONFIG"
}

# cgroups: the folders of the pods' cgroup root, in each hierarchy (v1) or the one tree (v2).
cgroups() {
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		echo "/sys/fs/cgroup/$CGROOT"
	else
		awk -v r="$CGROOT" '$3 == "cgroup" {print $2 "/" r}' /proc/mounts
	fi
}

node_ready() {
	kubectl get node localhost -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' | grep -q True
}

# The sandbox image: a static Go program that waits for a signal.
pause_image() {
	local t=$R/pause.tar
	if [ ! -f "$t" ]; then
		local root
		root=$(mktemp -d)
		(cd "$HERE/../image" && CGO_ENABLED=0 go build -trimpath -o "$root/pause" ./pause &&
			go run . -rootfs "$root" -tag herd.local/pause:1 -o "$t.tmp" -entrypoint /pause >/dev/null 2>&1 &&
			mv "$t.tmp" "$t") || { rm -rf "$root"; die "could not build the pause image"; }
		rm -rf "$root"
	fi
	images "$t"
}

# stop NAME [TENTHS]: SIGTERM, then SIGKILL after TENTHS tenths of a second;
# only if the PID file still names that program (PIDs are reused).
stop() {
	local f=$R/$1.pid
	[ -f "$f" ] || return 0
	local p
	p=$(cat "$f")
	rm -f "$f"
	[[ $p =~ ^[0-9]+$ ]] || return 0
	local prog=$1
	case $1 in kcm) prog=kube-controller-manager ;; scheduler) prog=kube-scheduler ;; apiserver) prog=kube-apiserver ;; esac
	tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "$prog" || return 0
	kill "$p" 2>/dev/null || return 0
	for _ in $(seq 1 "${2:-50}"); do
		kill -0 "$p" 2>/dev/null || return 0
		sleep 0.1
	done
	say "SIGKILL $1 ($p)"
	kill -9 "$p" 2>/dev/null || true
}

down() {
	[ -d "$R" ] && [ ! -L "$R" ] || return 0
	stop kubelet
	if [ -S "$SOCK" ] && [ -f "$R/containerd.pid" ]; then
		local c="ctr --address $SOCK -n k8s.io"
		for t in $($c tasks ls -q 2>/dev/null); do $c tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
		sleep 0.5
		for t in $($c tasks ls -q 2>/dev/null); do $c tasks delete -f "$t" >/dev/null 2>&1 || true; done
		for t in $($c containers ls -q 2>/dev/null); do $c containers delete "$t" >/dev/null 2>&1 || true; done
	fi
	stop containerd
	# containerd's shims outlive it when their tasks would not die.
	pkill -9 -f "containerd-shim.*-address $SOCK" 2>/dev/null || true
	# The controllers first: the apiserver takes a minute to stop while they watch.
	stop scheduler
	stop kcm
	stop apiserver 30
	stop etcd
	# Container root file systems, sandbox shm, kubelet volumes: all under $R.
	{ awk -v r="$R" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts || true; } | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
	for c in $(cgroups); do
		[ -d "$c" ] && { find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true; }
	done
	rm -f /var/lib/cni/results/herd-e2e-* 2>/dev/null || true
	ip link del herde2e0 2>/dev/null || true
	if [ -f "$R/sysctl.orig" ]; then
		while IFS== read -r k v; do
			case " $SYSCTLS " in *" $k "*) [[ $v =~ ^[0-9]+$ ]] && sysctl -qw "$k=$v" || true ;; esac
		done <"$R/sysctl.orig"
		rm -f "$R/sysctl.orig"
	fi
	# Keep the PKI and the pause image for the next run; drop the state.
	rm -rf --one-file-system "$R/etcd" "$R/kubelet" "$R/containerd" "$R/cni" "$R/apiserver-certs"
	say "down"
}

case ${1:-} in
up)
	shift
	up "$@"
	;;
down) down ;;
images)
	shift
	images "$@"
	;;
check)
	m=$(missing)
	[ -z "$m" ] || { echo "missing: $m"; exit 1; }
	;;
*)
	echo "usage: $0 up [IMAGE.tar...] | images IMAGE.tar... | down | check" >&2
	exit 2
	;;
esac
