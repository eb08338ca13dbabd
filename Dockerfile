# syntax=docker/dockerfile:1
# The pod-identity-webhook image.
#
#   make image                         (docker, podman or buildah: tools/image/image.sh)
#   docker build -t pod-identity-webhook:dev .
#   docker run --rm --read-only pod-identity-webhook:dev --help
#
# Build arguments:
#   BASE_IMAGE     any Debian-family Python 3.11 with the venv module. The default is the
#                  official slim image pinned by digest; without a registry, tools/image/base.sh
#                  makes one from Debian's archive (localhost/debian-python:3.11-bookworm).
#   RULE_PACKAGES  extension rule packages to install next to the webhook (README, "Extension
#                  rules"): pip requirement specifiers or paths inside the build context,
#                  e.g. ./examples/session-name-rule. Their dependencies must be the webhook's
#                  own (`pip check` fails the build otherwise). Packages named from an index
#                  are not hash-checked: pin them with ==.
#
# Two stages. `build` turns every dependency, at the versions and with the hashes of
# requirements/image.txt (tools/image/lock.sh, the versions CI tests), the project and the rule
# packages into wheels. The final stage installs those wheels, offline, into a virtual
# environment, so it never has a compiler, a build backend, the wheels or a pip cache.

ARG BASE_IMAGE=python:3.11.14-slim-trixie@sha256:193fdd0bbcb3d2ae612bd6cc3548d2f7c78d65b549fcaa8af75624c47474444d

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The build's own virtual environment: its pip comes from the interpreter (ensurepip), so the
# base needs no pip of its own, and the build backend is the pinned one.
COPY requirements/build.txt requirements/image.txt ./requirements/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps -r /src/requirements/build.txt \
    && /opt/build/bin/pip wheel --require-hashes --no-deps --wheel-dir /wheels -r /src/requirements/image.txt
# Only what the wheels are made of (see .dockerignore): editing tests never rebuilds the image.
COPY pyproject.toml README.md ./
COPY webhook ./webhook
COPY examples ./examples
ARG RULE_PACKAGES=""
# hadolint ignore=SC2086
RUN /opt/build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /wheels /src ${RULE_PACKAGES}

FROM ${BASE_IMAGE}
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
ENV HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheels are bind-mounted from the build stage, so they never become a layer here.
# --no-index: nothing is downloaded or built in this stage; `pip check` proves every
# dependency is among the wheels. Then the venv's own pip and setuptools go, and the base's
# if it has any: the image runs the webhook, it installs nothing.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pod-identity-webhook --version \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && if python -m pip --version >/dev/null 2>&1; then python -m pip uninstall --yes pip setuptools wheel; fi \
    && rm -rf /root/.cache /tmp/*
# After the install: there, `python` had to be the base's interpreter, not the venv's.
ENV PATH=/opt/venv/bin:$PATH
# A numeric user (the conventional "nonroot" 65532) with no entry in /etc/passwd: Kubernetes'
# runAsNonRoot can only verify a numeric USER. 8443 because it cannot bind below 1024.
USER 65532:65532
EXPOSE 8443 9999
ENTRYPOINT ["/opt/venv/bin/pod-identity-webhook"]
CMD ["--help"]
