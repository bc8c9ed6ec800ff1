# The Lathe image: the gateway, RAG and agent services, the pipelines, the `lathe` CLI, the
# MLflow server and the model-fetch init container of the vLLM pods.
#
#   docker build -f deploy/docker/lathe.Dockerfile -t ghcr.io/lathe-llmops/lathe:0.1.0 .
#
# Two stages: `builder` turns Lathe and its dependencies into wheels; the runtime stage
# installs those wheels only (no compilers, no pip cache, no build context). The chart runs it
# as UID 10001 with a read-only root filesystem; everything it writes goes to /tmp or
# /var/lib/lathe, which the chart mounts as emptyDirs. HOME is /home/lathe, owned by 10001.
#
# Base image: the python:3.11-slim-bookworm tag, pinned by digest (the digest as published on
# Docker Hub and recorded in public Dockerfiles, 2025). Refresh it with
#   docker buildx imagetools inspect python:3.11-slim-bookworm
# and replace both FROM lines together.
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91 AS builder

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
COPY lathe lathe
COPY services services
COPY pipelines pipelines
# torch is the CPU build: services and the MLflow server need no CUDA; GPU work happens in
# the vLLM and Ray images.
RUN pip wheel --wheel-dir /wheels --index-url https://download.pytorch.org/whl/cpu 'torch==2.13.0' \
 && pip wheel --wheel-dir /wheels -c requirements/constraints.txt \
      . 'psycopg[binary]>=3.2' 'psycopg2-binary>=2.9' 'boto3>=1.35'

FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/lathe

RUN groupadd --gid 10001 lathe \
 && useradd --uid 10001 --gid 10001 --home-dir /home/lathe --create-home lathe
WORKDIR /app
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels /wheels/*.whl \
 && python -m compileall -q "$(python -c 'import lathe, os; print(os.path.dirname(lathe.__file__))')"
COPY pipelines pipelines

USER 10001:10001
EXPOSE 8000 8300 8400 5000 9100
CMD ["lathe", "--help"]
