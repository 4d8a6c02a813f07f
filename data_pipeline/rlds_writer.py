"""Writing laeo's own offline datasets as RLDS episodes in TFDS format (every dataset, laeo's or anyone's, is read
by data_pipeline/rlds_reader.py).

On-disk layout of a dataset directory ``DIR`` (what ``write_rlds_dataset``
produces and what ``tfds.builder_from_directory(DIR)`` takes directly)::

    DIR/
      dataset_info.json                  # TFDS DatasetInfo (splits, shard lengths)
      features.json                      # TFDS feature structure (RLDS layout)
      laeo_dataset-train.tfrecord-00000  # episodes, one tf.Example each
      laeo_dataset-train.tfrecord-00001
      ...
      laeo_metadata.json                 # dataset-level metadata (read_metadata)
      success_examples.npy               # written by data_pipeline.generate

Each TFDS example is one RLDS episode::

    {'steps': Dataset({
         'observation': float32 [d]  (or uint8 [64, 64, 3] stored as PNG),
         'action':      float32 [a],
         'reward':      float32 (0 placeholder),
         'discount':    float32,
         'is_first', 'is_last', 'is_terminal': bool,
         'success':     bool (analysis only; agents must not train on it)}),
     'episode_metadata': {'episode_id': int32, 'success': bool,
                          'success_final_step': bool}}

RLDS convention: an episode of horizon H has H + 1 steps.  Step t holds the
observation o_t and the action a_t taken from it; the last step holds the
final observation o_H with a zero action, is_last=True, is_terminal=False
(episodes end by time limit, never by termination).  The episode's success
(``episode_metadata/success``) is true iff the ``success`` flag holds at any
step after the first action (the authors' metric); ``success_final_step`` is
the flag of its final step.

Writing is atomic: the dataset is built in a hidden temporary sibling
directory and renamed into place only once complete, so an interrupted run
never leaves a directory that looks like a valid dataset.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

import numpy as np

DATASET_NAME = "laeo_dataset"
DATASET_VERSION = "1.0.0"
METADATA_FILENAME = "laeo_metadata.json"
SPLIT = "train"
SUCCESS_CONVENTION = (
  "success_rate: an episode is successful iff env.success() is True at ANY "
  "step after its first action (the authors' metric); "
  "success_rate_final_step: iff it is True at the FINAL step (after H "
  "actions). Per-step `success` flags hold env.success() for the state of "
  "that step's observation."
)


def episode_success(success_flags) -> bool:
  """An episode's success: the task holds at any step after the first action."""
  return bool(np.any(np.asarray(success_flags, dtype=bool)[1:]))


# Files that must exist for a directory to count as a written dataset.
_REQUIRED_FILES = ("dataset_info.json", "features.json", METADATA_FILENAME)
_STEP_KEYS = ("observation", "action", "reward", "discount", "is_first", "is_last", "is_terminal", "success")


