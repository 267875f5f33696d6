#!/usr/bin/env bash
# The GPU check in one command (see bench/gpu/README.md): record the machine, run bench/gpu/gpu_check.py.
# Everything lands in $OUT (default bench/gpu/out):
#   run.log  nvidia_smi.txt  pip_list.txt  gpu_results.json  gpu_results.md  run_logs.tar.gz
# The whole script stays inside BUDGET_S seconds (default 450) even if a step hangs: each step has a
# timeout and gpu_check.py starts no run it cannot finish in what is left.
#
# posttrain's requirements must be importable by $PYTHON (default python3): installed, or as wheels in
# $WHEELS (default .whl/), which are then installed into /tmp/site first (for a machine without network;
# SKIP_PIP=1 skips that step).
#
#   bash bench/gpu/run.sh                          # on the GPU machine
#   SKIP_PIP=1 bash bench/gpu/run.sh --cpu-smoke   # the same plumbing on a CPU, 2-layer model
set -u -o pipefail
cd "$(dirname "$0")/../.." || exit 1
START=$(date +%s)
BUDGET_S=${BUDGET_S:-450}
OUT=${OUT:-$PWD/bench/gpu/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "[run.sh +$(elapsed)s] $*"; }

say "posttrain GPU check; budget ${BUDGET_S}s; out $OUT; args: $*"
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
if [ "${SKIP_PIP:-0}" != 1 ] && ls "$WHEELS"/*.whl > /dev/null 2>&1; then
  say "installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into /tmp/site"
  timeout 150 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$WHEELS"/*.whl || { say "pip install failed (exit $?)"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
fi
say "installed; PYTHONPATH=$PYTHONPATH"

{
  timeout 20 nvidia-smi
  timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem,power.limit --format=csv
} > "$OUT/nvidia_smi.txt" 2>&1
head -20 "$OUT/nvidia_smi.txt"
timeout 30 "$PY" -m pip list > "$OUT/pip_list.txt" 2>&1
"$PY" --version

LEFT=$(( BUDGET_S - $(elapsed) ))
say "gpu_check.py with ${LEFT}s left"
timeout --kill-after=10 "$(( LEFT - 5 ))" "$PY" -m bench.gpu.gpu_check --out "$OUT" --budget-s "$(( LEFT - 30 ))" "$@"
CODE=$?
say "gpu_check.py exit $CODE; files in $OUT:"
ls -la "$OUT"
exit $CODE
