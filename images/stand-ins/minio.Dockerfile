# A stand-in for quay.io/minio/minio where no registry is reachable: the MinIO server that
# ./scripts/ensure-minio.sh builds from its Go module, on the local Debian base. It is run the way
# the chart runs the upstream image (`minio server /data ...` as uid 1000, read-only root).
#
# Built by ./scripts/build-stand-ins.sh, with a context that holds only the `minio` binary.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="driftpilot stand-in: MinIO" \
      org.opencontainers.image.description="The MinIO server built from its Go module, for clusters without a registry"
COPY minio /usr/bin/minio
USER 1000:1000
ENTRYPOINT ["/usr/bin/minio"]
