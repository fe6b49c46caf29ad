# syntax=docker/dockerfile:1.7
# GridPilot images: `docker build --target headend -t gridpilot-headend .`
#                   `docker build --target agent   -t gridpilot-agent .`
# See docs/deployment.md. The base is pinned by exact tag; pin it by digest too
# (python:3.11.11-slim-bookworm@sha256:...) once your registry mirror has it.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------- builder
# Builds gridpilot and every dependency as wheels. Only this stage may have
# compilers; the final stages install the wheels with --no-index.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="GridPilot" \
      org.opencontainers.image.description="Dispatch control plane for distributed energy resources" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="GridPilot" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.documentation="docs/deployment.md"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The wheels come in through a bind mount, so they never become a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels /wheels/gridpilot-*.whl \
 && groupadd --system --gid 10001 gridpilot \
 && useradd --system --uid 10001 --gid gridpilot --home-dir /var/lib/gridpilot \
      --no-create-home --shell /usr/sbin/nologin gridpilot \
 && install -d -o gridpilot -g gridpilot -m 0750 /var/lib/gridpilot \
 && install -d -m 0755 /etc/gridpilot
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/gridpilot-entrypoint
WORKDIR /var/lib/gridpilot
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/gridpilot-entrypoint"]

# ---------------------------------------------------------------- headend
# REST API + console on 8080, AgentGateway (gRPC, mTLS) on 50051, /metrics on 8080.
FROM runtime AS headend
ENV GRIDPILOT_API_HOST=0.0.0.0 \
    GRIDPILOT_API_PORT=8080 \
    GRIDPILOT_GRPC_LISTEN=0.0.0.0:50051 \
    GRIDPILOT_ENVIRONMENT=production
EXPOSE 8080 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GRIDPILOT_API_PORT', '8080'), timeout=4)"]
CMD ["headend"]

# ---------------------------------------------------------------- agent
# One per site: `docker run -v ./site.yaml:/etc/gridpilot/site.yaml:ro gridpilot-agent`.
# The telemetry buffer and the lease journal live in /var/lib/gridpilot (a volume).
FROM runtime AS agent
VOLUME ["/var/lib/gridpilot"]
CMD ["agent", "--config", "/etc/gridpilot/site.yaml", "--state-dir", "/var/lib/gridpilot"]
