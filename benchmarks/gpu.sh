#!/usr/bin/env bash
# GPU benchmarks in one call of under ten minutes on a machine that can fetch nothing: installs
# the Python packages its image lacks from wheels carried in .whl/, then runs benchmarks/gpu.py
# (train tokens/s and MFU of GPT-2 small and a ~1B decoder, KV-cached decoding).
#
#   bash benchmarks/gpu.sh --fetch-wheels    # once, where pip reaches an index: fills .whl/
#   bash benchmarks/gpu.sh [GPU.PY ARGS...]  # on the GPU machine, from a checkout with .whl/
#
# The image (Python 3.12, jax with CUDA, flax, optax, orbax, sentencepiece) lacks grain (and its
# array-record and portpicker) and ml-collections, which roots_jax imports; the wheels below are
# the versions tested with it, for CPython 3.12 on manylinux x86-64 (4.5 MB; .gitignore keeps
# .whl/ out of git). The GPU machine gets no git history: pass `--commit SHA` to record the
# commit. The table is also written to $OUT/gpu_results.md.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(grain==0.2.18 array-record==0.8.6 portpicker==1.6.0 ml-collections==1.1.0)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  platforms=()
  for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${p}_x86_64")
  done
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "${WHEELS[@]}"
  exit 0
fi

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}" PYTHONUNBUFFERED=1
# The allocator takes this share of the GPU up front; the batch search fills 92% of it.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
python3 -c 'import flax, jax, optax; print("jax", jax.__version__, "flax", flax.__version__,
"optax", optax.__version__, jax.devices())'
python3 benchmarks/gpu.py "$@"
