#!/usr/bin/env bash
# Profile the webhook (or a variant, or the bare handler) under wrk saturation with py-spy.
#
#   python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy    # once; not the project's venv
#   PY_SPY=/tmp/pyspy/bin/py-spy benchmarks/profile.sh                  # the webhook
#   PY_SPY=... PROFILE_CLASS=small benchmarks/profile.sh   # a request class of pods.py instead of review.json
#   PY_SPY=... BENCH_TARGET=variant:nolog benchmarks/profile.sh           # a variant
#   PY_SPY=... BENCH_TARGET=bare-fast benchmarks/profile.sh               # the bare handler (uvloop, orjson)
#   PY_SPY=... PROFILE_NONBLOCKING=1 benchmarks/profile.sh                # sample without stopping the server
#   PROFILE_PERF=1 benchmarks/profile.sh     # perf instead of py-spy: CPU by library, kernel included
#
# Server on CPU $BENCH_SERVER_CPU [0], wrk and py-spy on $BENCH_LOAD_CPU [1]; py-spy samples at
# $PROFILE_RATE [250] Hz for $PROFILE_SECONDS [10] s while wrk runs 4 s longer. Prints the
# summary of benchmarks/profile_summary.py; the raw profile (collapsed stacks) is kept in
# $PROFILE_OUT [a temporary file, printed]. BENCH_NICE works as in run.sh (setsid + autogroup).
# py-spy slows the server down while it samples (by about 10-20 % at 250 Hz): read the
# percentages, not the throughput. By default py-spy stops the server for each sample, and a
# function that makes a system call can then come out much larger than it is (the log line's
# write: 11 % of the samples, against about 1 % with perf and with PROFILE_NONBLOCKING=1, which
# samples without stopping the server but cuts some stacks short; benchmarks/README.md, "sixth
# round").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/benchmarks"
PY=${BENCH_PYTHON:-$ROOT/.venv/bin/python}
PY_SPY=${PY_SPY:-$(command -v py-spy || true)}
TARGET=${BENCH_TARGET:-ours}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SECONDS_=${PROFILE_SECONDS:-10}
RATE=${PROFILE_RATE:-250}
CONNECTIONS=${BENCH_CONNECTIONS:-16}

die() { echo "profile.sh: $*" >&2; exit 1; }
PERF=${PROFILE_PERF:-0}
if [[ $PERF == 1 ]]; then
    command -v perf >/dev/null || die "perf is missing; install it with: apt-get install -y linux-perf"
else
    [[ -n $PY_SPY && -x $PY_SPY ]] || die "py-spy not found; install it into a throwaway venv:
  python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy && export PY_SPY=/tmp/pyspy/bin/py-spy"
fi
command -v wrk >/dev/null || die "wrk is missing; install it with: apt-get install -y wrk"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/webhook-profile.XXXXXX")
OUT=${PROFILE_OUT:-$WORK/profile.raw}
SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -TERM "$SERVER_PID"; fi
    if [[ -z ${PROFILE_OUT:-} ]]; then cp "$OUT" "${TMPDIR:-/tmp}/webhook-profile.raw" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$PY" -m webhook certs --dir "$WORK/certs" --local >/dev/null
SERVICE_ACCOUNTS=$ROOT/dev/service-accounts.yaml
if [[ -n ${PROFILE_CLASS:-} ]]; then
    # One request class of pods.py (small, large, unannotated) and its ServiceAccounts.
    SERVICE_ACCOUNTS=$WORK/service-accounts.json
    "$PY" - "$BENCH" "$PROFILE_CLASS" "$WORK/review.json" "$SERVICE_ACCOUNTS" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
from pods import ANNOTATED, NAMESPACE, PLAIN, ROLE_ANNOTATIONS, reviews
json.dump(reviews()[sys.argv[2]], open(sys.argv[3], "w"), separators=(",", ":"))
accounts = [
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NAMESPACE, **extra}}
    for name, extra in ((ANNOTATED, {"annotations": ROLE_ANNOTATIONS}), (PLAIN, {}))
]
json.dump({"apiVersion": "v1", "kind": "List", "items": accounts}, open(sys.argv[4], "w"))
PY
else
    "$PY" -c 'import json, sys; json.dump(json.load(open(sys.argv[1])), open(sys.argv[2], "w"), separators=(",", ":"))' \
        "$BENCH/review.json" "$WORK/review.json"
fi
read -r PORT METRICS_PORT < <("$PY" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
flags=(--in-cluster=false "--port=$PORT" "--metrics-port=$METRICS_PORT" "--tls-cert=$WORK/certs/tls.crt"
    "--tls-key=$WORK/certs/tls.key" "--service-accounts=$SERVICE_ACCOUNTS")
case $TARGET in
    ours) cmd=("$PY" -m webhook "${flags[@]}") ;;
    variant:*) cmd=("$PY" "$BENCH/webhook_variant.py" "${TARGET#variant:}" -- "${flags[@]}") ;;
    bare | bare-fast)
        cmd=("$PY" "$BENCH/bare_server.py" --port "$PORT" --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key")
        if [[ $TARGET == bare-fast ]]; then cmd+=(--uvloop --orjson); fi ;;
    *) die "BENCH_TARGET must be ours, bare, bare-fast or variant:V1+V2" ;;
