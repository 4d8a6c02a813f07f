"""Measures the final-step success rate of the scripted policy at given noise levels.

Usage (from the repository root):

  python -m data_pipeline.tune_noise --task fetch_push --noise 0.3 0.5 --episodes 400

prints one line per noise level:
``task=fetch_push noise=0.300 episodes=400 success=0.480 (192/400) ...``.
Use the state variant of a task (image variants share its policy and noise).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import environments  # noqa: E402
from data_pipeline import scripted  # noqa: E402


def success_rate(task: str, noise: float, episodes: int, env_seed: int = 0,
                 policy_seed: int = 0) -> tuple[int, float]:
  """Returns (#successful episodes, seconds) over ``episodes`` episodes."""
  env = environments.make(task, seed=env_seed)
  rng = np.random.default_rng(policy_seed)
  policy = scripted.make_scripted_policy(env, noise, rng)
  successes = 0
  start = time.time()
  for _ in range(episodes):
    timestep = env.reset()
    while not timestep.last():
      timestep = env.step(policy())
    successes += int(env.success())
  env.close()
  return successes, time.time() - start


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", required=True, choices=environments.ENV_NAMES)
  parser.add_argument("--noise", type=float, nargs="+", required=True)
  parser.add_argument("--episodes", type=int, default=300)
  parser.add_argument("--env_seed", type=int, default=0)
  parser.add_argument("--policy_seed", type=int, default=0)
  args = parser.parse_args(argv)
  for noise in args.noise:
    successes, seconds = success_rate(args.task, noise, args.episodes, args.env_seed,
                                      args.policy_seed)
    rate = successes / args.episodes
    stderr = np.sqrt(rate * (1 - rate) / args.episodes)
    print(f"task={args.task} noise={noise:.3f} episodes={args.episodes} "
          f"success={rate:.3f} ({successes}/{args.episodes}) +-{stderr:.3f} "
          f"env_seed={args.env_seed} policy_seed={args.policy_seed} [{seconds:.0f}s]",
          flush=True)


if __name__ == "__main__":
  main()
