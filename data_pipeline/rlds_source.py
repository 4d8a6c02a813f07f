"""Any RLDS dataset as a run reads it: laeo's own generated datasets and anyone else's.

A run's data is one or more TFDS directories, each one that `tfds.builder_from_directory` opens: a dataset
written by `data_pipeline.generate`, by a TFDS builder's `download_and_prepare`, by envlogger, or prepared
from the TFDS catalog (`tfds_name_dir` finds it by name). Several directories are shards of one dataset. Every
episode is reduced to the fields the learners read:

- observation: the step field at `observation_key`, a '/'-separated path into nested observations (e.g.
  'observation/state'); vectors become float32 (float64 and integer fields are cast), images stay uint8
  [H, W, C];
- action: float32, mapped to [-1, 1] by the run's ActionScaling when it has one;
- is_terminal: False at every step when the dataset has no such field;
- and, on request, one step field as a boolean flag (nonzero is true), to draw success examples from.

Image fields that the run does not read are never decoded. Episodes of fewer than two steps hold no
transition and are skipped (`DatasetSpec.num_skipped_episodes` counts them).
"""

import dataclasses
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from data_pipeline import action_scaling as scaling_lib
from data_pipeline import rlds_io

DEFAULT_OBSERVATION_KEY = "observation"
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def split_dirs(value: str) -> List[str]:
  """The absolute directories of a comma-separated --dataset_dir."""
  dirs = [os.path.abspath(os.path.expanduser(d.strip())) for d in value.split(",") if d.strip()]
  if not dirs:
    raise ValueError("--dataset_dir names no directory.")
  return dirs


def tfds_name_dir(name: str, data_dir: str) -> str:
  """The directory of prepared TFDS dataset NAME[/CONFIG][:VERSION] under `data_dir` (default: its newest version)."""
  name, _, version = name.partition(":")
  root = os.path.join(os.path.abspath(os.path.expanduser(data_dir)), *name.split("/"))
  versions = sorted(
    (v for v in (os.listdir(root) if os.path.isdir(root) else []) if _VERSION.match(v)),
    key=lambda v: tuple(int(x) for x in v.split(".")),
  )
  versions = [v for v in versions if os.path.isfile(os.path.join(root, v, "dataset_info.json"))]
  if not versions:
    raise FileNotFoundError(
      f"No prepared TFDS dataset {name!r} under {data_dir} (expected {root}/<version>/dataset_info.json); "
      "prepare it first, e.g. tfds.builder(name, data_dir=...).download_and_prepare()."
    )
  if version and version not in versions:
    raise FileNotFoundError(f"TFDS dataset {name!r} has no version {version} under {data_dir}; it has {versions}.")
  return os.path.join(root, version or versions[-1])


def _tfds():
  return rlds_io._tf_and_tfds()  # pylint: disable=protected-access


def _step_features(dataset_dir: str):
  """The builder of `dataset_dir` and the feature dict of its episodes' steps."""
  if not os.path.exists(dataset_dir):
    raise FileNotFoundError(f"Dataset directory {dataset_dir} does not exist.")
  if not os.path.isfile(os.path.join(dataset_dir, "dataset_info.json")):
    raise ValueError(
      f"{dataset_dir} is not a TFDS dataset directory (no dataset_info.json): give the directory that "
      "tfds.builder_from_directory opens (<data_dir>/<name>/<version>), or --tfds_name with --tfds_data_dir; "
      "laeo's own datasets come from `python -m data_pipeline.generate`."
    )
  _, tfds = _tfds()
  builder = tfds.builder_from_directory(dataset_dir)
  steps = builder.info.features["steps"] if "steps" in builder.info.features else None
  if not isinstance(steps, tfds.features.Dataset) or not isinstance(steps.feature, tfds.features.FeaturesDict):
    raise ValueError(f"{dataset_dir} does not hold RLDS episodes: its examples have no 'steps' dataset of fields.")
  return builder, steps.feature


