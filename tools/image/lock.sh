#!/usr/bin/env bash
# Regenerates the pinned requirements in requirements/ from pyproject.toml with pip-compile:
#
#   requirements/dev.txt    every package `make install` puts in .venv (the project's
#                           dependencies and the `dev` extra), one exact version each; the
#                           Makefile installs with it as a constraints file, so CI tests
#                           exactly these versions
#   requirements/image.txt  the project's dependencies only, at the same versions (compiled
#                           with dev.txt as constraints) and with the hash of every file,
#                           which the Dockerfile installs with --require-hashes
#   requirements/build.txt  the build backend (setuptools, wheel) with hashes, for the
#                           image's wheel builds
#   requirements/moto.txt   moto's server with hashes, the STS the node tier's Pods call
#                           (tests/node): its own environment, because its botocore needs
#                           python-dateutil<3 and the kubernetes client needs >=3
#   tests/node/images/aws-client/requirements.txt
#                           the AWS CLI v1 and boto3 of the node tier's Pod image, with hashes
#
# Usage:
#   tools/image/lock.sh            rewrite the five files (needs the package index)
#   tools/image/lock.sh --upgrade  the same, moving every pin to the newest allowed version
#
# Run it after changing dependencies in pyproject.toml, review the diff and commit it; run
# `make install` again (the Makefile reinstalls when dev.txt changes). Python 3.11 on Linux,
# as in CI and the image: pip-compile resolves for the interpreter that runs it.
set -euo pipefail

log() { printf 'tools/image/lock.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# pip-tools, pinned: its output format is part of the committed files.
PIP_TOOLS_VERSION=7.6.2

upgrade=()
case "${1:-}" in
  "") ;;
  --upgrade) upgrade=(--upgrade) ;;
  -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
  *) die "unknown argument: $1" ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "$python is not Python 3.11 (set PYTHON); the pins are for the interpreter CI and the image use"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "pip-tools==$PIP_TOOLS_VERSION" >&2

# moto, pinned here and nowhere else.
MOTO_VERSION=5.2.5

# Only the index: a local --find-links directory would add hashes of files the image
# build never sees.
unset PIP_FIND_LINKS PIP_CONSTRAINT
compile=("$work/venv/bin/pip-compile" --quiet --strip-extras --allow-unsafe --no-emit-index-url
  --resolver=backtracking "${upgrade[@]}")
cd "$repo"
mkdir -p requirements
header="tools/image/lock.sh"
export CUSTOM_COMPILE_COMMAND="$header"
log "requirements/dev.txt"
"${compile[@]}" --extra dev --output-file requirements/dev.txt pyproject.toml
log "requirements/image.txt"
"${compile[@]}" --generate-hashes --constraint requirements/dev.txt \
  --output-file requirements/image.txt pyproject.toml
log "requirements/build.txt"
printf 'setuptools>=77\nwheel\n' >"$work/build.in"
"${compile[@]}" --generate-hashes --output-file "$work/build.txt" "$work/build.in"
# The temporary input's path would otherwise be written into the committed file.
sed "s|$work/build.in|requirements/build.in (setuptools>=77, wheel: pyproject.toml's build-system)|" \
  "$work/build.txt" >requirements/build.txt
log "requirements/moto.txt"
printf 'moto[server]==%s\n' "$MOTO_VERSION" >"$work/moto.in"
"${compile[@]}" --generate-hashes --output-file "$work/moto.txt" "$work/moto.in"
sed "s|$work/moto.in|requirements/moto.in (moto[server]==$MOTO_VERSION, tools/image/lock.sh)|" \
  "$work/moto.txt" >requirements/moto.txt
log "tests/node/images/aws-client/requirements.txt"
# The AWS CLI (v1) and boto3 that the node tier's Pods run, on the webhook's botocore: Debian's
# are older than EKS Pod Identity's container-credentials endpoint.
botocore_pin="$(grep -o '^botocore==[^ ]*' requirements/image.txt)"
printf 'awscli\nboto3\n%s\n' "$botocore_pin" >"$work/aws-client.in"
"${compile[@]}" --generate-hashes --output-file "$work/aws-client.txt" "$work/aws-client.in"
sed "s|$work/aws-client.in|aws-client.in (awscli, boto3, $botocore_pin: tools/image/lock.sh)|" \
  "$work/aws-client.txt" >tests/node/images/aws-client/requirements.txt
log "done; review with: git diff requirements/ tests/node/images/"
