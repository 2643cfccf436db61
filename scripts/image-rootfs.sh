#!/usr/bin/env bash
# Assemble the herd image's root file system in DIR: a static herd, this
# machine's ffmpeg and ffprobe with exactly the libraries they load, CA
# certificates, and a non-root user herd (10001) who owns only /data and
# /tmp. Used by scripts/build-image.sh (no Docker) and by the Dockerfile.
#
#   scripts/image-rootfs.sh DIR [VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: image-rootfs.sh DIR [VERSION]}
version=${2:-dev}
ffmpeg=$(command -v ffmpeg) || { echo "ffmpeg is not installed: run make deps" >&2; exit 1; }
ffprobe=$(command -v ffprobe)

mkdir -p "$root"/{usr/local/bin,usr/bin,etc/ssl/certs,data,tmp}
CGO_ENABLED=0 ${GO:-go} build -trimpath -ldflags "-X github.com/herdhq/herd/internal/cli.Version=${version}" -o "$root/usr/local/bin/herd" ./cmd/herd
cp "$ffmpeg" "$ffprobe" "$root/usr/bin/"
# Debian merges /lib into /usr/lib with links: the same links here, so the
# paths ldd prints resolve the same way inside.
for l in /lib /lib64 /bin /sbin; do
	if [[ -L $l ]]; then
		mkdir -p "$root/$(readlink "$l")"
		ln -sfn "$(readlink "$l")" "$root$l"
	fi
done
# Every shared library either program loads, at the path the loader finds it.
for lib in $( (ldd "$ffmpeg"; ldd "$ffprobe") | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}' | sort -u); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
	cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\nherd:x:10001:10001:herd:/data:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nherd:x:10001:\n' >"$root/etc/group"
chmod 0750 "$root/data"
chmod 1777 "$root/tmp"
if [[ $(id -u) == 0 ]]; then
	chown 10001:10001 "$root/data" "$root/tmp"
fi