def step_field_paths(step_features, prefix: str = "") -> List[str]:
  """'/'-joined paths of every leaf step field."""
  _, tfds = _tfds()
  paths = []
  for name in sorted(step_features.keys()):
    feature = step_features[name]
    if isinstance(feature, tfds.features.FeaturesDict):
      paths += step_field_paths(feature, f"{prefix}{name}/")
    else:
      paths.append(f"{prefix}{name}")
  return paths


def _feature_at(step_features, path: str, dataset_dir: str):
  node = step_features
  for part in path.split("/"):
    if not hasattr(node, "keys") or part not in node.keys():
      raise ValueError(f"No step field {path!r} in {dataset_dir}; its step fields: {step_field_paths(step_features)}.")
    node = node[part]
  if hasattr(node, "keys"):
    raise ValueError(f"Step field {path!r} of {dataset_dir} is a dict; name one of its fields: {sorted(node.keys())}.")
  return node


def _shape_and_dtype(feature) -> Tuple[Tuple[Any, ...], np.dtype]:
  tf, _ = _tfds()
  return tuple(feature.shape), np.dtype(tf.as_dtype(feature.dtype).as_numpy_dtype)


def _observation_kind(feature, path: str, dataset_dir: str) -> Tuple[Tuple[int, ...], str]:
  """(shape, dtype) of observations as the networks take them: float32 vectors or uint8 [H, W, C] images."""
  shape, dtype = _shape_and_dtype(feature)
  if None in shape:
    raise ValueError(f"Step field {path!r} of {dataset_dir} has a variable shape {shape}; laeo needs a fixed one.")
  if len(shape) == 3 and dtype == np.uint8 and shape[-1] in (1, 3, 4):
    return shape, "uint8"
  if len(shape) == 1 and (np.issubdtype(dtype, np.number) or dtype == np.bool_):
    return shape, "float32"
  raise ValueError(
    f"Step field {path!r} of {dataset_dir} is {dtype.name} {shape}: laeo's networks take a vector or a uint8 "
    "[H, W, C] image; pick another field with --observation_key."
  )


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What a run needs to know of its dataset, measured once when the run is created (stored in its config)."""

  num_episodes: int  # Episodes with at least one transition.
  max_episode_length: int  # Steps of the longest episode.
  observation_shape: Tuple[int, ...]
  observation_dtype: str  # 'float32' (vectors) or 'uint8' (images).
  action_shape: Tuple[int, ...]
  action_min: Tuple[float, ...]  # Per dimension, over the actions taken (each episode's last step holds none).
  action_max: Tuple[float, ...]
  num_skipped_episodes: int = 0  # Episodes of fewer than two steps.

  @property
  def is_image(self) -> bool:
    return len(self.observation_shape) == 3

  def to_dict(self) -> Dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

  @classmethod
  def from_dict(cls, stored: Dict[str, Any]) -> "DatasetSpec":
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})


def _decoders(step_features, keep: Sequence[str], prefix: str = ""):
  """TFDS decoders that skip decoding every image step field not in `keep`."""
  _, tfds = _tfds()
  decoders = {}
  for name in step_features.keys():
    feature, path = step_features[name], f"{prefix}{name}"
    if isinstance(feature, tfds.features.FeaturesDict):
      nested = _decoders(feature, keep, f"{path}/")
      if nested:
        decoders[name] = nested
    elif isinstance(feature, tfds.features.Image) and path not in keep:
      decoders[name] = tfds.decode.SkipDecoding()
  return decoders


def _read(dataset_dir: str, fields: Dict[str, str]) -> Iterator[Dict[str, np.ndarray]]:
  """Per episode, {name: [steps, ...] array} of the step fields `fields` maps names to (paths)."""
  tf, tfds = _tfds()
  builder, step_features = _step_features(dataset_dir)
  for path in fields.values():
    _feature_at(step_features, path, dataset_dir)
  splits = sorted(builder.info.splits.keys())
  split = "train" if "train" in splits else "+".join(splits)
  decoders = _decoders(step_features, list(fields.values()))
  ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"steps": decoders} if decoders else None)

  def select(steps):
    out = {}
    for name, path in fields.items():
      value = steps
      for part in path.split("/"):
        value = value[part]
      out[name] = value
    return out

  # Batch first, then select: a map before the batch would be fused with it into one op that allocates for the
  # whole (huge) batch size.
  ds = ds.flat_map(lambda episode: episode["steps"].batch(1 << 30).map(select))
  try:
    for episode in tfds.as_numpy(ds):
      yield {k: np.asarray(v) for k, v in episode.items()}
  except tf.errors.OpError as e:
    raise ValueError(f"{rlds_io.damaged_shard_message(dataset_dir)} ({e.message})") from e


def _has_step_field(dataset_dir: str, path: str) -> bool:
  try:
    _feature_at(_step_features(dataset_dir)[1], path, dataset_dir)
    return True
  except ValueError:
    return False


class _RunningMoments:
  """Per-dimension mean and variance of vectors added in chunks (Chan et al.'s merge, in float64): one pass, one
  episode in memory at once."""

  def __init__(self):
    self.count, self.mean, self.m2 = 0, 0.0, 0.0

  def add(self, values: np.ndarray) -> None:
    n, mean = len(values), values.mean(axis=0)
    m2 = np.square(values - mean).sum(axis=0)
    total = self.count + n
    delta = mean - self.mean
    self.mean = self.mean + delta * (n / total)
    self.m2 = self.m2 + m2 + np.square(delta) * (self.count * n / total)
    self.count = total

  def stats(self) -> Dict[str, List[float]]:
    """As rlds_io.observation_stats: {'mean', 'std' + OBSERVATION_STD_EPS} as lists."""
    std = np.sqrt(self.m2 / self.count)
    return {"mean": np.asarray(self.mean).tolist(), "std": (std + rlds_io.OBSERVATION_STD_EPS).tolist()}


def _check_finite(values: np.ndarray, as_taken: np.ndarray, dataset_dir: str, episode: int, field: str) -> None:
  """Refuses NaN or infinity in one episode's field (`as_taken`: the float32 values the learners would get)."""
  bad = np.argwhere(~np.isfinite(as_taken))
  if len(bad):
    index = tuple(bad[0])
    value = values[index]
    where = f"step {index[0]}" + (f", dimension {index[1]}" if len(index) > 1 else "")
    raise ValueError(
      f"{dataset_dir}: the {field} of episode {episode} (counting from 0 in the dataset's order), {where}, is "
      f"{value}{' (beyond float32)' if np.isfinite(value) else ''}. laeo refuses NaN and infinite inputs: repair or "
      "drop that episode."
    )


@dataclasses.dataclass(frozen=True)
class Measurement:
  spec: DatasetSpec
  # Per-dimension mean and std of every step's vector observation (None for images).
  observation_stats: Optional[Dict[str, List[float]]]


def measure(dirs: Sequence[str], observation_key: str = DEFAULT_OBSERVATION_KEY) -> Measurement:
  """Shapes from the datasets' features; episode count, longest episode, action range and the observations'
  statistics from one pass over them, which also refuses NaN or infinity in the actions taken and in vector
  observations, naming the episode and step (image observations, uint8, are not decoded)."""
  kinds = []
  for d in dirs:
    _, step_features = _step_features(d)
    observation = _observation_kind(_feature_at(step_features, observation_key, d), observation_key, d)
    action_shape, action_dtype = _shape_and_dtype(_feature_at(step_features, "action", d))
    if len(action_shape) != 1 or None in action_shape or not np.issubdtype(action_dtype, np.number):
      raise ValueError(f"The actions of {d} are {action_dtype.name} {action_shape}; laeo needs a numeric vector.")
    kinds.append((observation, action_shape))
    if kinds[-1] != kinds[0]:
      raise ValueError(
        f"{d} has observations {observation} and actions {action_shape}, but {dirs[0]} has "
        f"{kinds[0][0]} and {kinds[0][1]}: shards of one dataset must agree."
      )
  (observation_shape, observation_dtype), action_shape = kinds[0]
  vector = observation_dtype != "uint8"
  fields = {"action": "action", **({"observation": observation_key} if vector else {})}
  num_episodes = skipped = longest = 0
  low = np.full(action_shape, np.inf)
  high = np.full(action_shape, -np.inf)
  moments = _RunningMoments()
  for d in dirs:
    for index, episode in enumerate(_read(d, fields)):
      length = len(episode["action"])
      if length < 2:
        skipped += 1
        continue
      num_episodes += 1
      longest = max(longest, length)
      # Each episode's last action is never taken (no transition starts at its last step).
      taken = episode["action"][:-1]
      _check_finite(taken, taken.astype(np.float32), d, index, "action")
      taken = taken.astype(np.float64)
      low, high = np.minimum(low, taken.min(axis=0)), np.maximum(high, taken.max(axis=0))
      if vector:
        observations = episode["observation"]
        as_taken = observations.astype(np.float32)  # What the networks get (rlds_source.iter_episodes).
        _check_finite(observations, as_taken, d, index, f"observation {observation_key!r}")
        moments.add(as_taken.astype(np.float64))
  if num_episodes == 0:
    raise ValueError(f"{', '.join(dirs)} holds no episode of two or more steps: there is no transition to learn from.")
  spec = DatasetSpec(
    num_episodes=num_episodes,
    max_episode_length=longest,
    observation_shape=tuple(int(n) for n in observation_shape),
    observation_dtype=observation_dtype,
    action_shape=tuple(int(n) for n in action_shape),
    action_min=tuple(float(x) for x in low),
    action_max=tuple(float(x) for x in high),
    num_skipped_episodes=skipped,
  )
  return Measurement(spec, moments.stats() if vector else None)


def describe(dirs: Sequence[str], observation_key: str = DEFAULT_OBSERVATION_KEY) -> DatasetSpec:
  """The DatasetSpec of `measure`'s one pass (which also refuses non-finite inputs)."""
  return measure(dirs, observation_key).spec


def iter_episodes(
  dirs: Sequence[str],
  observation_key: str = DEFAULT_OBSERVATION_KEY,
  scaling: Optional[scaling_lib.ActionScaling] = None,
  flag_key: Optional[str] = None,
) -> Iterator[Dict[str, np.ndarray]]:
  """Yields each episode's {'observation', 'action', 'is_terminal'} (and 'flag' for `flag_key`), in order."""
  for d in dirs:
    fields = {"observation": observation_key, "action": "action"}
    if _has_step_field(d, "is_terminal"):
      fields["is_terminal"] = "is_terminal"
    if flag_key is not None:
      fields["flag"] = flag_key
    for episode in _read(d, fields):
      length = len(episode["action"])
      if length < 2:
        continue
      observation = episode["observation"]
      action = episode["action"].astype(np.float32)
      out = {
        "observation": observation if observation.dtype == np.uint8 else observation.astype(np.float32),
        "action": action if scaling is None else scaling.normalise(action),
        "is_terminal": episode["is_terminal"].astype(bool) if "is_terminal" in episode else np.zeros(length, bool),
      }
      if flag_key is not None:
        flag = episode["flag"]
        if flag.shape != (length,):
          raise ValueError(f"Step field {flag_key!r} of {d} has shape {flag.shape[1:]} per step; a flag is a scalar.")
        out["flag"] = flag.astype(bool)
      yield out


def observation_stats(dirs: Sequence[str], observation_key: str = DEFAULT_OBSERVATION_KEY) -> Dict[str, List[float]]:
  """Per-dimension mean and std of every step's vector observation (as rlds_io.observation_stats), from `measure`."""
  stats = measure(dirs, observation_key).observation_stats
  if stats is None:
    raise ValueError(f"{observation_key!r} holds images: observation_stats are for vector observations.")
  return stats
