# syntax=docker/dockerfile:1
# Build stage: the release binary (the page is embedded in it).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin upload-broker \
    && strip target/release/upload-broker

# Runtime stage: the binary alone, as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/upload-broker upload-broker
COPY --from=build /src/target/release/upload-broker /usr/local/bin/upload-broker
USER upload-broker
WORKDIR /var/lib/upload-broker
ENV PORT=5000 \
    DATA_DIR=/var/lib/upload-broker/data \
    ENVIRONMENT=production
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["upload-broker", "healthcheck"]
ENTRYPOINT ["upload-broker"]