esac
NICE=() SETSID=()
if [[ -n ${BENCH_NICE:-} ]]; then NICE=(nice -n "$BENCH_NICE") SETSID=(setsid); fi

"${SETSID[@]}" taskset -c "$SERVER_CPU" "${NICE[@]}" env "PYTHONPATH=${BENCH_EXTRA_PYTHONPATH:-}" "${cmd[@]}" \
    >"$WORK/server.stdout" 2>"$WORK/server.stderr" &
SERVER_PID=$!
if [[ -n ${BENCH_NICE:-} && -e /proc/$$/autogroup ]]; then
    sleep 0.3 # setsid has run by then; never change this script's own autogroup
    if [[ $(cut -d' ' -f1 "/proc/$SERVER_PID/autogroup") != "$(cut -d' ' -f1 "/proc/$$/autogroup")" ]]; then
        echo "$BENCH_NICE" >"/proc/$SERVER_PID/autogroup" 2>/dev/null || true
    fi
fi
deadline=$((SECONDS + 30))
until curl -fsS --max-time 1 --resolve "localhost:$PORT:127.0.0.1" --cacert "$WORK/certs/ca.crt" \
    "https://localhost:$PORT/readyz" >/dev/null 2>&1; do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.stderr" >&2; die "the server exited"; }
    ((SECONDS < deadline)) || die "the server was not ready within 30 s"
    sleep 0.2
done

BENCH_BODY="$WORK/review.json" timeout $((SECONDS_ + 40)) taskset -c "$LOAD_CPU" "${NICE[@]}" \
    wrk -t1 -c"$CONNECTIONS" -d"$((SECONDS_ + 4))s" -s "$BENCH/mutate.lua" "https://127.0.0.1:$PORT/mutate" \
    >"$WORK/wrk.out" &
WRK_PID=$!
sleep 2
if [[ $PERF == 1 ]]; then
    # Native frames only (Python 3.11 has no perf trampolines): libraries and kernel paths.
    timeout $((SECONDS_ + 30)) taskset -c "$LOAD_CPU" perf record -F "$RATE" -g -p "$SERVER_PID" \
        -o "$WORK/perf.data" -- sleep "$SECONDS_" >"$WORK/perf.log" 2>&1 ||
        { cat "$WORK/perf.log" >&2; die "perf record failed"; }
else
    NONBLOCKING=()
    if [[ ${PROFILE_NONBLOCKING:-0} == 1 ]]; then NONBLOCKING=(--nonblocking); fi
    timeout $((SECONDS_ + 30)) taskset -c "$LOAD_CPU" "$PY_SPY" record --pid "$SERVER_PID" \
        --duration "$SECONDS_" --rate "$RATE" --format raw --output "$OUT" "${NONBLOCKING[@]}" >"$WORK/py-spy.log" 2>&1 ||
        { cat "$WORK/py-spy.log" >&2; die "py-spy failed (it needs ptrace: root, or CAP_SYS_PTRACE)"; }
fi
wait "$WRK_PID"
grep -qE '^non-200 responses: 0$' "$WORK/wrk.out" || { cat "$WORK/wrk.out" >&2; die "non-200 responses"; }

if [[ $PERF == 1 ]]; then
    echo "# perf profile of '$TARGET' under wrk ($CONNECTIONS connections), $SECONDS_ s at $RATE Hz"
    echo "# wrk while profiled: $(grep -E '^Requests/sec' "$WORK/wrk.out" | tr -s ' ')"
    perf report -i "$WORK/perf.data" --no-children -g none --sort dso --stdio 2>/dev/null |
        grep -vE '^(#|$)' | head -"${PROFILE_TOP:-25}"
    echo "# by kernel path, callers included:"
    perf report -i "$WORK/perf.data" --children -g none --sort sym --stdio 2>/dev/null |
        grep -E '\[k\]' | head -"${PROFILE_TOP:-25}"
    exit 0
fi

echo "# py-spy profile of '$TARGET' under wrk ($CONNECTIONS connections), $SECONDS_ s at $RATE Hz"
echo "# wrk while profiled: $(grep -E '^Requests/sec' "$WORK/wrk.out" | tr -s ' ')"
"$PY" "$BENCH/profile_summary.py" "$OUT" --top "${PROFILE_TOP:-25}"
if [[ -z ${PROFILE_OUT:-} ]]; then echo "# raw profile: ${TMPDIR:-/tmp}/webhook-profile.raw"; fi
