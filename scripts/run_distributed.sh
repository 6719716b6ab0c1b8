#!/usr/bin/env bash
# Data-parallel pretraining on MindSpore's own launcher (msrun): one worker process per device.
#   bash scripts/run_distributed.sh --workers N [--total-workers T] [--node-rank R] [--master-addr ADDR]
#        [--master-port PORT] [--log-dir DIR] [--cluster-timeout S] -- PRETRAIN_ARGS...
# One node (e.g. an 8-NPU Ascend server):  --workers 8 -- --preset gpt1 --corpus C --out runs/x
# Several nodes: the same command on each, with --total-workers (all nodes), --node-rank (0 on the master
# node) and --master-addr (the master node's address, reachable from every node).
# PRETRAIN_ARGS are `ms-gpt pretrain` options (--distributed is added); --batch-size is per worker.
# Each worker's output goes to LOG_DIR/worker_RANK.log (default runs/msrun-logs). Relative paths (LOG_DIR,
# --corpus, --out, ...) are taken from the folder the script is called from, as for ms-gpt itself.
# Exit status: 0 when every worker finished; otherwise non-zero, naming each failed rank and its log.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"

WORKERS=""
TOTAL=""
NODE_RANK=0
MASTER_ADDR=127.0.0.1
MASTER_PORT=8118
LOG_DIR=runs/msrun-logs
TIMEOUT=120
die() { echo "run_distributed.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) [ $# -ge 2 ] || die "--workers needs a value"; WORKERS="$2"; shift 2 ;;
    --total-workers) [ $# -ge 2 ] || die "--total-workers needs a value"; TOTAL="$2"; shift 2 ;;
    --node-rank) [ $# -ge 2 ] || die "--node-rank needs a value"; NODE_RANK="$2"; shift 2 ;;
    --master-addr) [ $# -ge 2 ] || die "--master-addr needs a value"; MASTER_ADDR="$2"; shift 2 ;;
    --master-port) [ $# -ge 2 ] || die "--master-port needs a value"; MASTER_PORT="$2"; shift 2 ;;
    --log-dir) [ $# -ge 2 ] || die "--log-dir needs a value"; LOG_DIR="$2"; shift 2 ;;
    --cluster-timeout) [ $# -ge 2 ] || die "--cluster-timeout needs a value"; TIMEOUT="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) die "unknown option '$1' (accepted: --workers, --total-workers, --node-rank, --master-addr, --master-port, --log-dir, --cluster-timeout, then -- PRETRAIN_ARGS)" ;;
  esac
done
isint() { [[ "$1" =~ ^[0-9]+$ ]]; }
isint "$WORKERS" && [ "$WORKERS" -ge 1 ] || die "--workers must be a positive integer (workers on this node), got '${WORKERS}'"
TOTAL="${TOTAL:-$WORKERS}"
isint "$TOTAL" && [ "$TOTAL" -ge "$WORKERS" ] || die "--total-workers must be an integer >= --workers ($WORKERS), got '$TOTAL'"
isint "$NODE_RANK" || die "--node-rank must be an integer, got '$NODE_RANK'"
isint "$MASTER_PORT" && [ "$MASTER_PORT" -ge 1024 ] && [ "$MASTER_PORT" -le 65535 ] \
  || die "--master-port must be in 1024..65535, got '$MASTER_PORT'"
[ $# -gt 0 ] || die "nothing to run: give the pretrain options after --, e.g. -- --corpus builtin:demo-en --out runs/dp"
for a in "$@"; do [ "$a" = "--distributed" ] && die "do not pass --distributed: this script adds it"; done

PY="${MS_GPT_PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PY" ] || PY=$(command -v python3)
BIN=$(dirname "$PY")
MSRUN="$BIN/msrun"
[ -x "$MSRUN" ] || MSRUN=$(command -v msrun || true)
[ -n "$MSRUN" ] || die "msrun not found next to $PY or on PATH (it comes with mindspore): run scripts/setup.sh"

# The master node's scheduler listens on MASTER_PORT: a busy port would only show up later as a
# cluster timeout, so check it here.
if [ "$NODE_RANK" = 0 ]; then
  if ! "$PY" - "$MASTER_ADDR" "$MASTER_PORT" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.bind(("0.0.0.0" if sys.argv[1] not in ("127.0.0.1", "localhost") else sys.argv[1], int(sys.argv[2])))
except OSError as e:
    sys.exit(f"{e.strerror}")
finally:
    s.close()
EOF
  then
    die "--master-port $MASTER_PORT on $MASTER_ADDR is in use: stop what holds it or choose another --master-port"
  fi
fi

mkdir -p "$LOG_DIR"
rm -f "$LOG_DIR"/worker_*.log "$LOG_DIR"/scheduler.log
echo "run_distributed.sh: $WORKERS worker(s) on node $NODE_RANK of a $TOTAL-worker job, master $MASTER_ADDR:$MASTER_PORT, logs in $LOG_DIR/"
# msrun starts the scheduler and the workers with `python SCRIPT ARGS`; the venv's bin goes first on
# PATH so every worker runs this Python.
status=0
export GLOG_v="${GLOG_v:-3}"  # MindSpore's C++ INFO/WARNING lines stay out of the worker logs unless asked for
PATH="$BIN:$PATH" "$MSRUN" --worker_num="$TOTAL" --local_worker_num="$WORKERS" --master_addr="$MASTER_ADDR" \
  --master_port="$MASTER_PORT" --node_rank="$NODE_RANK" --log_dir="$LOG_DIR" --join=True \
  --cluster_time_out="$TIMEOUT" "$REPO/ms_gpt/__main__.py" pretrain --distributed "$@" || status=$?

failed=0
for log in "$LOG_DIR"/worker_*.log; do
  [ -f "$log" ] || continue
  rank=$(basename "$log" .log); rank=${rank#worker_}
  if grep -qE '^Traceback|^ms-gpt pretrain: |Error: ' "$log" && ! grep -q '"train_loss"' "$log"; then
    failed=1
    echo "run_distributed.sh: rank $rank failed; its log is $log:" >&2
    grep -E 'Error|ms-gpt pretrain: ' "$log" | tail -n 3 | sed 's/^/    /' >&2
  fi
done
if [ "$status" != 0 ] || [ "$failed" = 1 ]; then
  [ "$failed" = 1 ] || echo "run_distributed.sh: msrun exited with status $status; see the logs in $LOG_DIR/" >&2
  exit $(( status != 0 ? status : 1 ))
fi
echo "run_distributed.sh: all $WORKERS worker(s) finished"
# On the master node, rank 0's metrics (the last JSON line of its log) close the output.
[ -f "$LOG_DIR/worker_0.log" ] && grep -E '^\{' "$LOG_DIR/worker_0.log" | tail -n 1 || true
