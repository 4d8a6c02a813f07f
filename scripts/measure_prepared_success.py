"""Paired timing of an image update given its success examples raw or prepared (a measurement, not a test).

  python scripts/measure_prepared_success.py --agents laeo oril --batch_size 64 --calls 100

One process, one batch and one state; the update function is the same, only the success examples differ: raw
uint8 images, or as the learner holds them (`learner.success_examples`: LAEO's cut into the first conv layer's
blocks once, conv.Blocks). Calls alternate between the variants, so a neighbour's load hits both alike; prints,
per agent, each variant's median time per update and the median (and quartiles) of the per-round ratio to raw.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from acme import specs  # noqa: E402

import agents  # noqa: E402
import benchmark_throughput as bt  # noqa: E402


def measure(agent: str, batch_size: int, calls: int) -> list:
  builder = agents.make_builder(agent, **{**agents.preset(agent, "laptop"), "batch_size": batch_size})
  shape, dtype = bt.SHAPES["image"]
  networks = builder.make_networks(specs.Array(shape, dtype), bt.ACTION_SPEC)
  rng = np.random.default_rng(0)
  batch = {k: jnp.asarray(v) for k, v in bt._batch(rng, builder.batch_kind, "image", batch_size).items()}  # pylint: disable=protected-access
  raw = jnp.asarray(bt._batch(rng, "future", "image", bt.NUM_SUCCESS)["observation"])  # pylint: disable=protected-access
  learner = builder.make_learner(networks, bt._Repeat(batch), raw, jax.random.PRNGKey(0))  # pylint: disable=protected-access
  update, state = jax.jit(learner._update_fn), learner.save()  # pylint: disable=protected-access
  variants = {"raw": raw, "as the learner holds them": learner.success_examples}
  for success in variants.values():
    for _ in range(3):
      jax.block_until_ready(update(state, batch, success))
  times = {k: [] for k in variants}
  for _ in range(calls):
    for name, success in variants.items():
      start = time.perf_counter()
      jax.block_until_ready(update(state, batch, success))
      times[name].append(time.perf_counter() - start)
  base = np.asarray(times["raw"])
  rows = []
  for name, ts in times.items():
    ratio = np.asarray(ts) / base
    rows.append(
      {
        "agent": agent,
        "batch_size": batch_size,
        "success_examples": name,
        "held_as": type(variants[name]).__name__,
        "median_ms": round(1000 * float(np.median(ts)), 2),
        "ratio_to_raw_median": round(float(np.median(ratio)), 3),
        "ratio_to_raw_quartiles": [round(float(np.percentile(ratio, q)), 3) for q in (25, 75)],
      }
    )
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--agents", nargs="+", default=["laeo", "oril"])
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--calls", type=int, default=100)
  args = parser.parse_args()
  for agent in args.agents:
    for row in measure(agent, args.batch_size, args.calls):
      print(json.dumps(row), flush=True)


if __name__ == "__main__":
  main()
