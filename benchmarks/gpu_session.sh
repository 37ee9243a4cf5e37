#!/usr/bin/env bash
# One short GPU loan, prepared as a single call (a loan is minutes long and there is no time for a
# second try). Status: tried end to end on a CPU with DEV=cpu; not yet run on a GPU. It does:
#   1. (with --check) the GPU path check: width-64 ResNet-18 on Fashion-MNIST, one epoch of `fit`
#      against the bare loop with bf16 autocast and channels_last on/off (throughput.py --gpu-check),
#      then `spotter train` under torchrun (DDP over NCCL, one process) for one epoch;
#   2. three runs side by side on the one GPU, each cut at SECONDS and resumable (a second call
#      picks up where the first stopped: bench skips finished jobs, models come from the cache):
#      benchmarks/fm_methods.toml (issue 3), benchmarks/fashion_mnist.toml (issue 5) and the
#      Fashion-MNIST ViT table of benchmarks/faces_vit.py (issue 7).
# The rows (no checkpoints) are packed into OUT/runs.tgz; render them anywhere with `spotter report`.
#
#   bash benchmarks/gpu_session.sh OUT SECONDS [--check]
#
# It expects, next to the repository's files: .devdata/fashion-mnist/ (the four IDX files) and
# optionally .devdata/cache/models/ (cached original/retrained checkpoints, e.g. the CPU-trained
# ones, so that issue 3's table uses the demo's models). Runs live in .devruns/ (git-ignored).
set -u
out=${1:?usage: gpu_session.sh OUT SECONDS [--check]}
budget=${2:?usage: gpu_session.sh OUT SECONDS [--check]}
check=${3:-}
dev=${DEV:-cuda:0}  # DEV=cpu tries the script on a machine without a GPU
mkdir -p "$out" .devruns/cache/models
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 SPOTTER_DATA=$PWD/.devdata SPOTTER_CACHE=$PWD/.devruns/cache
cp -n .devdata/cache/models/*.safetensors .devruns/cache/models/ 2>/dev/null
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))'; } > "$out/gpu.txt" 2>&1
t0=$(date +%s)
if [[ "$check" == "--check" ]]; then
  timeout 150 python3 benchmarks/throughput.py --gpu-check --check-epochs 1 --device "$dev" \
    --data-dir .devdata/fashion-mnist > "$out/gpu_check.log" 2>&1
  echo "gpu check rc $? in $(( $(date +%s) - t0 )) s" >> "$out/gpu_check.log"
  timeout 60 python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m spotter train --epochs 1 --width 64 \
    --device "$dev" --out .devruns/ddp.safetensors >> "$out/gpu_check.log" 2>&1
  echo "torchrun rc $? at $(( $(date +%s) - t0 )) s" >> "$out/gpu_check.log"
fi
left=$(( budget - ($(date +%s) - t0) ))
# threads: bench splits torch's threads over its workers; keep the sum near the 16 cores
OMP_NUM_THREADS=3 timeout "$left" python3 -m spotter bench benchmarks/fm_methods.toml --out .devruns/fm_methods \
  --workers 3 --devices "$dev" >> "$out/fm_methods.log" 2>&1 &
OMP_NUM_THREADS=12 timeout "$left" python3 -m spotter bench benchmarks/fashion_mnist.toml --out .devruns/fm \
  --workers 12 --devices "$dev" >> "$out/fm.log" 2>&1 &
# the Spotter settings search around the fashion-mnist preset (issue 2), four processes
mkdir -p .devruns/search
search() {  # name, then JSON settings
  local name=$1; shift
  OMP_NUM_THREADS=1 timeout "$left" python3 benchmarks/spotter_search.py --preset fashion-mnist --device "$dev" \
    --out ".devruns/search/$name.jsonl" "$@" >> "$out/search.log" 2>&1
}
search neighbourhood '{"eps":0.06,"step":0.02}' '{"eps":0.1,"step":0.03,"steps":5}' '{"lambda1":0.5}' \
  '{"lambda1":0.3}' '{"direction":"away"}' '{"lambda1":0.5,"lambda2":1.15}' &
search teacher '{"temperature":3}' '{"temperature":3,"lambda2":1.5}' '{"temperature":4,"lambda2":1.5}' \
  '{"temperature":2.5,"lambda2":1.35}' '{"lambda2":1.2}' '{"lambda2":1.3}' &
search schedule '{"lr":8e-4,"lambda2":1.15}' '{"lr":6e-4,"lambda2":1.35}' '{"epochs":8}' \
  '{"epochs":12,"lr":5e-4}' '{"lr":1e-3,"epochs":6}' '{"copies":2,"lr":4e-4}' &
search seeds --references '{}' '{"seed":1}' '{"seed":2}' '{"neighbour_seed":1}' '{"seed":1,"neighbour_seed":1}' \
  '{"train_head":true}' &
OMP_NUM_THREADS=1 timeout "$left" python3 benchmarks/faces_vit.py fashion --out .devruns/vit --device "$dev" \
  >> "$out/vit.log" 2>&1 &
wait
echo "runs stopped at $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu.txt"
# at most 16 MiB per returned file: split the archive (cat "$out"/runs.tgz.part-* | tar xz)
tar czf - --exclude='*.safetensors' --exclude=cache .devruns 2>/dev/null | split -b 15M - "$out/runs.tgz.part-"
ls -la "$out"
for f in .devruns/*/results.jsonl; do echo "$f: $(wc -l < "$f") rows"; done
cat "$out/gpu.txt" "$out/gpu_check.log" 2>/dev/null
grep -h "^| spotter" "$out/search.log" 2>/dev/null
grep -h "failed\|Error" "$out"/*.log 2>/dev/null | head -20
