# The herd image where a Docker engine exists; `make image` builds the same
# image without one (scripts/build-image.sh). Keep the two in step: a test
# compares this file's user, entrypoint, command, environment and port with
# the image make builds.
FROM golang:1.26-bookworm AS rootfs
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN scripts/image-rootfs.sh /rootfs "$VERSION"

FROM scratch
COPY --from=rootfs /rootfs/ /
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8080
ENV PATH=/usr/local/bin:/usr/bin:/bin HERD_DATA=/data HERD_ADDR=0.0.0.0:8080 TMPDIR=/tmp
ENTRYPOINT ["/usr/local/bin/herd"]
CMD ["serve"]
