#!/usr/bin/env bash
# One short GPU loan, prepared as a single call (a loan is minutes long). It runs, side by side on
# the one GPU and each cut at SECONDS, the two sweeps the open issues need rows from:
#   - benchmarks/fashion_mnist_classes.toml (the all-class sweep, 18 contexts x 6 rows) into
#     benchmarks/results/fashion_mnist_classes_gpu (GPU rows only: every row of a context reads
#     models trained on the same device);
#   - benchmarks/fashion_mnist.toml (every method x forget {0}, {6} x 3 seeds) into
#     benchmarks/results/fashion_mnist.
# The runs write into the repository's committed result folders, which travel with the working
# tree: each call (and each session) resumes from the rows committed before it. Copy OUT's row
# files back over them and commit. (Run folders outside the tracked tree did not survive between
# two calls of one loan on 2026-12-04, though the model cache did.) With --check it first runs the
# GPU path check (fit against the bare loop with bf16 autocast and channels_last, then
# `spotter train` under torchrun), ~3 min.
#
#   bash benchmarks/gpu_session.sh OUT SECONDS [--check]
#
# It expects .devdata/fashion-mnist/ (the four IDX files) next to the repository's files and
# optionally .devdata/cache/models/ (cached checkpoints; carry them to reuse the models of earlier
# calls, within the 64 MiB a call may carry). It returns, under OUT: the two row files,
# the logs, and the trained reference models (originals first) split in 15 MiB parts, so that a CPU
# session can finish an unfinished context on the same models:
#   cat OUT/models.tar.part-* | tar x -C ~/.cache/spotter
# Status: ran on an H200 on 2026-12-04 (benchmarks/README.md, "one GPU loan"); the rows it wrote
# then are all stale since (spotter_auto v4, the relearning grid in bench rows): --rerun-stale redoes them.
set -u
out=${1:?usage: gpu_session.sh OUT SECONDS [--check]}
budget=${2:?usage: gpu_session.sh OUT SECONDS [--check]}
check=${3:-}
dev=${DEV:-cuda:0}  # DEV=cpu tries the script on a machine without a GPU
classes_workers=${CLASSES_WORKERS:-12}  # the all-class sweep first: the most important open issue
fm_workers=${FM_WORKERS:-4}
mkdir -p "$out" .devruns/cache/models .devruns/logs
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 SPOTTER_DATA=$PWD/.devdata SPOTTER_CACHE=$PWD/.devruns/cache
export SPOTTER_GIT_REVISION=${SPOTTER_GIT_REVISION:-unknown}
cp -n .devdata/cache/models/*.safetensors .devruns/cache/models/ 2>/dev/null
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
  python3 -c 'import torch, sklearn; print("torch", torch.__version__, "sklearn", sklearn.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))'; } > "$out/gpu.txt" 2>&1
t0=$(date +%s)
if [[ "$check" == "--check" ]]; then
  timeout 150 python3 benchmarks/throughput.py --gpu-check --check-epochs 1 --device "$dev" \
    --data-dir .devdata/fashion-mnist > .devruns/logs/gpu_check.log 2>&1
  echo "gpu check rc $? in $(( $(date +%s) - t0 )) s" >> .devruns/logs/gpu_check.log
  timeout 60 python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m spotter train --epochs 1 --width 64 \
    --device "$dev" --out .devruns/ddp.safetensors >> .devruns/logs/gpu_check.log 2>&1
  echo "torchrun rc $? at $(( $(date +%s) - t0 )) s" >> .devruns/logs/gpu_check.log
fi
left=$(( budget - ($(date +%s) - t0) ))
# one torch thread per worker: bench splits OMP_NUM_THREADS over its workers; 16 in all
OMP_NUM_THREADS=$classes_workers timeout -s INT -k 20 "$left" python3 -m spotter bench \
  benchmarks/fashion_mnist_classes.toml --out benchmarks/results/fashion_mnist_classes_gpu --rerun-stale \
  --workers "$classes_workers" --devices "$dev" \
  >> .devruns/logs/classes.log 2>&1 &
classes_pid=$!
OMP_NUM_THREADS=$fm_workers timeout -s INT -k 20 "$left" python3 -m spotter bench \
  benchmarks/fashion_mnist.toml --out benchmarks/results/fashion_mnist --rerun-stale --workers "$fm_workers" \
  --devices "$dev" \
  >> .devruns/logs/fm.log 2>&1 &
fm_pid=$!
( while sleep 60; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done ) \
  >> .devruns/logs/gpu_load.log 2>&1 &
watcher=$!
wait "$classes_pid" "$fm_pid"
kill "$watcher" 2>/dev/null
pkill -INT -f "spotter bench" 2>/dev/null; sleep 2; pkill -KILL -f "multiprocessing" 2>/dev/null
echo "runs stopped at $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
cp benchmarks/results/fashion_mnist_classes_gpu/results.jsonl "$out/classes.jsonl" 2>/dev/null
cp benchmarks/results/fashion_mnist/results.jsonl "$out/fm.jsonl" 2>/dev/null
tar czf "$out/logs.tgz" .devruns/logs
# originals first (each serves every context of its seed), training states left out; at most 3
# parts of 15 MiB come back
( cd .devruns/cache && { ls models/*-original-*.safetensors; ls models/*-retrained-*.safetensors; } 2>/dev/null \
  | grep -v '\.state\.' > ../models.list )
( cd .devruns/cache && tar cf - -T ../models.list ) | split -b 15M - "$out/models.tar.part-"
rm -f "$out"/models.tar.part-a[d-z]
ls -la "$out"
for f in "$out"/classes.jsonl "$out"/fm.jsonl; do echo "$f: $(wc -l < "$f") rows"; done
cat "$out/gpu.txt" .devruns/logs/gpu_load.log
grep -h "failed\|Error\|Traceback" .devruns/logs/*.log 2>/dev/null | head -20
grep -h "done in" .devruns/logs/*.log 2>/dev/null | tail -30
