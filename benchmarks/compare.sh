#!/usr/bin/env bash
# Our broker next to a real RabbitMQ, in one command, with the shared amqp-perf scenarios.
#
#   benchmarks/compare.sh [RABBITMQ_PORT]
#
# Starts `python -m amqp_server` on a free loopback port (port 0, read back from its
# "listening on" line) with a throw-away data dir and a high fd limit, runs the
# amqp-perf scenarios against it, stops it and removes the data dir.
#   * with RABBITMQ_PORT: amqp-perf's compare.sh, interleaved rounds, then the
#     min/median/max table with the ours/rabbitmq ratio of medians;
#   * without: one pass of amqp-perf's scenarios.sh against our broker only.
# Environment (all optional):
#   ROUNDS      rounds for the comparison (default 3)
#   SCENARIOS   scenario letters (default abcdfgh; e and i are slow or fd-hungry)
#   DURATION    seconds per throughput scenario (default 5)
#   BACKLOG     messages for scenario g (default 200000)
#   FD_LIMIT    soft RLIMIT_NOFILE for our broker, capped at the hard limit (default 65536)
#   AMQP_PERF   directory of the amqp-perf tools (default /work/shared/tools/amqp-perf)
#   PYTHON      interpreter for our broker (default .venv/bin/python of this repo)
#   AMQP_SERVER_MANAGEMENT_PORT  the management API's port (default 0: a free one; -1: off)
#   KEEP_LOG=1  keep the broker's log and data dir (their path is printed)
# Also passed through to amqp-perf: RESULTS, DRAIN_TIMEOUT, IDLE_CONNS, CHURN_CONNS, AMQP_PERF_HOME.
# Exit status: number of failed scenario runs on our broker (amqp-perf exit != 0),
# 100 if something could not be started.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
RABBIT_PORT=${1:-}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-abcdfgh}
AMQP_PERF=${AMQP_PERF:-/work/shared/tools/amqp-perf}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
FD_LIMIT=${FD_LIMIT:-65536}
export DURATION=${DURATION:-5} BACKLOG=${BACKLOG:-200000}
OUTDIR=${AMQP_PERF_HOME:-/tmp/amqp-perf}
mkdir -p "$OUTDIR/results"
export RESULTS=${RESULTS:-$OUTDIR/results/ours-$(date +%Y%m%d-%H%M%S)${RABBIT_PORT:+-vs-$RABBIT_PORT}.jsonl}

[ -x "$AMQP_PERF/scenarios.sh" ] || { echo "no amqp-perf in $AMQP_PERF (set AMQP_PERF)" >&2; exit 100; }
[ -x "$PYTHON" ] || { echo "no Python at $PYTHON (set PYTHON)" >&2; exit 100; }
if [ -n "$RABBIT_PORT" ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$RABBIT_PORT") 2>/dev/null; then
    echo "nothing listens on 127.0.0.1:$RABBIT_PORT (start it: /work/shared/tools/rabbitmq-ref.sh start $RABBIT_PORT)" >&2
    exit 100
fi

WORK=$(mktemp -d /tmp/amqp-compare.XXXXXX)
LOG=$WORK/broker.log
BROKER_PID=
STOPPED=

stop_broker() {
    [ -z "$STOPPED" ] || return 0
    STOPPED=1
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID"
        for _ in $(seq 1 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$BROKER_PID" 2>/dev/null && kill -KILL "$BROKER_PID"
        wait "$BROKER_PID" 2>/dev/null
    fi
    BROKER_PID=
    if grep -qE 'WARNING|ERROR|CRITICAL|Traceback' "$LOG" 2>/dev/null; then
        echo "# warnings/errors in our broker's log:"
        grep -E -A3 'WARNING|ERROR|CRITICAL|Traceback' "$LOG" | head -n 40
    fi
    if [ "${KEEP_LOG:-0}" = 1 ]; then
        echo "# broker log and data dir kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap stop_broker EXIT
trap 'exit 130' INT TERM

# Our broker: exec keeps the pid of the background subshell, so $! is the broker itself.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$FD_LIMIT" -le "$hard" ] || FD_LIMIT=$hard
(
    ulimit -Sn "$FD_LIMIT" || exit 100
    # the management API on a free port, not 15672 (AMQP_SERVER_MANAGEMENT_PORT=-1: measure without it)
    export AMQP_SERVER_MANAGEMENT_PORT=${AMQP_SERVER_MANAGEMENT_PORT:-0}
    cd "$REPO" && exec "$PYTHON" -m amqp_server --host 127.0.0.1 --port 0 \
        --data-dir "$WORK/data" --log-level warning
) 2>"$LOG" &
BROKER_PID=$!
PORT=
for _ in $(seq 1 200); do
    PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$LOG" | head -n 1)
    [ -n "$PORT" ] && break
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$PORT" ]; then
    echo "our broker did not start:" >&2
    cat "$LOG" >&2
    exit 100
fi
echo "# our broker: pid $BROKER_PID on 127.0.0.1:$PORT, fd limit $(awk '/open files/ {print $4}' "/proc/$BROKER_PID/limits"), load average $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "$RABBIT_PORT" ]; then
    LABEL_A=rabbitmq LABEL_B=ours PID_B=$BROKER_PID \
        "$AMQP_PERF/compare.sh" "$RABBIT_PORT" "$PORT" "$ROUNDS" "$SCENARIOS"
else
    LABEL=ours BROKER_PID=$BROKER_PID "$AMQP_PERF/scenarios.sh" "$PORT" "$SCENARIOS"
fi
echo "# load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

# Count our failed runs from the JSON lines (compare.sh's own exit status is the report's).
failed=$(python3 - "$RESULTS" <<'EOF'
import json, sys
bad = 0
for line in open(sys.argv[1]):
    run = json.loads(line)
    if run.get("label") == "ours" and run.get("rc", 0) != 0:
        bad += 1
        print(f"# FAILED on ours: scenario {run.get('scenario')}: {'; '.join(run.get('errors', []))}",
              file=sys.stderr)
print(bad)
EOF
)
stop_broker
exit "${failed:-100}"
