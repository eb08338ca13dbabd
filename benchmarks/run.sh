#!/usr/bin/env bash
# Load test of the webhook's /mutate over TLS with keep-alive, against a bare aiohttp handler.
#
#   benchmarks/run.sh                 # full run (about 4 minutes)
#   BENCH_QUICK=1 benchmarks/run.sh   # 3 s runs, one saturation run per server (CI smoke)
#
# Server pinned to one core (taskset -c $BENCH_SERVER_CPU), load generator to another
# ($BENCH_LOAD_CPU). Saturation throughput: wrk (closed loop, $BENCH_CONNECTIONS connections,
# benchmarks/mutate.lua). Latency at fixed rates: benchmarks/fixed_rate.py (open loop, same
# connections, no coordinated omission). Every response must be HTTP 200, or the script fails.
# Only 127.0.0.1 is used; every step has a time limit. See benchmarks/README.md.
#
# Environment (defaults in brackets):
#   BENCH_QUICK=1              3 s runs, 1 saturation run, 1 s warm-up
#   BENCH_SAT_SECONDS [10]     length of one wrk saturation run
#   BENCH_SAT_RUNS [3]         wrk runs per server; the median is reported
#   BENCH_RATE_SECONDS [10]    measured length of each fixed-rate run (plus 1 s warm-up)
#   BENCH_RATES ["100 500 1000"]  fixed rates in requests/s; "none" for saturation only
#   BENCH_ROUNDS [1]           run the whole list of servers this many times, interleaved, and
#                              report medians over rounds (steadier on a shared machine)
#   BENCH_CONNECTIONS [16]
#   BENCH_WARMUP_SECONDS [2]   unmeasured wrk run before the saturation runs
#   BENCH_TARGETS ["ours ours-devnull bare"]; also: bare-fast (uvloop + orjson), bare-fast-mw
#       (bare-fast with a middleware like the webhook's), bare-lowlevel (bare-fast on
#       aiohttp.web.Server: no Application, router or middleware) and
#       variant:V1+V2 (the webhook through benchmarks/webhook_variant.py, stdout to a file;
#       V in nolog, nometrics, gcfreeze, lowlevel, fixed, stages)
#   BENCH_EXTRA_PYTHONPATH     PYTHONPATH of bare-fast and the variants (modules to try aside)
#   BENCH_SERVER_CPU [0] / BENCH_LOAD_CPU [1]
#   BENCH_NICE                 e.g. -20: run the server and the load generators under
#                              `nice -n`, each in a session of its own (setsid) whose autogroup
#                              gets the same nice value, so that other work on a shared machine
#                              (builds, test suites in other sessions) takes less of their cores.
#                              Negative values need root. Off by default.
#   BENCH_PYTHON [.venv/bin/python]
#   BENCH_REVIEW [benchmarks/review.json]; BENCH_SERVICE_ACCOUNTS [dev/service-accounts.yaml]
#   BENCH_OUT                  directory to copy results.md, results.jsonl and the raw wrk and
#                              fixed_rate.py outputs into
#   BENCH_ENFORCE=1            also exit 1 when the webhook misses its targets
#   BENCH_KEEP=1               keep the temporary directory
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/benchmarks"
PY=${BENCH_PYTHON:-$ROOT/.venv/bin/python}

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
    SAT_SECONDS=${BENCH_SAT_SECONDS:-3}
    SAT_RUNS=${BENCH_SAT_RUNS:-1}
    RATE_SECONDS=${BENCH_RATE_SECONDS:-3}
    WARMUP_SECONDS=${BENCH_WARMUP_SECONDS:-1}
else
    SAT_SECONDS=${BENCH_SAT_SECONDS:-10}
    SAT_RUNS=${BENCH_SAT_RUNS:-3}
    RATE_SECONDS=${BENCH_RATE_SECONDS:-10}
    WARMUP_SECONDS=${BENCH_WARMUP_SECONDS:-2}
fi
RATES=${BENCH_RATES-100 500 1000}
if [[ $RATES == none ]]; then RATES=""; fi
ROUNDS=${BENCH_ROUNDS:-1}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
TARGETS=${BENCH_TARGETS:-ours ours-devnull bare}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
REVIEW=${BENCH_REVIEW:-$BENCH/review.json}
SERVICE_ACCOUNTS=${BENCH_SERVICE_ACCOUNTS:-$ROOT/dev/service-accounts.yaml}
EXTRA_PYTHONPATH=${BENCH_EXTRA_PYTHONPATH:-}
NICE=() SETSID=()
if [[ -n ${BENCH_NICE:-} ]]; then NICE=(nice -n "$BENCH_NICE") SETSID=(setsid); fi

