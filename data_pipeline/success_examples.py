"""Success examples: observations of successful states, the only success
information example-based agents may use.

They are sampled from the per-step `success` flags of a dataset's episodes
and stored as ``success_examples.npy`` in the ROOT of the dataset directory,
next to the TFDS files (``DIR/success_examples.npy``; TFDS ignores it).
`data_pipeline.generate` writes it inside the temporary directory before the
atomic rename, so a dataset is never visible without its examples.  Agents
must load success information only through `load_success_examples` and never
read the per-step `success` flag of the episodes.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

import numpy as np

SUCCESS_EXAMPLES_FILENAME = "success_examples.npy"


def successful_observations(episodes: Iterable[Mapping[str, np.ndarray]]) -> np.ndarray:
  """All observations o_t with success[t] True, in episode/step order."""
  chunks = []
  obs_shape = None
  for i, episode in enumerate(episodes):
    if "success" not in episode or "observation" not in episode:
      raise ValueError(f'Episode {i} needs "observation" and "success" fields.')
    obs = np.asarray(episode["observation"])
    success = np.asarray(episode["success"], dtype=bool)
    if success.shape != obs.shape[:1]:
      raise ValueError(f"Episode {i}: success flags {success.shape} do not " f"match observations {obs.shape}.")
    obs_shape = obs.shape[1:]
    if success.any():
      chunks.append(obs[success])
  if not chunks:
    shape = (0,) + (tuple(obs_shape) if obs_shape is not None else ())
    return np.zeros(shape, dtype=np.float32)
  return np.concatenate(chunks, axis=0)


def extract_success_examples(
  episodes: Iterable[Mapping[str, np.ndarray]], num_examples: int = 200, seed: int = 0
) -> np.ndarray:
  """Samples `num_examples` observations from successful steps.

  Sampling is uniform over all successful steps (flattened in episode/step
  order), without replacement when there are at least `num_examples` of them
  and with replacement otherwise. Deterministic given `seed`; dropping the
  unsuccessful steps of the episodes beforehand does not change the result.

  Returns:
    Array [num_examples, *obs_shape] with the observations' dtype.

  Raises:
    ValueError: num_examples < 1 or no successful step exists.
  """
  if int(num_examples) < 1:
    raise ValueError(f"num_examples must be >= 1, got {num_examples}.")
  num_examples = int(num_examples)
  pool = successful_observations(episodes)
  if len(pool) == 0:
    raise ValueError(
      "No successful step in the episodes: cannot extract "
      "success examples (try more episodes or a better-quality "
      "policy)."
    )
  rng = np.random.default_rng(seed)
  replace = len(pool) < num_examples
  idx = rng.choice(len(pool), size=num_examples, replace=replace)
  return pool[idx]


def _examples_path(path_or_dir: str) -> str:
  path = os.fspath(path_or_dir)
  if os.path.isdir(path) or not path.endswith(".npy"):
    return os.path.join(path, SUCCESS_EXAMPLES_FILENAME)
  return path


def save_success_examples(path_or_dir: str, array: np.ndarray) -> str:
  """Saves examples to `DIR/success_examples.npy` (or to an explicit .npy
  path); written via a temporary file + rename. Returns the path."""
  array = np.asarray(array)
  if array.ndim < 1 or len(array) < 1:
    raise ValueError("Refusing to save an empty set of success examples.")
  path = _examples_path(path_or_dir)
  tmp = f"{path}.tmp-{os.getpid()}.npy"
  try:
    np.save(tmp, array, allow_pickle=False)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def load_success_examples(dataset_dir: str) -> np.ndarray:
  """Loads `dataset_dir/success_examples.npy` (or an explicit .npy path)."""
  path = _examples_path(os.path.expanduser(os.fspath(dataset_dir)))
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"No success examples at {path}; generate the dataset with " "`python -m data_pipeline.generate`."
    )
  return np.load(path, allow_pickle=False)
