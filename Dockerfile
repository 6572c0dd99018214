# syntax=docker/dockerfile:1
#
# cams-exporter container image.
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" -t cams-exporter .
#   docker run -p 10731:10731 -e ALIBABA_CLOUD_ACCESS_KEY_ID=... -e ALIBABA_CLOUD_ACCESS_KEY_SECRET=... cams-exporter
#
# Config: /etc/cams-exporter/config.yml (the default one is driven by environment variables, see
# deploy/docker/config.yml; mount your own file there for more). State (counters kept across
# restarts): /var/lib/cams-exporter/state.json, on the volume /var/lib/cams-exporter.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---- build: a virtualenv with the locked dependencies, then the wheel installed into it ------
FROM ${PYTHON_IMAGE} AS build
# The commit being built, recorded in the wheel (setup.py; the build context has no .git):
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" -t cams-exporter .
ARG REVISION=unknown
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 CAMS_EXPORTER_REVISION=${REVISION}
WORKDIR /src
# requirements.txt: every runtime dependency and the `credentials` extra's, pinned with their
# hashes (regenerate with the command in its header). Before the sources, so that a code change
# reuses this layer.
COPY requirements.txt ./
RUN python -m venv /opt/cams-exporter \
 && /opt/cams-exporter/bin/pip install --no-deps --require-hashes -r requirements.txt
COPY pyproject.toml setup.py README.md ./
COPY exporter/ exporter/
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && /opt/cams-exporter/bin/pip install --no-deps "$(ls /dist/cams_exporter-*.whl)[credentials]" \
 && /opt/cams-exporter/bin/pip check

# ---- runtime --------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cams-exporter" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.description="Prometheus exporter for Alibaba Cloud ChatApp Message Service (CAMS) template metrics" \
      org.opencontainers.image.licenses="Apache-2.0"
# MALLOC_ARENA_MAX=2: glibc's per-thread malloc arenas cost the worker pool tens of MB of RSS
# for nothing (bench: peak 415 -> 318 MB at 100k series before the renderer was made lean).
ENV PATH=/opt/cams-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2
RUN groupadd --system --gid 10001 cams \
 && useradd --system --uid 10001 --gid cams --no-create-home \
      --home-dir /var/lib/cams-exporter --shell /usr/sbin/nologin cams \
 && mkdir -p /etc/cams-exporter /var/lib/cams-exporter \
 && chown cams:cams /var/lib/cams-exporter
COPY --from=build /opt/cams-exporter /opt/cams-exporter
COPY deploy/docker/config.yml /etc/cams-exporter/config.yml
VOLUME ["/var/lib/cams-exporter"]
USER 10001:10001
EXPOSE 10731
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:10731/-/healthy', timeout=4)"]
ENTRYPOINT ["cams-exporter"]
CMD ["--config.file", "/etc/cams-exporter/config.yml", "--web.listen-address", ":10731"]
