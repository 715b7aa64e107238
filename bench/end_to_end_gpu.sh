#!/usr/bin/env bash
# bench/end_to_end.py at paper sizes on a GPU machine, as one command: the training command of
# both stages against their steps alone, with input workers = the host's cores, and the host's
# CPU ms per example. Results in $OUT: end_to_end.md (the section for docs/performance.md),
# end_to_end.jsonl (one line per measurement, written as each finishes), end_to_end.log, env.txt.
#
# Once, in the checkout (the real BV2 sample is beside it, in ../shared, which does not travel):
#   echo /.bench_sample/ >> .git/info/exclude
#   cp -r ../shared/data/batvision_v2_sample/unknown_location .bench_sample
# Then, with the device tool (wheels in .whl for what the GPU image lacks: grain, TFDS, ...):
#   run(command="bash bench/end_to_end_gpu.sh", carry=[".whl", ".bench_sample"], timeout_s=600)
# Arguments pass on to bench/end_to_end.py, e.g. `--stage=avsnet --skip_host` and
# `--stage=relative --skip_host` as two shorter calls, `--stored`, `--dtype=bfloat16`. Measured
# on an H200: AVS-Net ~6 min (two compiles of ~100 s), Monodepth2 ~2.5 min.
set -o pipefail
OUT=${OUT:-/tmp/end_to_end_out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >/dev/null 2>&1 || { echo "installing .whl failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; } | tee "$OUT/env.txt"
timeout 570 python3 bench/end_to_end.py --paper --stage=both --sample_dir=.bench_sample \
  --results="$OUT/end_to_end.md" --out_json="$OUT/end_to_end.jsonl" "$@" 2>&1 \
  | grep -v -e "it/s\]" -e "examples/s\]" | tee "$OUT/end_to_end.log"
