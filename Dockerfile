# syntax=docker/dockerfile:1
#
# One image, three roles. Build from the repository root:
#
#   docker build -t sc-cluster:0.1.0 .
#
# and run a role by naming its binary (no entrypoint; the command is the role):
#
#   docker run --rm sc-cluster:0.1.0 frontend --help
#   docker run --rm sc-cluster:0.1.0 broker --help
#   docker run --rm sc-cluster:0.1.0 state-server --help
#
# Every flag has an environment fallback (listed by --help); k8s/ sets them
# from ConfigMaps and the keys from a Secret.

# Build stage: the toolchain CI uses (rust-version in Cargo.toml is the minimum).
FROM rust:1.95.0-bookworm AS build
# npm fetches the pinned socketcluster-client (web/package-lock.json) that frontend/build.rs embeds in
# the binary for the browser client; with WEB_REQUIRE_CLIENT_LIBRARY set the build fails instead of
# embedding the "library missing" placeholder.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
ENV WEB_REQUIRE_CLIENT_LIBRARY=1
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the
# binaries are copied out of the cached target/ in the same step. The release
# profile keeps line tables (debug = 1) for profiling; the image drops them
# (about 98 MB to 14 MB for the three) but keeps symbols, so a panic's
# backtrace still names its functions.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    --mount=type=cache,target=/root/.npm,sharing=locked \
    cargo build --release --bins --locked \
    && mkdir -p /out \
    && for bin in frontend broker state-server; do \
           strip --strip-debug -o "/out/$bin" "target/release/$bin"; \
       done

# Runtime: glibc and libgcc of Debian 12 (like the build stage), no shell,
# no package manager; the `nonroot` variant's user is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="sc-cluster" \
      org.opencontainers.image.description="SocketCluster-compatible pub/sub cluster: frontend, broker, state-server" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /usr/local/bin/
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 65532:65532
# frontend: 8000 (JSON), 8100 (sc-codec-min-bin); broker: 8888 (fabric),
# 8889 (admin); state-server: 7777 (control), 7778 (HTTP).
EXPOSE 8000 8100 8888 8889 7777 7778
CMD ["frontend"]
