#!/usr/bin/env bash
# The measurements of one short lent-GPU session (issue 38), most important first, each part under its own time
# limit and printed as it is measured: a session cut short keeps what it measured. Run from the project root on the
# card's machine, after `source .whl/activate` (see the developers' notes on the device tool). Logs go to $OUT.
#   bash benchmarks/gpu_session.sh
# A rehearsal on a CPU (tiny settings, the compiled path traced without code generation):
#   PYTHON=.venv/bin/python NO_GPU=1 BENCH_EXTRA="--device cpu --compile-backend aot_eager --images 24 --steps 1
#     --epochs 2 --folds 2 -s model.backbone=hrnet_w18_small -s model.input_size=[64,64] -s train.batch_size=4
#     -s train.workers=0" bash benchmarks/gpu_session.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
DATA=$(mktemp -d)/synth
B="${PYTHON:-python3} benchmarks/bench_gpu.py --config configs/adk2021.yaml --data $DATA ${BENCH_EXTRA:-}"
log() { tee -a "$OUT/session.log"; }
[[ -z ${NO_GPU:-} ]] && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | log
${PYTHON:-python3} -c "import torch, os; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cores', os.cpu_count())" | log
start=$SECONDS
part() {  # part SECONDS ARGS...: one bench_gpu invocation, its rows as they come
  local limit=$1; shift
  echo "== $* (limit ${limit} s, session at $((SECONDS - start)) s)" | log
  timeout "$limit" $B "$@" 2>&1 | grep -v "^W[0-9]" | log
}
# 1. the pipeline: cattlepose train compiled (PSA parallel, then none: their ratio), then auto (eager here: a short run)
part 240 --skip network,loader,predict --train-runs parallel:on,none:on
# 2. the network step, eager and regional (the regional graphs come from the cache the runs above filled)
part 100 --skip loader,train,predict --variants eager,regional
# 3. predict, 5 folds + flip: as auto decides (eager for 2,048 crops) and compiled
part 110 --skip network,loader,train --predict-compile auto,on
# 4. the eager pipeline (compile auto on a short run) and the loader alone
part 70 --skip network,predict --train-runs parallel:auto
# 5. CUDA graphs per region, and where the PSA step's time goes
part 70 --skip loader,train,predict --variants cudagraphs --profile regional
echo "== session done at $((SECONDS - start)) s" | log
