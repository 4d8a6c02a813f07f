"""Measures dataset-generation throughput (not a test).

    python scripts/benchmark_generation.py [--episodes=5] \
        [--envs=fetch_push,fetch_push_image] [--quality=medium] \
        [--out=results/generation_throughput.json]

For each env it rolls out the noisy scripted policy for a few episodes
(timing env + policy), then writes them as an RLDS/TFDS dataset in a
temporary directory (timing encoding, PNG included), and reports episodes/s
and env steps/s for the rollouts, the writing and both together. Success
examples are not extracted (a few episodes may contain no success). Results
are written as JSON and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

# Runnable as a script: the repository root holds the packages.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from data_pipeline import generate  # noqa: E402
from data_pipeline import rlds_io  # noqa: E402

DEFAULT_ENVS = ("fetch_push", "fetch_push_image")


def benchmark_env(env_name: str, quality: str, num_episodes: int, seed: int = 0) -> dict:
  """Rollout and writing throughput for one env."""
  from data_pipeline import scripted  # pylint: disable=g-import-not-at-top
  import environments  # pylint: disable=g-import-not-at-top

  t0 = time.perf_counter()
  env = environments.make(env_name, seed)
  make_s = time.perf_counter() - t0
  mixture = scripted.checkpoint_mixture(env.base_task, quality)
  checkpoints = generate.stratified_checkpoints(mixture, num_episodes, seed)
  policy_factory = generate._default_policy_factory  # pylint: disable=protected-access

  generate.seeded_episode(env, policy_factory, 1.0, seed, num_episodes)
  t0 = time.perf_counter()  # Warm-up episode above excluded.
  episodes = [generate.seeded_episode(env, policy_factory, mixture[k][0], seed, i) for i, k in enumerate(checkpoints)]
  rollout_s = time.perf_counter() - t0
  steps = sum(len(e["action"]) - 1 for e in episodes)

  tmp = tempfile.mkdtemp(prefix="laeo_bench_")
  try:
    out = os.path.join(tmp, "ds")
    t0 = time.perf_counter()
    rlds_io.write_rlds_dataset(
      episodes, out, env.observation_spec(), env.action_spec(), {"env_name": env_name}, num_episodes
    )
    write_s = time.perf_counter() - t0
    disk_bytes = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    t0 = time.perf_counter()
    rlds_io.load_episodes(out)
    read_s = time.perf_counter() - t0
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  close = getattr(env, "close", None)
  if callable(close):
    close()
  total_s = rollout_s + write_s
  return {
    "env": env_name,
    "quality": quality,
    "episodes": num_episodes,
    "env_steps": steps,
    "observation_shape": list(env.observation_spec().shape),
    "env_make_s": make_s,
    "rollout_s": rollout_s,
    "write_s": write_s,
    "read_s": read_s,
    "rollout_episodes_per_s": num_episodes / rollout_s,
    "rollout_env_steps_per_s": steps / rollout_s,
    "episodes_per_s": num_episodes / total_s,
    "env_steps_per_s": steps / total_s,
    "write_env_steps_per_s": steps / write_s,
    "read_env_steps_per_s": steps / read_s,
    "disk_bytes_per_step": disk_bytes / (steps + num_episodes),
    "success_rate": float(np.mean([e["success"][-1] for e in episodes])),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--envs", default=",".join(DEFAULT_ENVS))
  parser.add_argument("--episodes", type=int, default=5)
  parser.add_argument("--quality", default="medium")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=os.path.join("results", "generation_throughput.json"))
  args = parser.parse_args(argv)
  t0 = time.perf_counter()
  rlds_io._tf_and_tfds()  # pylint: disable=protected-access
  tf_import_s = time.perf_counter() - t0  # Kept out of the write timings.
  results = {
    "description": "Generation throughput: scripted-policy rollouts "
    "(env + policy) and RLDS/TFDS writing; episodes/s and "
    "env steps/s. rollout excludes one warm-up episode.",
    "host": {
      "platform": platform.platform(),
      "python": sys.version.split()[0],
      "cpu_count": os.cpu_count(),
      "mujoco_gl": os.environ.get("MUJOCO_GL"),
    },
    "tf_import_s": tf_import_s,
    "results": [benchmark_env(name, args.quality, args.episodes, args.seed) for name in args.envs.split(",") if name],
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)
  print(json.dumps(results, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