die() { echo "run.sh: $*" >&2; exit 1; }
note() { echo "run.sh: $*" >&2; }

# --- prerequisites: nothing is installed here ---------------------------------------------------
command -v wrk >/dev/null || die "wrk is missing; install it with: apt-get install -y wrk"
command -v taskset >/dev/null || die "taskset is missing; install it with: apt-get install -y util-linux"
command -v curl >/dev/null || die "curl is missing; install it with: apt-get install -y curl"
command -v timeout >/dev/null || die "timeout (coreutils) is missing"
[[ -x $PY ]] || die "no Python at $PY; run 'make install' or set BENCH_PYTHON"
cores=$(nproc --all)
((SERVER_CPU < cores && LOAD_CPU < cores)) || die "CPUs $SERVER_CPU/$LOAD_CPU not both present ($cores cores)"
[[ $SERVER_CPU != "$LOAD_CPU" ]] || die "the server and the load generator need different CPUs"
[[ -f $REVIEW ]] || die "no review at $REVIEW"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/webhook-bench.XXXXXX")
SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        sleep 1
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then note "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- fixtures -----------------------------------------------------------------------------------
"$PY" -m webhook certs --dir "$WORK/certs" --local >/dev/null
BODY="$WORK/review.json"
"$PY" -c 'import json, sys; json.dump(json.load(open(sys.argv[1])), open(sys.argv[2], "w"), separators=(",", ":"))' \
    "$REVIEW" "$BODY"
# The webhook must actually inject: the review's ServiceAccount has to be annotated.
answer=$("$PY" -m webhook mutate -f "$REVIEW" --service-accounts "$SERVICE_ACCOUNTS" -o review 2>&1) ||
    die "pod-identity-webhook mutate failed on $REVIEW: $answer"
[[ $answer == *'"patch"'* ]] || die "the review is not mutated with $SERVICE_ACCOUNTS; pick an annotated ServiceAccount"

read -r PORT METRICS_PORT < <("$PY" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
URL="https://127.0.0.1:$PORT/mutate"
RESULTS="$WORK/results.jsonl"
COMMAND_LINE="$(for v in QUICK SAT_SECONDS SAT_RUNS RATE_SECONDS RATES ROUNDS CONNECTIONS TARGETS SERVER_CPU LOAD_CPU NICE EXTRA_PYTHONPATH; do
    n="BENCH_$v"; if [[ -n ${!n:-} ]]; then printf '%s=%q ' "$n" "${!n}"; fi; done)benchmarks/run.sh"

"$PY" - "$RESULTS" "$BODY" "$SERVER_CPU" "$LOAD_CPU" "$CONNECTIONS" "$COMMAND_LINE" <<'EOF'
import datetime, json, os, platform, sys
import aiohttp
results, body, server_cpu, load_cpu, connections, command = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
meta = {
    "kind": "meta",
    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    "cpu": cpu, "cores": os.cpu_count(), "server_cpu": server_cpu, "load_cpu": load_cpu,
    "connections": int(connections), "body_bytes": os.path.getsize(body),
    "python": platform.python_version(), "aiohttp": aiohttp.__version__,
    "loadavg": open("/proc/loadavg").read().split()[0], "command": command,
}
open(results, "w").write(json.dumps(meta) + "\n")
EOF

# --- one server ---------------------------------------------------------------------------------
proc_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

wait_ready() {
    local deadline=$((SECONDS + 30))
    until curl -fsS --max-time 1 --resolve "localhost:$PORT:127.0.0.1" --cacert "$WORK/certs/ca.crt" "https://localhost:$PORT/readyz" >/dev/null 2>&1; do
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$1" >&2; die "the server exited during start-up"; }
        ((SECONDS < deadline)) || { cat "$1" >&2; die "the server was not ready within 30 s"; }
        sleep 0.2
    done
}

stop_server() {
    kill -TERM "$SERVER_PID"
    local deadline=$((SECONDS + 15)) status=0
    while kill -0 "$SERVER_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID"
        die "the server did not stop within 15 s of SIGTERM"
    fi
    wait "$SERVER_PID" || status=$?
    SERVER_PID=""
    # web.run_app (bare) exits 0 on SIGTERM too; anything else is a failure.
    ((status == 0)) || die "the server exited with status $status after SIGTERM"
}

