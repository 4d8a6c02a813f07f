"""Two seeds' image updates as one vmapped XLA program against one seed's: steps/s, alternating rounds."""

import os, sys, time

ROOT = "/work/main"
sys.path[:0] = [ROOT, os.path.join(ROOT, "scripts")]
from agents.common import allocator

allocator.keep_freed_memory()
import jax, jax.numpy as jnp, numpy as np
import agents
from agents.common import learner as common_learner
from dm_env import specs
import benchmark_throughput as bt

agent, seconds, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
n_seeds = int(sys.argv[4]) if len(sys.argv) > 4 else 2
overrides = {**agents.preset(agent, "laptop"), "batch_size": 64}
builder = agents.make_builder(agent, **overrides)
shape, dtype = bt.SHAPES["image"]
networks = builder.make_networks(specs.Array(shape, dtype), bt.ACTION_SPEC)
rng = np.random.default_rng(0)
batches = [bt._batch(rng, builder.batch_kind, "image", 64) for _ in range(n_seeds)]
success = bt._batch(rng, "future", "image", bt.NUM_SUCCESS)["observation"]
learners = [
  builder.make_learner(
    networks, bt._Repeat(b), success, jax.random.PRNGKey(i), counter=common_learner.StepCounter(), logger=bt._NoLogger()
  )
  for i, b in enumerate(batches)
]
l0 = learners[0]
fn = l0._update_fn
keys = l0._batch_keys
sel = [common_learner.select_batch(b, keys) for b in batches]
succ = l0.success_examples
one = jax.jit(fn)
many = jax.jit(jax.vmap(fn, in_axes=(0, 0, None)))
states = [l.state for l in learners]
stacked_state = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *states)
stacked_batch = jax.tree_util.tree_map(lambda *x: np.stack(x), *sel)
# Same math: the vmapped update's seed 1 equals the single update of seed 1.
s1, _ = one(states[1], sel[1], succ)
sv, _ = many(stacked_state, stacked_batch, succ)
diff = max(
  float(jnp.max(jnp.abs(a - b[1]))) for a, b in zip(jax.tree_util.tree_leaves(s1), jax.tree_util.tree_leaves(sv))
)
print("max |single - vmapped[1]| after one update:", diff, flush=True)


def timed(f, state, batch):
  s, m = f(state, batch, succ)
  jax.block_until_ready(s)
  t0, c0, n = time.perf_counter(), time.process_time(), 0
  while time.perf_counter() - t0 < seconds:
    s, m = f(s, batch, succ)
    n += 1
  jax.block_until_ready(s)
  w = time.perf_counter() - t0
  return n / w, (time.process_time() - c0) / w


for r in range(rounds):
  a, ca = timed(one, states[0], sel[0])
  b, cb = timed(many, stacked_state, stacked_batch)
  print(
    f"{agent} round {r}: one seed {a:.2f} steps/s (cores {ca:.2f}); {n_seeds} seeds vmapped {b:.2f} calls/s = {n_seeds*b:.2f} seed-steps/s (cores {cb:.2f}); ratio {n_seeds*b/a:.2f}",
    flush=True,
  )
