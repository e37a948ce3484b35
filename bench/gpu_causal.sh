#!/usr/bin/env bash
# One device session (a lent GPU): the cached stream's exactness tests on CUDA, then the causal benchmarks at
# 832x480 with TAEHV in bf16 (random weights): Self-Forcing, CausVid, Rolling Forcing, LongLive (with a prompt
# switch), and the bidirectional Wan benchmark. Results go to $OUT.
set -u
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 STREAMDIT_NO_PROGRESS=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" 2>&1 | tee -a "$OUT/gpu.txt"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_causal.py > "$OUT/tests.txt" 2>&1; tail -3 "$OUT/tests.txt"
for fam in ${FAMILIES:-self-forcing causvid rolling-forcing longlive}; do
  timeout 150 python3 bench/causal_fps.py --family "$fam" --seconds 10 --windows 3 \
      --json "$OUT/causal-$fam-1.3b.json" --plot "$OUT/causal-$fam-1.3b.png" 2>&1 | tail -9
done
if [ -z "${SKIP_BIDIRECTIONAL:-}" ]; then
  timeout 150 python3 bench/wan_fps.py --seconds 5 --decoders taehv,vae --json "$OUT/wan-bidirectional-1.3b.json" \
      2>&1 | tail -8
fi
