"""Alternating timing of an agent's image update under the 'xla' and 'tf' learner runtimes: one learner each, the
same batch held in memory, `learner.step()` in windows of N updates. Needs tf_runtime.patch applied (at 7116bbe).

  TF_ENABLE_ONEDNN_OPTS=1 python results/tf_runtime_2026-12-06/bench_rt.py AGENT [BATCH]
"""

import os
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path[:0] = [os.path.join(ROOT, "scripts"), ROOT]

import jax  # noqa: E402
import numpy as np  # noqa: E402
from dm_env import specs  # noqa: E402

import agents  # noqa: E402
import benchmark_throughput as bt  # noqa: E402
from agents.common import learner as common_learner  # noqa: E402

AGENT = sys.argv[1]
BATCH = int(sys.argv[2]) if len(sys.argv) > 2 else 64
ROUNDS = int(os.environ.get("ROUNDS", 4))
N = int(os.environ.get("N", 10))

builder = agents.make_builder(AGENT, **{**agents.preset(AGENT, "laptop"), "batch_size": BATCH})
shape, dtype = bt.SHAPES["image"]
networks = builder.make_networks(specs.Array(shape, dtype), bt.ACTION_SPEC)
rng = np.random.default_rng(0)
batch = bt._batch(rng, builder.batch_kind, "image", BATCH)
success = bt._batch(rng, "future", "image", bt.NUM_SUCCESS)["observation"]
learners = {}
for runtime in ("xla", "tf"):
  os.environ["LAEO_LEARNER_RUNTIME"] = runtime
  learners[runtime] = builder.make_learner(
    networks,
    bt._Repeat(batch),
    success,
    jax.random.PRNGKey(0),
    counter=common_learner.StepCounter(),
    logger=bt._NoLogger(),
  )
  for _ in range(2):
    learners[runtime].step()
  jax.block_until_ready(learners[runtime].save())
rates = {runtime: [] for runtime in learners}
for _ in range(ROUNDS):
  for runtime, learner in learners.items():
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(N):
      learner.step()
    jax.block_until_ready(learner.save())
    rates[runtime].append(N / (time.perf_counter() - start))
    cpu_ms = (time.process_time() - cpu) / N * 1000
    print(f"{AGENT} b{BATCH} {runtime}: {rates[runtime][-1]:.2f} steps/s, {cpu_ms:.0f} ms CPU/step", flush=True)
print({runtime: round(max(r), 2) for runtime, r in rates.items()})