# With BENCH_NICE: the process already runs under `nice`; with the kernel's autogroup scheduling
# nice only counts inside a session, so the session of the process (setsid) gets it too.
boost() { # PID
    if [[ -z ${BENCH_NICE:-} || ! -e /proc/$$/autogroup ]]; then return 0; fi
    # Wait until setsid has run (the process is in a new autogroup), or the value would land on
    # this script's own autogroup.
    local ours i
    ours=$(cut -d' ' -f1 "/proc/$$/autogroup")
    for ((i = 0; i < 100; i++)); do
        [[ $(cut -d' ' -f1 "/proc/$1/autogroup" 2>/dev/null) == "$ours" ]] || break
        sleep 0.02
    done
    if [[ $(cut -d' ' -f1 "/proc/$1/autogroup" 2>/dev/null) == "$ours" ]]; then
        note "process $1 is still in this script's autogroup; not changing its nice value"
        return 0
    fi
    echo "$BENCH_NICE" >"/proc/$1/autogroup" 2>/dev/null || note "cannot set the autogroup nice of $1"
}

run_boosted() { # OUT CMD...: runs CMD to completion, stdout to OUT; returns its status
    local out=$1
    shift
    "${SETSID[@]}" "$@" >"$out" &
    local pid=$!
    boost "$pid"
    wait "$pid"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime after the "(comm)"

run_wrk() { # OUT SECONDS; appends the server's CPU ticks used during the run
    local before after
    before=$(cpu_ticks "$SERVER_PID")
    BENCH_BODY="$BODY" run_boosted "$1" timeout $(($2 + 30)) taskset -c "$LOAD_CPU" "${NICE[@]}" \
        wrk -t1 -c"$CONNECTIONS" -d"${2}s" --timeout 5s --latency -s "$BENCH/mutate.lua" "$URL" ||
        { cat "$1" >&2; die "wrk failed"; }
    after=$(cpu_ticks "$SERVER_PID")
    printf 'server_cpu_ticks: %d\nclk_tck: %d\n' $((after - before)) "$(getconf CLK_TCK)" >>"$1"
}

run_target() { # NAME ROUND
    local name=$1 round=$2 stdout_to cmd=() env=() is_webhook=1 checks="{}"
    local webhook_flags=(--in-cluster=false "--port=$PORT" "--metrics-port=$METRICS_PORT"
        "--tls-cert=$WORK/certs/tls.crt" "--tls-key=$WORK/certs/tls.key"
        "--service-accounts=$SERVICE_ACCOUNTS")
    case $name in
        ours) stdout_to="$WORK/$name.r$round.stdout"; cmd=("$PY" -m webhook "${webhook_flags[@]}") ;;
        ours-devnull) stdout_to=/dev/null; cmd=("$PY" -m webhook "${webhook_flags[@]}") ;;
        variant:*)
            stdout_to="$WORK/${name//[:+]/-}.r$round.stdout"
            cmd=("$PY" "$BENCH/webhook_variant.py" "${name#variant:}" -- "${webhook_flags[@]}") ;;
        bare | bare-fast | bare-fast-mw | bare-lowlevel)
            is_webhook=0; stdout_to=/dev/null
            cmd=("$PY" "$BENCH/bare_server.py" --port "$PORT" --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key")
            if [[ $name != bare ]]; then cmd+=(--uvloop --orjson); fi
            if [[ $name == bare-fast-mw ]]; then cmd+=(--middleware); fi
            if [[ $name == bare-lowlevel ]]; then cmd+=(--low-level); fi ;;
        *) die "unknown target $name" ;;
    esac
    if [[ $name == bare-?* || $name == variant:* ]]; then
        local wants=()
        if [[ $name == bare-?* || $name == *uvloop* ]]; then wants+=(uvloop); fi
        if [[ $name == bare-?* || $name == *orjson* ]]; then wants+=(orjson); fi
        for module in "${wants[@]}"; do
            if ! PYTHONPATH="$EXTRA_PYTHONPATH" "$PY" -c "import $module" 2>/dev/null; then
                note "skipping $name: $module is not importable (pip install --target DIR $module; BENCH_EXTRA_PYTHONPATH=DIR)"
                return 0
            fi
        done
        env=(env "PYTHONPATH=$EXTRA_PYTHONPATH")
    fi

    note "== $name (round $round/$ROUNDS): starting (stdout -> $stdout_to)"
    local tag="${name//[:+]/-}.r$round"
    local stderr_file="$WORK/$tag.stderr"
    "${SETSID[@]}" taskset -c "$SERVER_CPU" "${NICE[@]}" "${env[@]}" "${cmd[@]}" >"$stdout_to" 2>"$stderr_file" &
    SERVER_PID=$!
    boost "$SERVER_PID"
    wait_ready "$stderr_file"
    sleep 0.5
    local rss_idle; rss_idle=$(proc_kib "$SERVER_PID" VmRSS)

    note "$name: warm-up ${WARMUP_SECONDS} s"
    run_wrk "$WORK/warmup.wrk" "$WARMUP_SECONDS"
    local wrk_files=() i
    for ((i = 1; i <= SAT_RUNS; i++)); do
        local f="$WORK/$tag.sat$i.wrk"
        run_wrk "$f" "$SAT_SECONDS"
        wrk_files+=("$f")
        note "$name: saturation run $i: $(grep -E '^Requests/sec' "$f" | tr -s ' ') ($(grep -E '^non-200' "$f"))"
        [[ $("$PY" "$BENCH/report.py" wrk "$f") == *'"ok": true'* ]] ||
            { cat "$f" >&2; die "$name: wrk saw errors or non-200 responses"; }
    done

    local fixed_files=() rate
    for rate in $RATES; do
        local f="$WORK/$tag.rate$rate.json"
        if ! run_boosted "$f" timeout $((RATE_SECONDS + 40)) taskset -c "$LOAD_CPU" "${NICE[@]}" "$PY" "$BENCH/fixed_rate.py" \
            --port "$PORT" --cafile "$WORK/certs/ca.crt" --body "$BODY" --rate "$rate" \
            --duration "$RATE_SECONDS" --warmup 1 --connections "$CONNECTIONS" --no-check-rate --server-pid "$SERVER_PID"; then
            cat "$f" >&2
            die "$name: fixed rate $rate/s failed (non-200 responses or errors)"
        fi
        note "$name: $rate/s: $("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("p50 %(p50)s ms, p99 %(p99)s ms, p99.9 %(p99.9)s ms" % r["latency_ms"])' "$f")"
        fixed_files+=("$f")
    done

    local rss_after rss_peak
    rss_after=$(proc_kib "$SERVER_PID" VmRSS)
    rss_peak=$(proc_kib "$SERVER_PID" VmHWM)
    if ((is_webhook)); then
        curl -fsS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/$tag.metrics" ||
            die "$name: cannot read /metrics"
        local metrics; metrics=$("$PY" "$BENCH/report.py" metrics "$WORK/$tag.metrics")
        "$PY" -c 'import json,sys; sys.exit(json.loads(sys.argv[1])["non_200"] != 0)' "$metrics" ||
            die "$name: the webhook counted non-200 answers on /mutate: $metrics"
        checks=$metrics
    fi
    stop_server
    if [[ $stdout_to != /dev/null && $name != *nolog* ]] && ((is_webhook)); then
        local log; log=$("$PY" "$BENCH/report.py" log "$stdout_to")
        "$PY" -c '
