# syntax=docker/dockerfile:1
# The pod-identity-webhook image.
#
#   docker build -t pod-identity-webhook:dev .          (or `make image`)
#   docker run --rm --read-only pod-identity-webhook:dev --help
#
# Two stages. `build` turns the project and every dependency into wheels. The final stage
# installs those wheels, offline, into a virtual environment, so it never has a compiler, a
# build backend, the wheels or a pip cache. tests/deploy/test_image.py runs the same pip
# commands in a clean virtual environment (no Docker engine is needed for that) and lints this
# file with hadolint.

# A version-pinned slim Debian Python, the interpreter the project is tested with (3.11). Pin
# the digest as well (python:3.11.14-slim-trixie@sha256:...) where the build can resolve it.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is made of (see .dockerignore): editing tests never rebuilds the image.
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# The project's wheel (built in an isolated environment with its pinned build backend) and a
# wheel of every dependency, binary wheels from the index where they exist.
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels /src

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
LABEL org.opencontainers.image.title="pod-identity-webhook" \
      org.opencontainers.image.description="Drop-in Python replacement for the Amazon EKS Pod Identity Webhook (IRSA credential injection)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="pod-identity-webhook contributors"
# HOME=/tmp: the only writable place when the root filesystem is read-only (the Deployment
# mounts an emptyDir there); nothing writes bytecode at run time, it is compiled at install.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheels are bind-mounted from the build stage, so they never become a layer here.
# --no-index: nothing is downloaded or built in this stage. The venv has no pip of its own,
# and the base image's pip, setuptools and wheel are removed afterwards: the image runs the
# webhook, it installs nothing.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-index --find-links=/wheels pod-identity-webhook \
    && /opt/venv/bin/pod-identity-webhook --version \
    && python -m pip uninstall --yes pip setuptools wheel \
    && rm -rf /root/.cache /tmp/*
# A numeric user (the conventional "nonroot" 65532) with no entry in /etc/passwd: Kubernetes'
# runAsNonRoot can only verify a numeric USER. 8443 because it cannot bind below 1024.
USER 65532:65532
EXPOSE 8443 9999
ENTRYPOINT ["/opt/venv/bin/pod-identity-webhook"]
CMD ["--help"]
