#!/usr/bin/env bash
# Checks a GPU machine: the learners' tests, then the update-alone throughput of both presets against the GPU's
# matmul peak. Needs only jax (with its GPU plugin), dm-haiku, optax, chex, dm-env, dm-tree and pytest, so it runs
# under a machine's own Python where the full stack (Python 3.10, TensorFlow 2.8, Reverb, Launchpad) is absent.
#   bash scripts/gpu_check.sh OUT_DIR [COMMIT]
# Writes OUT_DIR/{gpu.txt, tests.log, throughput_paper.{json,md}, throughput_laptop.{json,md}}; exit 1 if any
# part failed.
set -u
out=${1:?usage: gpu_check.sh OUT_DIR [COMMIT]}
commit=${2:-$(git rev-parse --short=10 HEAD 2>/dev/null || echo unknown)}
python=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
status=0
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$python" -c "import sys, jax, jaxlib, haiku, optax; print('python', sys.version.split()[0], 'jax', jax.__version__,
  'jaxlib', jaxlib.__version__, 'haiku', haiku.__version__, 'optax', optax.__version__); print(jax.devices())"
} > "$out/gpu.txt" 2>&1 || status=1
cat "$out/gpu.txt"
# The paper preset first: it is what a GPU is for.
for preset in paper laptop; do
  timeout "${BENCH_TIMEOUT:-300}" "$python" scripts/benchmark_throughput.py --preset=$preset --skip_launch \
    --commit="$commit" --seconds="${BENCH_SECONDS:-4}" --out "$out/throughput_$preset" 2>&1 |
    grep -v "^WARNING\|^I0000\|^W0000" || status=1
done
# Hand-computed losses and the agents' learner tests, at full fp32 matmul precision: they check the math to
# float32 rounding, which TF32 (jax's GPU default, and the benchmark's) does not keep. Left out: the count of
# glibc page faults in a CPU learner's host buffers, calibrated on the pinned CPU jaxlib.
JAX_DEFAULT_MATMUL_PRECISION=highest timeout "${TEST_TIMEOUT:-300}" "$python" -m pytest -q -p no:cacheprovider \
  tests/test_losses.py tests/test_agents.py \
  --deselect tests/test_agents.py::test_a_learner_process_reuses_freed_buffers_instead_of_faulting_them_in_again \
  > "$out/tests.log" 2>&1 || status=1
tail -5 "$out/tests.log"
exit $status
