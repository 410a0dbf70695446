# Builds the `latch` binary and a small runtime image.
# The packages of both stages are checked by a test (crates/latch-server/tests/it/packaging.rs):
# the build stage installs scripts/install-deps.sh's `build_packages`, the runtime stage every
# library the binary links.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    libclang-dev libxml2-dev libxmlsec1-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p latch-server

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 libxml2 \
    libxslt1.1 libxmlsec1 libxmlsec1-openssl ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/latch latch \
    && mkdir -p /var/lib/latch && chown latch /var/lib/latch && chmod 0700 /var/lib/latch
COPY --from=build /src/target/release/latch /usr/local/bin/latch
USER latch
ENV LATCH_BIND=0.0.0.0:8080 LATCH_DATA_DIR=/var/lib/latch LATCH_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["latch"]
CMD ["serve"]
