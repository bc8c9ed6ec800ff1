# The Ray image of the KubeRay head and workers: Ray 2.60 (CUDA base, so one image serves the
# CPU and the GPU worker groups) with Lathe's pipelines and recipes under /app.
#
#   docker build -f deploy/docker/ray.Dockerfile -t ghcr.io/lathe-llmops/lathe-ray:0.1.0 .
#
# Not built in this repository's CI (no Docker engine there). The rayproject image runs as
# the `ray` user (UID 1000), which the chart keeps; RayJob entry points run from /app:
#   python -m pipelines.<stage> --config pipelines/recipes/<file>
FROM rayproject/ray:2.60.0-py311-gpu

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/ray
WORKDIR /app

COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 requirements/constraints.txt requirements/constraints.txt
COPY --chown=1000:100 lathe lathe
COPY --chown=1000:100 services services
COPY --chown=1000:100 pipelines pipelines
# torch with CUDA from PyPI's default wheel (the base image has the CUDA runtime); the rest
# pinned by the same constraints as the platform, less the local +cpu torch pin.
RUN grep -v '^torch==' requirements/constraints.txt > /tmp/constraints.txt \
 && pip install 'torch==2.13.0' -c /tmp/constraints.txt \
 && pip install -c /tmp/constraints.txt . 'deepspeed==0.19.8' \
 && mkdir -p /app/.lathe

USER 1000:100
