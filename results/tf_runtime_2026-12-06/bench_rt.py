"""Alternating timing of an agent's image update under the xla and tf runtimes (learner.step, batch in memory)."""
import os, sys, time
sys.path[:0] = ["/work/main/scripts", "/work/main"]
import numpy as np, jax
import benchmark_throughput as bt
import agents
from agents.common import learner as common_learner
from dm_env import specs
AGENT = sys.argv[1]; BATCH = int(sys.argv[2]) if len(sys.argv) > 2 else 64
ROUNDS = int(os.environ.get("ROUNDS", 4)); N = int(os.environ.get("N", 10))
overrides = {**agents.preset(AGENT, "laptop"), "batch_size": BATCH}
builder = agents.make_builder(AGENT, **overrides)
shape, dtype = bt.SHAPES["image"]
networks = builder.make_networks(specs.Array(shape, dtype), bt.ACTION_SPEC)
rng = np.random.default_rng(0)
batch = bt._batch(rng, builder.batch_kind, "image", BATCH)
success = bt._batch(rng, "future", "image", bt.NUM_SUCCESS)["observation"]
learners = {}
for rt in ("xla", "tf"):
  os.environ["LAEO_LEARNER_RUNTIME"] = rt
  learners[rt] = builder.make_learner(networks, bt._Repeat(batch), success, jax.random.PRNGKey(0), counter=common_learner.StepCounter(), logger=bt._NoLogger())
  for _ in range(2): learners[rt].step()
  jax.block_until_ready(learners[rt].save())
res = {rt: [] for rt in learners}
for r in range(ROUNDS):
  for rt, l in learners.items():
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(N): l.step()
    jax.block_until_ready(l.save())
    dt = time.perf_counter() - t0
    res[rt].append(N / dt)
    print(f"{AGENT} b{BATCH} {rt}: {N/dt:.2f} steps/s, {(time.process_time()-c0)/N*1000:.0f} ms CPU/step", flush=True)
print({rt: round(max(v), 2) for rt, v in res.items()})
