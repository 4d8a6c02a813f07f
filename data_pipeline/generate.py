"""Generates an offline RLDS dataset from scripted "checkpoint" policies.

    python -m data_pipeline.generate --env=fetch_push --quality=medium \
        --episodes=2000 --out=/data/fetch_push_medium --seed=0 \
        [--num_success_examples=200] [--overwrite] [--workers=2]

Each episode is rolled out by one checkpoint of the quality's mixture
(`data_pipeline.scripted`), with exactly round(weight * episodes) episodes per
checkpoint. Episode i is seeded by (seed, i) alone, so the data do not depend on
the number of worker processes. Writes the dataset atomically (see
`data_pipeline.rlds_writer`), records the measured success rates (overall and per
checkpoint) in its metadata, saves `success_examples.npy` inside the dataset
directory and prints a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from data_pipeline import rlds_writer
from data_pipeline import success_examples as success_lib
from data_pipeline import scripted

QUALITIES = scripted.QUALITIES

Mixture = Sequence[Tuple[float, float]]  # ((competence, weight), ...)


def _default_env_factory(env_name: str, seed: int):
  import environments  # pylint: disable=g-import-not-at-top

  return environments.make(env_name, seed)  # Unknown names raise the registry's ValueError.


def _default_policy_factory(env, competence: float, rng: np.random.Generator):
  return scripted.make_checkpoint_policy(env, competence, rng)


def _default_mixture(task: str, quality: str) -> Mixture:
  return scripted.checkpoint_mixture(task, quality)


def rollout_episode(env, policy: Callable[[], np.ndarray]) -> Dict[str, np.ndarray]:
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
  return rlds_writer.make_episode(observations, actions, successes)


def seeded_episode(env, policy_factory, competence: float, seed: int, index: int) -> Dict[str, np.ndarray]:
  """Episode `index` of a dataset seeded by `seed`: its start state and policy draw only from (seed, index)."""
  env_seed, policy_seed = np.random.SeedSequence([seed, index]).generate_state(2)
  env.reseed(int(env_seed))
  return rollout_episode(env, policy_factory(env, competence, np.random.default_rng(policy_seed)))


_WORKER: Dict[str, Any] = {}


def _worker_init(env_name: str, seed: int) -> None:
  _WORKER["env"] = _default_env_factory(env_name, seed)


def _worker_episode(job: Tuple[int, float, int]) -> Dict[str, np.ndarray]:
  index, competence, seed = job
  return seeded_episode(_WORKER["env"], _default_policy_factory, competence, seed, index)


def _rollouts(
  env, env_name: str, policy_factory, jobs: List[Tuple[int, float, int]], workers: int
) -> Iterator[Dict[str, np.ndarray]]:
  """The episodes of `jobs` in order, from `workers` spawned processes (or this one when workers <= 1)."""
  if workers <= 1:
    for index, competence, seed in jobs:
      yield seeded_episode(env, policy_factory, competence, seed, index)
    return
  # Spawned, not forked: the parent may hold TensorFlow and a GL context.
  context = multiprocessing.get_context("spawn")
  with context.Pool(workers, initializer=_worker_init, initargs=(env_name, jobs[0][2])) as pool:
    yield from pool.imap(_worker_episode, jobs, chunksize=4)


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
  workers: Optional[int] = None,
  env_factory: Optional[Callable[[str, int], Any]] = None,
  policy_factory: Optional[Callable[..., Callable[[], np.ndarray]]] = None,
  mixture_fn: Optional[Callable[[str, str], Mixture]] = None,
) -> Dict[str, Any]:
  """Rolls out the quality's checkpoint mixture and writes a dataset to `out_dir`.

  Args:
    env_name: a name known to `environments.make`.
    quality: 'medium', 'low' or 'expert' (mixture from
      `scripted.checkpoint_mixture`; image envs use their state task's).
    num_episodes: number of episodes (>= 1).
    out_dir: dataset directory to create.
    seed: seeds the checkpoint assignment, every episode and the
      success-example sampling.
    num_success_examples: success examples saved in the dataset dir (>= 1).
    overwrite: replace an existing dataset at `out_dir`.
    show_progress: tqdm progress bar.
    workers: rollout processes (default: one per core, but no more than one
      per 50 episodes); the data are the same for any number.
    env_factory, policy_factory, mixture_fn: test hooks (rolled out in this
      process); default to `environments.make`,
      `scripted.make_checkpoint_policy` and `scripted.checkpoint_mixture`.

  Returns:
    Summary dict (also the basis of the dataset metadata).

  Raises:
    ValueError: unknown env / quality, num_episodes < 1, unusable out_dir,
      no successful step to extract success examples from (nothing written).
    FileExistsError: a dataset exists at out_dir and overwrite is False.
  """
  if isinstance(num_episodes, bool) or int(num_episodes) != num_episodes or (num_episodes < 1):
    raise ValueError(f"--episodes must be an integer >= 1, got {num_episodes}.")
  num_episodes = int(num_episodes)
  if int(num_success_examples) < 1:
    raise ValueError("--num_success_examples must be >= 1, got " f"{num_success_examples}.")
  if quality not in QUALITIES:
    raise ValueError(f'Unknown quality {quality!r}; expected one of ' f'{", ".join(QUALITIES)}.')
  out_dir = rlds_writer.check_output_dir(out_dir, overwrite=overwrite)
  hooked = env_factory is not None or policy_factory is not None
  env_factory = env_factory or _default_env_factory
  policy_factory = policy_factory or _default_policy_factory
  env = env_factory(env_name, seed)  # Raises the registry's unknown-env error.
  task = env.base_task  # Image variants share their state task's mixture.
  mixture = tuple((float(c), float(w)) for c, w in (mixture_fn or _default_mixture)(task, quality))
  assignment = stratified_checkpoints(mixture, num_episodes, seed)
  jobs = [(i, mixture[k][0], seed) for i, k in enumerate(assignment)]
  if workers is None:
    workers = 1 if hooked else max(1, min(os.cpu_count() or 1, num_episodes // 50))
  elif hooked and workers > 1:
    raise ValueError("Custom env/policy factories roll out in this process: workers must be 1.")

  successful: List[Dict[str, np.ndarray]] = []
  per_checkpoint = np.zeros((len(mixture), 2), dtype=np.int64)  # [episodes, successes]
  stats = {"steps": 0}

  def episodes():
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top

    bar = tqdm(total=num_episodes, desc=f"{env_name}/{quality}", unit="ep", disable=not show_progress, file=sys.stderr)
    try:
      for k, episode in zip(assignment, _rollouts(env, env_name, policy_factory, jobs, workers)):
        stats["steps"] += len(episode["action"]) - 1
        per_checkpoint[k] += (1, rlds_writer.episode_success(episode["success"]))
        mask = episode["success"]
        if mask.any():  # Keep only what success-example sampling needs.
          successful.append({"observation": episode["observation"][mask], "success": mask[mask]})
        bar.update(1)
        yield episode
    finally:
      bar.close()

  def finalize(tmp_dir, meta):
    del meta
    examples = success_lib.extract_success_examples(successful, num_examples=num_success_examples, seed=seed)
    success_lib.save_success_examples(tmp_dir, examples)
    return {
      "num_success_examples": int(len(examples)),
      "num_successful_steps": int(sum(len(e["success"]) for e in successful)),
      "success_examples_file": success_lib.SUCCESS_EXAMPLES_FILENAME,
      "success_examples_seed": seed,
      "checkpoints": [
        {"competence": c, "weight": w, "episodes": int(n), "success_rate": float(wins / n) if n else None}
        for (c, w), (n, wins) in zip(mixture, per_checkpoint)
      ],
    }

  metadata = {
    "env_name": env_name,
    "task": task,
    "quality": quality,
    "seed": seed,
    "horizon": int(getattr(env, "horizon", -1)),
    "policy": "checkpoint mixture (data_pipeline.scripted.make_checkpoint_policy)",
    "generator": "data_pipeline.generate",
  }
  rlds_writer._tf_and_tfds()  # pylint: disable=protected-access  (not timed)
  start = time.time()
  meta = rlds_writer.write_rlds_dataset(
    episodes(),
    out_dir,
    env.observation_spec(),
    env.action_spec(),
    metadata,
    num_episodes,
    overwrite=overwrite,
    finalize_fn=finalize,
  )
  seconds = time.time() - start
  close = getattr(env, "close", None)
  if callable(close):
    close()
  summary = dict(meta)
  summary.update(
    {
      "out_dir": out_dir,
      "workers": workers,
      "seconds": seconds,
      "episodes_per_s": num_episodes / max(seconds, 1e-9),
      "env_steps_per_s": stats["steps"] / max(seconds, 1e-9),
    }
  )
  return summary


def with_success_examples(source_dir: str, out_dir: str, num_success_examples: int) -> Dict[str, Any]:
  """A dataset at `out_dir` equal to what generate_dataset would write with `num_success_examples` instead of the
  generated dataset at `source_dir`'s count, without rolling out again: the same episodes (their files hard-linked,
  or copied across filesystems) and success examples drawn as generate_dataset draws them, from the successful
  steps in episode order with the dataset's seed. Returns the new metadata.

  Raises:
    ValueError: source_dir was not written by generate_dataset, or num_success_examples < 1.
    FileExistsError: something is at out_dir already.
  """
  from data_pipeline import rlds_reader  # pylint: disable=g-import-not-at-top  (reads through TF)

  meta = rlds_writer.read_metadata(source_dir)
  if meta.get("generator") != "data_pipeline.generate" or "success_examples_seed" not in meta:
    raise ValueError(f"{source_dir} was not written by data_pipeline.generate: no seeded success examples to redraw.")
  out_dir = rlds_writer.check_output_dir(out_dir, overwrite=False)
  episodes = (
    {"observation": e["observation"], "success": e["flag"]}
    for e in rlds_reader.iter_episodes([source_dir], flag_key="success")
  )
  examples = success_lib.extract_success_examples(
    episodes, num_examples=num_success_examples, seed=meta["success_examples_seed"]
  )
  parent, base = os.path.split(out_dir)
  tmp_dir = os.path.join(parent, f".{base}.tmp-{os.getpid()}")
  os.makedirs(tmp_dir)
  try:
    for name in os.listdir(source_dir):
      if name in (rlds_writer.METADATA_FILENAME, success_lib.SUCCESS_EXAMPLES_FILENAME):
        continue
      try:
        os.link(os.path.join(source_dir, name), os.path.join(tmp_dir, name))
      except OSError:
        shutil.copy2(os.path.join(source_dir, name), os.path.join(tmp_dir, name))
    success_lib.save_success_examples(tmp_dir, examples)
    meta = {**meta, "num_success_examples": int(len(examples)), "created_unix_time": time.time()}
    with open(os.path.join(tmp_dir, rlds_writer.METADATA_FILENAME), "w") as f:
      json.dump(meta, f, indent=2, sort_keys=True)
    if os.path.lexists(out_dir):  # An empty directory: check_output_dir refuses anything else.
      os.rmdir(out_dir)
    os.rename(tmp_dir, out_dir)
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  return meta


def stratified_checkpoints(mixture: Mixture, num_episodes: int, seed: int) -> np.ndarray:
  """Checkpoint index of each episode: round(weight * episodes) of each, in a seeded order."""
  return scripted.stratified_assignment([w for _, w in mixture], num_episodes, np.random.default_rng([seed, 1 << 20]))


def summary_line(summary: Dict[str, Any]) -> str:
  return (
    f"[generate] {summary['env_name']} quality={summary['quality']} "
    f"seed={summary['seed']} "
    f"episodes={summary['num_episodes']} steps={summary['num_steps']} "
    f"success_rate={summary['success_rate']:.3f} "
    f"(final step {summary['success_rate_final_step']:.3f}) "
    f"success_examples={summary['num_success_examples']} "
    f"time={summary['seconds']:.1f}s -> {summary['out_dir']}"
  )


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m data_pipeline.generate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--env", required=True, help="environment name")
  parser.add_argument("--quality", required=True, help=f'one of {", ".join(QUALITIES)}')
  parser.add_argument("--episodes", type=int, required=True)
  parser.add_argument("--out", required=True, help="dataset directory")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_success_examples", type=int, default=200)
  parser.add_argument("--overwrite", action="store_true")
  parser.add_argument("--workers", type=int, default=None, help="rollout processes (default: one per core)")
  parser.add_argument("--no_progress", action="store_true")
  parser.add_argument("--json", action="store_true", help="also print the full summary as JSON")
  args = parser.parse_args(argv)
  try:
    summary = generate_dataset(
      args.env,
      args.quality,
      args.episodes,
      args.out,
      args.seed,
      num_success_examples=args.num_success_examples,
      overwrite=args.overwrite,
      show_progress=not args.no_progress,
      workers=args.workers,
    )
  except (ValueError, FileExistsError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(summary_line(summary))
  if args.json:
    print(json.dumps(summary, sort_keys=True))
  return 0


if __name__ == "__main__":
  sys.exit(main())