import json, sys
log = json.loads(sys.argv[1])
ok = log["admissions"] > 0 and set(log["outcomes"]) == {"mutated/injected"} and log["unparsed_lines"] == 0
sys.exit(0 if ok else 1)' "$log" || die "$name: unexpected admission log: $log"
        checks=$("$PY" -c 'import json,sys; a=json.loads(sys.argv[1]); a["log"]=json.loads(sys.argv[2]); print(json.dumps(a))' "$checks" "$log")
    fi
    local shown="${SETSID[*]:+${SETSID[*]} }taskset -c $SERVER_CPU ${NICE[*]:+${NICE[*]} }${env[*]:+${env[*]} }${cmd[*]} >$stdout_to"
    "$PY" "$BENCH/report.py" target "$name" "$round" "$stdout_to" "$shown" "$SAT_SECONDS" \
        "$rss_idle" "$rss_after" "$rss_peak" "$checks" -- "${wrk_files[@]}" -- "${fixed_files[@]}" >>"$RESULTS"
}

for ((round = 1; round <= ROUNDS; round++)); do
    for target in $TARGETS; do
        run_target "$target" "$round"
    done
done

"$PY" "$BENCH/report.py" render "$RESULTS" >"$WORK/results.md"
echo
cat "$WORK/results.md"
echo
echo "Load generators: BENCH_BODY=<compact review> taskset -c $LOAD_CPU wrk -t1 -c$CONNECTIONS -d${SAT_SECONDS}s --timeout 5s --latency -s benchmarks/mutate.lua $URL"
echo "                 taskset -c $LOAD_CPU $PY benchmarks/fixed_rate.py --port $PORT --cafile <ca.crt> --body <compact review> --rate R --duration $RATE_SECONDS --warmup 1 --connections $CONNECTIONS"

if [[ -n ${BENCH_OUT:-} ]]; then
    mkdir -p "$BENCH_OUT"
    cp "$WORK"/results.md "$WORK"/results.jsonl "$BENCH_OUT"/
    cp "$WORK"/*.wrk "$WORK"/*.json "$BENCH_OUT"/ 2>/dev/null || true
    note "results copied to $BENCH_OUT"
fi
if [[ ${BENCH_ENFORCE:-0} == 1 ]]; then
    "$PY" "$BENCH/report.py" targets-met "$RESULTS" || die "the webhook missed its targets (BENCH_ENFORCE=1)"
fi
