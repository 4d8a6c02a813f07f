"""Evidence for the default hyper-parameters (not a test): agents trained in one process on one dataset.

  python scripts/defaults_check.py --dataset_dir=data/paper/fetch_reach_medium_2000ep_seed0 \
      --variants laeo:bc_coef=0.05 laeo:bc_coef=0.5 bc --num_steps=3000 --seeds 0 1

Each variant AGENT[:NAME=VALUE,...] trains with the laptop preset from the in-memory batch iterator (the same
batch cutting as Reverb's), standardising vector observations with the dataset's statistics as the launcher does
(--raw_observations: not), and its final parameters are evaluated on --episodes episodes (success at any step
and at the final step). Rows are appended to results/defaults_check.csv as each run finishes.
"""

import argparse
import os
import re
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import agents  # noqa: E402
import environments  # noqa: E402
from data_pipeline import reverb_pipeline  # noqa: E402
from data_pipeline import rlds_io  # noqa: E402
from data_pipeline import success_examples as success_lib  # noqa: E402
from launch import rollout  # noqa: E402
from launch import run_config as run_config_lib  # noqa: E402
from scripts import reproduce  # noqa: E402

OUT = os.path.join(ROOT, "results", "defaults_check.csv")


def parse_variant(text: str):
  """'laeo:bc_coef=0.05,hidden_sizes=(512, 512)' -> ('laeo', overrides); commas inside brackets stay."""
  agent, _, rest = text.partition(":")
  return agent, run_config_lib.parse_overrides([item for item in re.split(r",(?![^()]*\))", rest) if item])


def rollout_success(env, policy, params, episodes: int, seed: int):
  key, outcomes = jax.random.PRNGKey(seed), []
  for _ in range(episodes):
    any_step, final, key = rollout.run_episode(env, policy, params, key)
    outcomes.append((any_step, final))
  return np.mean(outcomes, axis=0)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset_dir", required=True)
  parser.add_argument("--variants", nargs="+", required=True)
  parser.add_argument("--num_steps", type=int, default=3000)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0])
  parser.add_argument("--episodes", type=int, default=50)
  parser.add_argument("--raw_observations", action="store_true", help="Do not standardise vector observations.")
  args = parser.parse_args()
  meta = rlds_io.read_metadata(args.dataset_dir)
  episodes = rlds_io.load_episodes(args.dataset_dir, include_success=False)
  examples = success_lib.load_success_examples(args.dataset_dir)
  env = environments.make(meta["env_name"], seed=12345)
  stats = None
  if not args.raw_observations and len(meta["observation_shape"]) == 1:
    stats = rlds_io.observation_stats(np.concatenate([e["observation"] for e in episodes]))
  for seed in args.seeds:
    for variant in args.variants:
      agent, overrides = parse_variant(variant)
      overrides = {**run_config_lib.preset_overrides(agent, "laptop"), **overrides}
      builder = agents.make_builder(agent, **overrides)
      networks = builder.make_networks(env.observation_spec(), env.action_spec(), stats)
      iterator = reverb_pipeline.make_in_memory_iterator(
        episodes, builder.batch_kind, builder.config.batch_size, builder.config.discount, seed=seed
      )
      learner = builder.make_learner(networks, iterator, examples, jax.random.PRNGKey(seed))
      started = time.time()
      for _ in range(args.num_steps):
        learner.step()
      train_s = time.time() - started
      policy = jax.jit(builder.make_policy(networks), static_argnames="evaluation")
      any_step, final = rollout_success(env, policy, learner.get_variables(["policy"])[0], args.episodes, seed)
      row = {
        "dataset": os.path.basename(os.path.normpath(args.dataset_dir)),
        "variant": variant,
        "seed": seed,
        "observations": "standardised" if stats else "raw",
        "num_steps": args.num_steps,
        "success_any_step": round(float(any_step), 3),
        "success_final_step": round(float(final), 3),
        "episodes": args.episodes,
        "steps_per_s": round(args.num_steps / train_s, 1),
      }
      print(row, flush=True)
      reproduce.append_row(OUT, row, columns=list(row))


if __name__ == "__main__":
  main()
