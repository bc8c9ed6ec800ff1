# The Lathe image: the gateway, RAG and agent services, the pipelines, the `lathe` CLI, the
# MLflow server and the model-fetch init container of the vLLM pods.
#
#   docker build -f deploy/docker/lathe.Dockerfile -t ghcr.io/lathe-llmops/lathe:0.1.0 .
#
# Not built in this repository's CI (no Docker engine there): kept simple on purpose. The
# chart runs it as UID 10001 with a read-only root filesystem; everything it writes goes to
# /tmp or /var/lib/lathe, which the chart mounts as emptyDirs.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --gid 10001 lathe && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home lathe
WORKDIR /app

# Dependencies first (cached while only the code changes). torch is the CPU build: services
# and the MLflow server need no CUDA; GPU work happens in the vLLM and Ray images.
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
RUN pip install --index-url https://download.pytorch.org/whl/cpu 'torch==2.13.0' \
 && pip install -c requirements/constraints.txt \
      'psycopg[binary]>=3.2' 'psycopg2-binary>=2.9' 'boto3>=1.35'

COPY lathe lathe
COPY services services
COPY pipelines pipelines
RUN pip install -c requirements/constraints.txt --no-deps . \
 && pip install -c requirements/constraints.txt . \
 && python -m compileall -q lathe services pipelines

USER 10001:10001
EXPOSE 8000 8300 8400 5000 9100
CMD ["lathe", "--help"]
