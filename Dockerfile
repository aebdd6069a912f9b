# syntax=docker/dockerfile:1
#
# The image of one medbook service, chosen by the build argument SERVICE:
#
#     docker build --build-arg SERVICE=booking-service -t medbook/booking-service:local .
#
# SERVICE is booking-service, notification-service or audit-service (docker-compose.yml
# builds all three). The image runs `/usr/local/bin/$SERVICE serve` as uid 10001 in /app,
# where the service's configuration is config/$SERVICE.yml; every setting can be
# overridden with MEDBOOK_<SECTION>__<KEY> variables. The shipped files bind the
# listeners to 127.0.0.1: in a container set them to 0.0.0.0 (docker-compose.yml does).
# Needs BuildKit (the default builder of Docker 23 and later).

ARG SERVICE

# ------------------------------------------------------------------ build
# bookworm on both sides: the binary links against the runtime image's glibc and libpq.
FROM rust:1.95.0-slim-bookworm AS builder

# libpq-dev: Diesel's PostgreSQL client. g++, make, zlib1g-dev, pkg-config: rdkafka builds
# its bundled librdkafka with its configure script (C, plus a C++ compiler check) and
# links the system zlib (rdkafka's default features: no OpenSSL, SASL, zstd or curl).
# The protos are compiled by protox, in Rust: no protoc. TLS (lettre) is rustls.
# DL3008 (pin apt package versions) is ignored on purpose: bookworm's updates only bring
# fixes, and Debian's archive drops superseded versions, so a pin would break the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ make pkg-config libpq-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

ARG SERVICE
# The registry, git checkouts and target/ are BuildKit caches, shared by the three
# services' builds (one at a time: sharing=locked); the binary is copied out of the cache.
RUN --mount=type=cache,id=medbook-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=medbook-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=medbook-target,target=/src/target,sharing=locked \
    case "${SERVICE}" in \
        booking-service | notification-service | audit-service) ;; \
        *) echo "build argument SERVICE must be booking-service, notification-service or audit-service, not '${SERVICE}'" >&2; exit 1 ;; \
    esac \
    && cargo build --release --locked -p "${SERVICE}" --bin "${SERVICE}" \
    && install -D -m 0755 "target/release/${SERVICE}" "/out/${SERVICE}"

# ------------------------------------------------------------------ runtime
FROM debian:bookworm-slim AS runtime

# libpq5: the PostgreSQL client library; ca-certificates: TLS to an SMTP server, OTLP
# collector or audit-service over https. zlib is part of the base image. Unpinned, as
# above (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libpq5 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 medbook \
    && useradd --system --uid 10001 --gid medbook --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin medbook

WORKDIR /app
ARG SERVICE
COPY --from=builder /out/${SERVICE} /usr/local/bin/${SERVICE}
COPY config/${SERVICE}.yml /app/config/${SERVICE}.yml
# HEALTHCHECK and ENTRYPOINT in exec form cannot name the binary by ${SERVICE}: they use
# this fixed name for it.
RUN ln -s "/usr/local/bin/${SERVICE}" /usr/local/bin/medbook-service

# ------------------------------------------------------------------ per service
# What differs between the services: description and ports (EXPOSE documents them; the
# MEDBOOK_* listener settings choose them).
FROM runtime AS service-booking-service
LABEL org.opencontainers.image.description="medbook booking-service: the HTTP/JSON booking API (8080, Swagger UI at /swagger), the internal gRPC ScheduleService (50051) and the operators' /health, /ready and /metrics (9464)."
EXPOSE 8080 9464 50051

FROM runtime AS service-notification-service
LABEL org.opencontainers.image.description="medbook notification-service: e-mails patients about every booking event read from Kafka; /health, /ready and /metrics on 8081."
EXPOSE 8081

FROM runtime AS service-audit-service
LABEL org.opencontainers.image.description="medbook audit-service: the tamper-evident audit log (an append-only Merkle log with signed checkpoints) over gRPC (50052); /health, /ready and /metrics on 8082."
EXPOSE 50052 8082

# ------------------------------------------------------------------ final
# service-${SERVICE} is one of the stages above, not an image to tag (DL3006).
# hadolint ignore=DL3006
FROM service-${SERVICE}

ARG SERVICE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.title="${SERVICE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="medbook"

USER 10001:10001

# `<service> healthcheck` exits 0 when the service's own GET /health answers 200 (it finds
# the ops listener from the same configuration); GET /ready tells whether it can serve.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/medbook-service", "healthcheck"]

# The services stop gracefully on SIGTERM (booking-service within http.shutdown_grace_secs).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/medbook-service"]
CMD ["serve"]