def _tf_and_tfds():
  """Imports TensorFlow / TFDS lazily (keeps `import data_pipeline` cheap)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  # No GPU is needed to read or write a dataset; keep TF off accelerators.
  with contextlib.suppress(RuntimeError, ValueError):
    tf.config.set_visible_devices([], "GPU")
  return tf, tfds


def is_image_spec(spec) -> bool:
  """True for uint8 [H, W, C] observations, stored as PNG images."""
  shape = tuple(spec.shape)
  return np.dtype(spec.dtype) == np.uint8 and len(shape) == 3 and shape[-1] in (1, 3, 4)


def _features(observation_spec, action_spec):
  _, tfds = _tf_and_tfds()
  if is_image_spec(observation_spec):
    observation = tfds.features.Image(shape=tuple(observation_spec.shape), encoding_format="png")
  else:
    observation = tfds.features.Tensor(shape=tuple(observation_spec.shape), dtype=np.dtype(observation_spec.dtype).type)
  scalar = lambda dtype: tfds.features.Tensor(shape=(), dtype=dtype)
  return tfds.features.FeaturesDict(
    {
      "steps": tfds.features.Dataset(
        {
          "observation": observation,
          "action": tfds.features.Tensor(shape=tuple(action_spec.shape), dtype=np.float32),
          "reward": scalar(np.float32),
          "discount": scalar(np.float32),
          "is_first": scalar(np.bool_),
          "is_last": scalar(np.bool_),
          "is_terminal": scalar(np.bool_),
          "success": scalar(np.bool_),
        }
      ),
      "episode_metadata": {
        "episode_id": scalar(np.int32),
        "success": scalar(np.bool_),
        "success_final_step": scalar(np.bool_),
      },
    }
  )


def make_episode(observations, actions, successes) -> Dict[str, np.ndarray]:
  """Builds an RLDS episode dict from a rollout.

  Args:
    observations: H + 1 observations o_0 .. o_H.
    actions: H actions a_0 .. a_{H-1}; a zero action is appended for o_H.
    successes: H + 1 booleans, env.success() in the state of each o_t.

  Returns:
    Dict with the step fields of the module docstring, each [H + 1, ...].
  """
  obs = np.stack([np.asarray(o) for o in observations])
  n = obs.shape[0]
  if n < 2:
    raise ValueError(f"An episode needs at least 2 observations, got {n}.")
  acts = np.asarray(actions, dtype=np.float32)
  if acts.ndim != 2 or acts.shape[0] != n - 1:
    raise ValueError(f"Expected {n - 1} actions for {n} observations, got " f"array of shape {acts.shape}.")
  acts = np.concatenate([acts, np.zeros_like(acts[:1])], axis=0)
  succ = np.asarray(successes, dtype=bool)
  if succ.shape != (n,):
    raise ValueError(f"Expected {n} success flags, got shape {succ.shape}.")
  is_first = np.zeros(n, dtype=bool)
  is_first[0] = True
  is_last = np.zeros(n, dtype=bool)
  is_last[-1] = True
  return {
    "observation": obs,
    "action": acts,
    "reward": np.zeros(n, dtype=np.float32),
    "discount": np.ones(n, dtype=np.float32),
    "is_first": is_first,
    "is_last": is_last,
    "is_terminal": np.zeros(n, dtype=bool),
    "success": succ,
  }


def _check_episode(
  episode: Mapping[str, np.ndarray], index: int, observation_spec, action_spec
) -> Dict[str, np.ndarray]:
  """Validates one episode dict and fills default RLDS fields."""
  missing = [k for k in ("observation", "action", "success") if k not in episode]
  if missing:
    raise ValueError(f"Episode {index} is missing fields {missing}.")
  obs = np.asarray(episode["observation"])
  n = obs.shape[0]
  if n < 2:
    raise ValueError(f"Episode {index} has {n} steps; RLDS episodes of " "horizon H >= 1 have H + 1 >= 2 steps.")
  obs_dtype = np.dtype(observation_spec.dtype)
  if obs.shape[1:] != tuple(observation_spec.shape):
    raise ValueError(
      f"Episode {index}: observation shape {obs.shape[1:]} " f"does not match spec {tuple(observation_spec.shape)}."
    )
  if obs_dtype == np.uint8 and obs.dtype != np.uint8:
    raise ValueError(f"Episode {index}: expected uint8 observations, got " f"{obs.dtype}.")
  defaults = make_episode(obs, np.zeros((n - 1,) + tuple(action_spec.shape)), np.zeros(n, dtype=bool))
  out = {}
  for key in _STEP_KEYS:
    value = np.asarray(episode[key]) if key in episode else defaults[key]
    if value.shape[:1] != (n,):
      raise ValueError(f"Episode {index}: field {key!r} has {value.shape[:1]}" f" steps, expected {n}.")
    out[key] = value.astype(defaults[key].dtype, copy=False)
  out["observation"] = obs.astype(obs_dtype, copy=False)
  if out["action"].shape[1:] != tuple(action_spec.shape):
    raise ValueError(
      f'Episode {index}: action shape {out["action"].shape[1:]}' f' does not match spec {tuple(action_spec.shape)}.'
    )
  if not (out["is_first"][0] and out["is_last"][-1]):
    raise ValueError(f"Episode {index}: is_first/is_last flags are wrong.")
  return out


def is_dataset_dir(path: str) -> bool:
  """True if `path` holds a complete dataset written by this module."""
  return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in _REQUIRED_FILES)


def check_output_dir(out_dir: str, overwrite: bool = False) -> str:
  """Checks that `out_dir` can be (re)written; returns its absolute path.

  Raises:
    FileExistsError: `out_dir` holds a dataset and overwrite is False, or
      holds something that is not a dataset (never deleted, even with
      overwrite=True).
    ValueError: `out_dir` is empty / a file / its parent is not writable.
  """
  if not out_dir:
    raise ValueError("An output directory is required.")
  out_dir = os.path.abspath(os.path.expanduser(os.fspath(out_dir)))
  if os.path.lexists(out_dir):
    if not os.path.isdir(out_dir):
      raise ValueError(f"Output path {out_dir} exists and is not a directory.")
    if is_dataset_dir(out_dir):
      if not overwrite:
        raise FileExistsError(
          f"A dataset already exists at {out_dir}; pass overwrite=True " "(--overwrite) to replace it."
        )
    elif os.listdir(out_dir):
      raise FileExistsError(
        f"Output directory {out_dir} exists, is not empty and is not a " "laeo dataset; refusing to replace it."
      )
  # Find the closest existing ancestor: it must be a writable directory.
  parent = os.path.dirname(out_dir)
  while not os.path.lexists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ValueError(f"Cannot create output directory {out_dir}: {parent} is " "not a directory.")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise ValueError(f"Cannot create output directory {out_dir}: {parent} is " "not writable.")
  return out_dir


def _default_shard_size(observation_spec) -> int:
  per_step = int(np.prod(observation_spec.shape)) * np.dtype(observation_spec.dtype).itemsize
  # Aim for shards of roughly 10-50 MB.
  return int(np.clip(2_000_000 // max(per_step, 1), 10, 1000))


def _to_jsonable(value):
  if isinstance(value, dict):
    return {str(k): _to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_to_jsonable(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  return value


def write_rlds_dataset(
  episodes_iter: Iterable[Mapping[str, np.ndarray]],
  out_dir: str,
  observation_spec,
  action_spec,
  metadata: Optional[Mapping[str, Any]],
  num_episodes: int,
  overwrite: bool = False,
  finalize_fn: Optional[Callable[[str, Dict[str, Any]], Optional[Mapping[str, Any]]]] = None,
  max_episodes_per_shard: Optional[int] = None,
) -> Dict[str, Any]:
  """Writes RLDS episodes as a TFDS dataset directory, atomically.

  Args:
    episodes_iter: iterable of episode dicts with [H + 1, ...] arrays:
      'observation', 'action', 'success' required; 'reward' (default 0),
      'discount' (1), 'is_first', 'is_last', 'is_terminal' optional.
      See `make_episode`.
    out_dir: dataset directory to create (`tfds.builder_from_directory`
      reads it directly).
    observation_spec: spec with `.shape` / `.dtype` (dm_env specs work);
      uint8 [H, W, C] is stored as PNG images.
    action_spec: spec with `.shape`; actions are stored as float32.
    metadata: JSON-serialisable dataset-level metadata (env name, quality,
      noise, seed, ...). `num_episodes`, `num_steps`, `success_rate`,
      `success_convention`, `observation_*`, `action_shape`, `format` and
      `created_unix_time` are added.
    num_episodes: exact number of episodes `episodes_iter` must yield.
    overwrite: replace an existing dataset at `out_dir`.
    finalize_fn: optional `fn(tmp_dir, metadata) -> extra metadata or None`,
      called once all episodes are written and before the rename, to add
      files (e.g. success examples) into the dataset atomically.
    max_episodes_per_shard: TFRecord shard size (default from obs size).

  Returns:
    The metadata dict that was written (also in `laeo_metadata.json`).
  """
  if int(num_episodes) < 1:
    raise ValueError(f"num_episodes must be >= 1, got {num_episodes}.")
  num_episodes = int(num_episodes)
  out_dir = check_output_dir(out_dir, overwrite=overwrite)
  _, tfds = _tf_and_tfds()
  from tensorflow_datasets.core import dataset_info  # pylint: disable=g-import-not-at-top

  parent, base = os.path.split(out_dir)
  created_parents = []  # Removed again if the write fails.
  p = parent
  while not os.path.exists(p):
    created_parents.append(p)
    p = os.path.dirname(p)
  os.makedirs(parent, exist_ok=True)
  token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
  tmp_dir = os.path.join(parent, f".{base}.tmp-{token}")
  os.makedirs(tmp_dir)
  try:
    features = _features(observation_spec, action_spec)
    info = dataset_info.DatasetInfo(
      builder=dataset_info.DatasetIdentity(
        name=DATASET_NAME, version=DATASET_VERSION, data_dir=tmp_dir, module_name=__name__
      ),
      description="laeo offline RLDS dataset (see laeo_metadata.json).",
      features=features,
    )
    shard = max_episodes_per_shard or _default_shard_size(observation_spec)
    writer = tfds.core.SequentialWriter(info, max_examples_per_shard=shard)
    writer.initialize_splits([SPLIT])

    successes, final_successes, num_steps, count, buffer = [], [], 0, 0, []
    for episode in episodes_iter:
      if count >= num_episodes:
        raise ValueError(f"episodes_iter yielded more than {num_episodes} " "episodes.")
      steps = _check_episode(episode, count, observation_spec, action_spec)
      success = episode_success(steps["success"])
      final_success = bool(steps["success"][-1])
      successes.append(success)
      final_successes.append(final_success)
      num_steps += len(steps["observation"])
      buffer.append(
        {
          "steps": steps,
          "episode_metadata": {"episode_id": count, "success": success, "success_final_step": final_success},
        }
      )
      count += 1
      if len(buffer) >= shard:
        writer.add_examples({SPLIT: buffer})
        buffer = []
    if count != num_episodes:
      raise ValueError(f"episodes_iter yielded {count} episodes, expected " f"{num_episodes}.")
    if buffer:
      writer.add_examples({SPLIT: buffer})
    writer.close_all()

    meta = dict(_to_jsonable(dict(metadata or {})))
    meta.update(
      {
        "format": f"rlds/tfds {DATASET_NAME} {DATASET_VERSION}",
        "num_episodes": count,
        "num_steps": num_steps,
        "num_transitions": num_steps - count,
        "success_rate": float(np.mean(successes)),
        "num_successful_episodes": int(np.sum(successes)),
        "success_rate_final_step": float(np.mean(final_successes)),
        "success_convention": SUCCESS_CONVENTION,
        "observation_shape": list(observation_spec.shape),
        "observation_dtype": np.dtype(observation_spec.dtype).name,
        "observation_encoding": ("png" if is_image_spec(observation_spec) else "tensor"),
        "action_shape": list(action_spec.shape),
        "created_unix_time": time.time(),
      }
    )
    if finalize_fn is not None:
      extra = finalize_fn(tmp_dir, dict(meta))
      if extra:
        meta.update(_to_jsonable(dict(extra)))
    # Written last: its presence marks a complete dataset.
    with open(os.path.join(tmp_dir, METADATA_FILENAME), "w") as f:
      json.dump(meta, f, indent=2, sort_keys=True)

    _move_into_place(tmp_dir, out_dir, token)
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    for p in created_parents:  # Deepest first; only if still empty.
      with contextlib.suppress(OSError):
        os.rmdir(p)
    raise
  return meta


def _move_into_place(tmp_dir: str, out_dir: str, token: str) -> None:
  """Renames tmp_dir to out_dir, replacing an existing (checked) dataset."""
  old = None
  if os.path.lexists(out_dir):
    if is_dataset_dir(out_dir):
      parent, base = os.path.split(out_dir)
      old = os.path.join(parent, f".{base}.old-{token}")
      os.rename(out_dir, old)
    else:  # Empty directory (checked by check_output_dir).
      os.rmdir(out_dir)
  try:
    os.rename(tmp_dir, out_dir)
  except BaseException:
    if old is not None:
      os.rename(old, out_dir)
    raise
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def _check_dataset_dir(dataset_dir: str) -> str:
  dataset_dir = os.path.abspath(os.path.expanduser(os.fspath(dataset_dir)))
  if not os.path.exists(dataset_dir):
    raise FileNotFoundError(f"Dataset directory {dataset_dir} does not exist.")
  if not is_dataset_dir(dataset_dir):
    raise ValueError(
      f'{dataset_dir} is not a laeo dataset directory (expected '
      f'{", ".join(_REQUIRED_FILES)}); generate one with '
      '`python -m data_pipeline.generate`.'
    )
  return dataset_dir


def read_metadata(dataset_dir: str) -> Dict[str, Any]:
  """Returns the dataset-level metadata dict (laeo_metadata.json)."""
  dataset_dir = _check_dataset_dir(dataset_dir)
  with open(os.path.join(dataset_dir, METADATA_FILENAME)) as f:
    return json.load(f)


def damaged_shard_message(dataset_dir: str) -> str:
  """Names the first shard of `dataset_dir` that TensorFlow cannot read to its end."""
  tf, _ = _tf_and_tfds()
  for name in sorted(os.listdir(dataset_dir)):
    if ".tfrecord" not in name:
      continue
    try:
      for _ in tf.data.TFRecordDataset(os.path.join(dataset_dir, name)):
        pass
    except tf.errors.OpError:
      return f"Dataset {dataset_dir} is damaged: shard {name} is truncated or corrupt; " "regenerate or re-download it"
  return f"Dataset {dataset_dir} could not be read to its end"


# Added to every standard deviation of observation_stats: keeps constant dimensions finite (as CORL does).
OBSERVATION_STD_EPS = 1e-3


def observation_stats(observations: np.ndarray) -> Dict[str, List[float]]:
  """{'mean', 'std'} per dimension of vector observations [N, d] (lists, to be stored as JSON)."""
  observations = np.asarray(observations, np.float64)
  if observations.ndim != 2 or len(observations) == 0:
    raise ValueError(f"observation_stats needs observations of shape [N >= 1, d]; got {observations.shape}.")
  return {"mean": observations.mean(axis=0).tolist(), "std": (observations.std(axis=0) + OBSERVATION_STD_EPS).tolist()}
