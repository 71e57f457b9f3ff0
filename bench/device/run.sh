#!/usr/bin/env bash
# bench/device/run.sh OUTDIR [bench options]: the one device run (issue #29) on a machine with a CUDA torch and no
# package registry. Where diffusers or pydantic is missing, installs the wheels of .whl/ (bench/device/fetch_wheels.sh)
# into a folder of their own, leaving the machine's torch and transformers as they are, prints the environment, runs
# the kernel probe on CUDA (bench.probe: probe.jsonl, probe.txt, ~90 s), then `python -m bench.speed` into OUTDIR
# (speed.jsonl, speed.md, llm/llm.json, log.txt): every family's paths side by side, step batching and the LLM rows.
# Default budget on a GPU: 440 s for bench.speed, so the whole command stays under 9 minutes (none in CPU smoke
# mode). Afterwards, here: `python -m bench.speed --notes OUTDIR` copies the rows to bench/notes/<date>-<card>-speed.jsonl.
# MONTAGE_BENCH=bench.gpu runs the earlier GPU suite instead (gpu.jsonl, gpu.md; budget 450 s), bench.gpu_steps the
# step checkpoint/preview suite (steps.jsonl), bench.adapters the LoRA costs (adapters.json).
set -euo pipefail
out=${1:?usage: bench/device/run.sh OUTDIR [bench.gpu options]}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
site=${MONTAGE_SITE:-/tmp/montage-site}
python=${PYTHON:-python3}
mkdir -p "$out"
cd "$root"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
versions() {  # one import of what the run needs, which prints the versions: it fails where a package is missing
  "$python" -c 'import sys, torch, transformers, diffusers, pydantic, pydantic_settings, ftfy, peft
print(sys.version.split()[0], torch.__version__, torch.version.cuda, transformers.__version__, diffusers.__version__,
      pydantic.__version__)'
}
if ! found=$(versions 2>/dev/null); then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site:$root${PYTHONPATH:+:$PYTHONPATH}"
  found=$(versions)  # a package still missing: its ImportError, and the run stops
fi
{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  fi
  nproc
  echo "$found"
} 2>&1 | tee "$out/env.txt"
bench=${MONTAGE_BENCH:-bench.speed}
budget=()
[[ " $* " == *" --budget-s "* || " $* " == *" --device cpu "* ]] || budget=(--budget-s "$([[ $bench == bench.speed ]] && echo 440 || echo 450)")
if [[ " $* " != *" --device cpu "* && -z "${MONTAGE_BENCH:-}" ]]; then  # kernel facts first (~90 s): OUTDIR/probe.jsonl
  "$python" -m bench.probe --out "$out" 2>&1 | tee "$out/probe.txt"
fi
"$python" -m "$bench" --out "$out" "${budget[@]}" "$@" 2>&1 | tee "$out/log.txt"
