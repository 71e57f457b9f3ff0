#!/usr/bin/env bash
# bench/device/run.sh OUTDIR [bench.gpu options]: the GPU suite on a machine with a CUDA torch and no package
# registry. Where diffusers or pydantic is missing, installs the wheels of .whl/ (bench/device/fetch_wheels.sh) into a
# folder of their own, leaving the machine's torch and transformers as they are, prints the environment, and runs `python -m bench.gpu` into OUTDIR
# (gpu.jsonl, gpu.md, log.txt), after the kernel probe on CUDA (bench.probe: probe.jsonl, probe.txt, ~90 s). Default
# budget: 450 s for bench.gpu, so the whole command fits a 10-minute window.
# MONTAGE_BENCH=bench.gpu_steps runs the step checkpoint/preview suite instead (steps.jsonl); bench.adapters the LoRA
# costs (adapters.json).
set -euo pipefail
out=${1:?usage: bench/device/run.sh OUTDIR [bench.gpu options]}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
site=${MONTAGE_SITE:-/tmp/montage-site}
python=${PYTHON:-python3}
mkdir -p "$out"
cd "$root"
if ! "$python" -c 'import diffusers, pydantic, pydantic_settings, ftfy, peft' 2>/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site:$root${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  fi
  nproc
  "$python" -c 'import sys, torch, transformers, diffusers, pydantic; print(sys.version.split()[0], torch.__version__,
torch.version.cuda, transformers.__version__, diffusers.__version__, pydantic.__version__)'
} 2>&1 | tee "$out/env.txt"
budget=()
[[ " $* " == *" --budget-s "* ]] || budget=(--budget-s 450)
if [[ " $* " != *" --device cpu "* && -z "${MONTAGE_BENCH:-}" ]]; then  # kernel facts first (~90 s): OUTDIR/probe.jsonl
  "$python" -m bench.probe --out "$out" 2>&1 | tee "$out/probe.txt"
fi
"$python" -m "${MONTAGE_BENCH:-bench.gpu}" --out "$out" "${budget[@]}" "$@" 2>&1 | tee "$out/log.txt"
