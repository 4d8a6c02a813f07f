"""One image update (batch 64, laptop preset) timed on a batch in memory: steps/s and the cores its process keeps busy.

python update_cores.py AGENT SECONDS   # run one, or two at once (two shells) to compare
"""

import os, sys, time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path[:0] = [ROOT, os.path.join(ROOT, "scripts")]
from agents.common import allocator

allocator.keep_freed_memory()
import jax, numpy as np
import agents
from agents.common import learner as common_learner
from dm_env import specs
import benchmark_throughput as bt

agent, seconds = sys.argv[1], float(sys.argv[2])
overrides = {**agents.preset(agent, "laptop"), "batch_size": 64}
builder = agents.make_builder(agent, **overrides)
shape, dtype = bt.SHAPES["image"]
networks = builder.make_networks(specs.Array(shape, dtype), bt.ACTION_SPEC)
rng = np.random.default_rng(0)
batch = bt._batch(rng, builder.batch_kind, "image", 64)
success = bt._batch(rng, "future", "image", bt.NUM_SUCCESS)["observation"]
learner = builder.make_learner(
  networks,
  bt._Repeat(batch),
  success,
  jax.random.PRNGKey(0),
  counter=common_learner.StepCounter(),
  logger=bt._NoLogger(),
)
for _ in range(3):
  learner.step(1)
jax.block_until_ready(learner.save())
print(agent, "ready", flush=True)
time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 0)
t0, c0, n = time.perf_counter(), time.process_time(), 0
while time.perf_counter() - t0 < seconds:
  learner.step(1)
  n += 1
jax.block_until_ready(learner.save())
w, c = time.perf_counter() - t0, time.process_time() - c0
print(agent, "steps/s %.2f cores %.2f" % (n / w, c / w), flush=True)
