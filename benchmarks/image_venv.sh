#!/usr/bin/env bash
# Print the Python of a venv that holds exactly the image's packages (requirements/image.txt,
# hashes checked) and this checkout's webhook (editable), building it when it is missing or
# stale. For benchmarks that should measure what the image runs: the development venv also
# holds rich and pygments (import-linter needs them), which structlog imports whenever they are
# installed, about 50 ms of start-up and 4 MiB the image does not pay.
#
#   BENCH_PYTHON=$(benchmarks/image_venv.sh) .venv/bin/python benchmarks/upstream/run.py
#   benchmarks/image_venv.sh DIR          # somewhere else than $TMPDIR/pod-identity-webhook-image-venv
#
# `ours@DIR` targets still work: PYTHONPATH comes before the editable install on sys.path.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-${TMPDIR:-/tmp}/pod-identity-webhook-image-venv}
STAMP="$VENV/.image-requirements"

die() { echo "image_venv.sh: $*" >&2; exit 1; }

if cmp -s "$ROOT/requirements/image.txt" "$STAMP" && [[ -x $VENV/bin/python ]]; then
    echo "$VENV/bin/python"
    exit 0
fi
if [[ -e $VENV && ! -e $STAMP ]] && [[ -n $(ls -A "$VENV") ]]; then
    # Only a venv this script made (it has the stamp) is ever replaced.
    die "$VENV exists and was not made by this script; name another directory"
fi
rm -rf "$VENV"
python3 -m venv "$VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
    -r "$ROOT/requirements/image.txt" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e "$ROOT" >&2
cp "$ROOT/requirements/image.txt" "$STAMP"
echo "$VENV/bin/python"
