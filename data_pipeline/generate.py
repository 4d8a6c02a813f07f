"""Generates an offline RLDS dataset with a noisy scripted policy.

    python -m data_pipeline.generate --env=fetch_push --quality=medium \
        --episodes=1000 --out=/data/fetch_push_medium --seed=0 \
        [--num_success_examples=200] [--overwrite]

Writes the dataset atomically (see `data_pipeline.rlds_io`), records the
measured success rate (env.success() at each episode's final step) in its
metadata, saves `success_examples.npy` inside the dataset directory and
prints a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from data_pipeline import rlds_io
from data_pipeline import success_examples as success_lib

QUALITIES = ('medium', 'low')


def _default_env_factory(env_name: str, seed: int):
  import environments  # pylint: disable=g-import-not-at-top
  return environments.make(env_name, seed)  # Unknown names raise the registry's ValueError.


def _default_policy_factory(env, noise: float, rng: np.random.Generator):
  from data_pipeline import scripted  # pylint: disable=g-import-not-at-top
  return scripted.make_scripted_policy(env, noise, rng)


def _default_quality_noise():
  from data_pipeline import scripted  # pylint: disable=g-import-not-at-top
  return scripted.QUALITY_NOISE


def rollout_episode(env, policy: Callable[[], np.ndarray]
                    ) -> Dict[str, np.ndarray]:
  """Runs one episode to its time limit; returns an RLDS episode dict."""
  obs_spec, act_spec = env.observation_spec(), env.action_spec()
  lo = np.asarray(act_spec.minimum, dtype=np.float32)
  hi = np.asarray(act_spec.maximum, dtype=np.float32)
  timestep = env.reset()
  observations = [np.array(timestep.observation, dtype=obs_spec.dtype)]
  successes = [bool(env.success())]
  actions = []
  while not timestep.last():
    action = np.clip(np.asarray(policy(), dtype=np.float32), lo, hi)
    action = action.reshape(act_spec.shape)
    timestep = env.step(action)
    actions.append(action)
    observations.append(np.array(timestep.observation, dtype=obs_spec.dtype))
    successes.append(bool(env.success()))
  return rlds_io.make_episode(observations, actions, successes)


def generate_dataset(
    env_name: str,
    quality: str,
    num_episodes: int,
    out_dir: str,
    seed: int,
    num_success_examples: int = 200,
    overwrite: bool = False,
    *,
    show_progress: bool = True,
    env_factory: Optional[Callable[[str, int], Any]] = None,
    policy_factory: Optional[Callable[..., Callable[[], np.ndarray]]] = None,
    quality_noise: Optional[Dict[str, Dict[str, float]]] = None,
) -> Dict[str, Any]:
  """Rolls out the noisy scripted policy and writes a dataset to `out_dir`.

  Args:
    env_name: a name known to `environments.make`.
    quality: 'medium' or 'low' (noise from `scripted.QUALITY_NOISE`; image
      envs use the noise of their state task).
    num_episodes: number of episodes (>= 1).
    out_dir: dataset directory to create.
    seed: seeds the environment, the policy noise and the success-example
      sampling.
    num_success_examples: success examples saved in the dataset dir (>= 1).
    overwrite: replace an existing dataset at `out_dir`.
    show_progress: tqdm progress bar.
    env_factory, policy_factory, quality_noise: test hooks; default to
      `environments.make`, `scripted.make_scripted_policy` and
      `scripted.QUALITY_NOISE`.

  Returns:
    Summary dict (also the basis of the dataset metadata).

  Raises:
    ValueError: unknown env / quality, num_episodes < 1, unusable out_dir,
      no successful step to extract success examples from (nothing written).
    FileExistsError: a dataset exists at out_dir and overwrite is False.
  """
  if isinstance(num_episodes, bool) or int(num_episodes) != num_episodes or (
      num_episodes < 1):
    raise ValueError(f'--episodes must be an integer >= 1, got {num_episodes}.')
  num_episodes = int(num_episodes)
  if int(num_success_examples) < 1:
    raise ValueError('--num_success_examples must be >= 1, got '
                     f'{num_success_examples}.')
  if quality not in QUALITIES:
    raise ValueError(f'Unknown quality {quality!r}; expected one of '
                     f'{", ".join(QUALITIES)}.')
  out_dir = rlds_io.check_output_dir(out_dir, overwrite=overwrite)
  env_factory = env_factory or _default_env_factory
  policy_factory = policy_factory or _default_policy_factory
  env = env_factory(env_name, seed)  # Raises the registry's unknown-env error.
  noise_table = (quality_noise if quality_noise is not None
                 else _default_quality_noise())
  task = env.base_task  # Image variants share their state task's noise.
  if task not in noise_table or quality not in noise_table[task]:
    raise ValueError(f'No scripted-policy noise for task {task!r} and quality '
                     f'{quality!r} (QUALITY_NOISE has '
                     f'{ {k: sorted(v) for k, v in noise_table.items()} }).')
  noise = float(noise_table[task][quality])

  rng = np.random.default_rng(seed)
  successful: List[Dict[str, np.ndarray]] = []
  stats = {'steps': 0}

  def episodes():
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=num_episodes, desc=f'{env_name}/{quality}', unit='ep',
               disable=not show_progress, file=sys.stderr)
    try:
      for _ in range(num_episodes):
        # A fresh policy per episode: scripted policies may keep phase state.
        policy = policy_factory(env, noise, rng)
        episode = rollout_episode(env, policy)
        stats['steps'] += len(episode['action']) - 1
        mask = episode['success']
        if mask.any():  # Keep only what success-example sampling needs.
          successful.append({'observation': episode['observation'][mask],
                             'success': mask[mask]})
        bar.update(1)
        yield episode
    finally:
      bar.close()

  def finalize(tmp_dir, meta):
    del meta
    examples = success_lib.extract_success_examples(
        successful, num_examples=num_success_examples, seed=seed)
    success_lib.save_success_examples(tmp_dir, examples)
    return {
        'num_success_examples': int(len(examples)),
        'num_successful_steps': int(sum(len(e['success'])
                                        for e in successful)),
        'success_examples_file': success_lib.SUCCESS_EXAMPLES_FILENAME,
        'success_examples_seed': seed,
    }

  metadata = {
      'env_name': env_name,
      'task': task,
      'quality': quality,
      'noise': noise,
      'seed': seed,
      'horizon': int(getattr(env, 'horizon', -1)),
      'policy': 'scripted (data_pipeline.scripted.make_scripted_policy)',
      'generator': 'data_pipeline.generate',
  }
  rlds_io._tf_and_tfds()  # pylint: disable=protected-access  (not timed)
  start = time.time()
  meta = rlds_io.write_rlds_dataset(
      episodes(), out_dir, env.observation_spec(), env.action_spec(),
      metadata, num_episodes, overwrite=overwrite, finalize_fn=finalize)
  seconds = time.time() - start
  close = getattr(env, 'close', None)
  if callable(close):
    close()
  summary = dict(meta)
  summary.update({
      'out_dir': out_dir,
      'seconds': seconds,
      'episodes_per_s': num_episodes / max(seconds, 1e-9),
      'env_steps_per_s': stats['steps'] / max(seconds, 1e-9),
  })
  return summary


def summary_line(summary: Dict[str, Any]) -> str:
  return (f"[generate] {summary['env_name']} quality={summary['quality']} "
          f"noise={summary['noise']:g} seed={summary['seed']} "
          f"episodes={summary['num_episodes']} steps={summary['num_steps']} "
          f"success_rate={summary['success_rate']:.3f} "
          f"success_examples={summary['num_success_examples']} "
          f"time={summary['seconds']:.1f}s -> {summary['out_dir']}")


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m data_pipeline.generate', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--env', required=True, help='environment name')
  parser.add_argument('--quality', required=True,
                      help=f'one of {", ".join(QUALITIES)}')
  parser.add_argument('--episodes', type=int, required=True)
  parser.add_argument('--out', required=True, help='dataset directory')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--num_success_examples', type=int, default=200)
  parser.add_argument('--overwrite', action='store_true')
  parser.add_argument('--no_progress', action='store_true')
  parser.add_argument('--json', action='store_true',
                      help='also print the full summary as JSON')
  args = parser.parse_args(argv)
  try:
    summary = generate_dataset(
        args.env, args.quality, args.episodes, args.out, args.seed,
        num_success_examples=args.num_success_examples,
        overwrite=args.overwrite, show_progress=not args.no_progress)
  except (ValueError, FileExistsError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(summary_line(summary))
  if args.json:
    print(json.dumps(summary, sort_keys=True))
  return 0


if __name__ == '__main__':
  sys.exit(main())
