"""Any RLDS dataset as a run reads it: laeo's own generated datasets and anyone else's.

A run's data is one or more TFDS directories, each one that `tfds.builder_from_directory` opens: a dataset
written by `data_pipeline.generate`, by a TFDS builder's `download_and_prepare`, by envlogger, or prepared
from the TFDS catalog (`tfds_name_dir` finds it by name). Several directories are shards of one dataset. Every
episode is reduced to the fields the learners read:

- observation: the step field at `observation_key`, a '/'-separated path into nested observations (e.g.
  'observation/state'), or several such fields joined by commas; vectors become float32 (float64 and integer
  fields are cast), images stay uint8 [H, W, C], resized to `image_size` when one is given; several fields are
  packed into one byte vector per step (data_pipeline.step_format);
- action: the step's `action` vector, or the fields of an `action` dict that `action_key` names, joined;
  float32, mapped to [-1, 1] by the run's ActionScaling when it has one;
- is_terminal: False at every step when the dataset has no such field;
- and, on request, one step field as a boolean flag (nonzero is true), to draw success examples from.

Image and text fields that the run does not read are never decoded. Episodes of fewer than two steps hold no
transition and are skipped (`DatasetSpec.num_skipped_episodes` counts them).
"""

import dataclasses
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from data_pipeline import action_scaling as scaling_lib
from data_pipeline import rlds_writer
from data_pipeline import step_format

DEFAULT_OBSERVATION_KEY = "observation"
DEFAULT_ACTION_KEY = "action"
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
  return rlds_writer._tf_and_tfds()  # pylint: disable=protected-access


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


def _feature_at(step_features, path: str, dataset_dir: str, flag: str = "--observation_key"):
  node = step_features
  for part in path.split("/"):
    if not hasattr(node, "keys") or part not in node.keys():
      raise ValueError(f"No step field {path!r} in {dataset_dir}; its step fields: {step_field_paths(step_features)}.")
    node = node[part]
  if hasattr(node, "keys"):
    fields = ",".join(f"{path}/{p}" for p in step_field_paths(node))
    raise ValueError(
      f"Step field {path!r} of {dataset_dir} is a dict; name the fields to use with {flag} (several are joined in "
      f"the order given), e.g. {flag}={fields}."
    )
  return node


def _shape_and_dtype(feature) -> Tuple[Tuple[Any, ...], np.dtype]:
  tf, _ = _tfds()
  return tuple(feature.shape), np.dtype(tf.as_dtype(feature.dtype).as_numpy_dtype)


def _type_name(dtype: np.dtype, shape) -> str:
  return "text" if dtype == np.object_ else f"{dtype.name} {shape}"


def _observation_field(feature, path: str, dataset_dir: str, image_size) -> step_format.Field:
  """One observation field as the networks take it: a float32 vector or a uint8 [H, W, C] image (resized to
  `image_size` when given)."""
  shape, dtype = _shape_and_dtype(feature)
  if None in shape:
    raise ValueError(f"Step field {path!r} of {dataset_dir} has a variable shape {shape}; laeo needs a fixed one.")
  if len(shape) == 3 and dtype == np.uint8 and shape[-1] in (1, 3, 4):
    shape = (*image_size, shape[-1]) if image_size else shape
    return step_format.Field(path, step_format.IMAGE, tuple(int(n) for n in shape))
  if len(shape) == 1 and (np.issubdtype(dtype, np.number) or dtype == np.bool_):
    return step_format.Field(path, step_format.VECTOR, tuple(int(n) for n in shape))
  raise ValueError(
    f"Step field {path!r} of {dataset_dir} is {_type_name(dtype, shape)}: laeo's networks take vectors and uint8 "
    "[H, W, C] images; pick other fields with --observation_key."
  )


def _action_shape(feature, path: str, dataset_dir: str) -> Tuple[int, ...]:
  shape, dtype = _shape_and_dtype(feature)
  if None in shape or not np.issubdtype(dtype, np.number) or len(shape) > 1:
    raise ValueError(
      f"The action field {path!r} of {dataset_dir} is {_type_name(dtype, shape)}; laeo needs numeric vectors or scalars."
    )
  return tuple(int(n) for n in shape)


def layouts(
  dirs: Sequence[str],
  observation_key: str = DEFAULT_OBSERVATION_KEY,
  action_key: str = DEFAULT_ACTION_KEY,
  image_size: Optional[Sequence[int]] = None,
) -> Tuple[step_format.ObservationLayout, step_format.ActionLayout]:
  """The observation fields and the action fields the keys name, from the datasets' features (shards must agree)."""
  observation_paths = step_format.split_keys(observation_key)
  action_paths = step_format.split_keys(action_key)
  found = []
  for d in dirs:
    _, step_features = _step_features(d)
    fields = tuple(_observation_field(_feature_at(step_features, p, d), p, d, image_size) for p in observation_paths)
    shapes = tuple(_action_shape(_feature_at(step_features, p, d, "--action_key"), p, d) for p in action_paths)
    found.append((fields, shapes))
    if found[-1] != found[0]:
      raise ValueError(
        f"{d} has observation fields {fields} and action shapes {shapes}, but {dirs[0]} has {found[0][0]} and "
        f"{found[0][1]}: shards of one dataset must agree."
      )
  fields, shapes = found[0]
  return step_format.ObservationLayout(fields), step_format.ActionLayout(tuple(action_paths), shapes)


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
  # step_format.ObservationLayout.to_dict() of several observation fields packed into one (None: one field).
  observation_layout: Optional[Dict[str, Any]] = None
  # step_format.ActionLayout.to_dict() when the actions are fields of a dict (None: the step's action vector).
  action_layout: Optional[Dict[str, Any]] = None

  @property
  def is_image(self) -> bool:
    return len(self.observation_shape) == 3

  @property
  def has_images(self) -> bool:
    """An image is among the observation fields (one image, or packed with others)."""
    return self.is_image or any(f.kind == step_format.IMAGE for f in self.layout().fields)

  def layout(self, observation_key: str = DEFAULT_OBSERVATION_KEY) -> step_format.ObservationLayout:
    """The observation fields (runs created before layouts were recorded: the one field at observation_key)."""
    if self.observation_layout:
      return step_format.ObservationLayout.from_dict(self.observation_layout)
    kind = step_format.IMAGE if self.is_image else step_format.VECTOR
    return step_format.ObservationLayout((step_format.Field(observation_key, kind, self.observation_shape),))

  def action_fields(self) -> Optional[step_format.ActionLayout]:
    return step_format.ActionLayout.from_dict(self.action_layout)

  def to_dict(self) -> Dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

  @classmethod
  def from_dict(cls, stored: Dict[str, Any]) -> "DatasetSpec":
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})


def _decoders(step_features, keep: Sequence[str], prefix: str = ""):
  """TFDS decoders that skip decoding every image and text step field not in `keep`."""
  _, tfds = _tfds()
  decoders = {}
  for name in step_features.keys():
    feature, path = step_features[name], f"{prefix}{name}"
    if isinstance(feature, tfds.features.FeaturesDict):
      nested = _decoders(feature, keep, f"{path}/")
      if nested:
        decoders[name] = nested
    elif isinstance(feature, (tfds.features.Image, tfds.features.Text)) and path not in keep:
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
    raise ValueError(f"{rlds_writer.damaged_shard_message(dataset_dir)} ({e.message})") from e


def read_steps(dataset_dir: str, paths: Optional[Sequence[str]] = None) -> Iterator[Dict[str, np.ndarray]]:
  """Per episode, in order, {path: [steps, ...] array} of the step fields at `paths` (default every leaf field):
  the raw fields, for checks of what a dataset holds (iter_episodes gives them as the learners take them)."""
  paths = step_field_paths(_step_features(dataset_dir)[1]) if paths is None else paths
  return _read(dataset_dir, {path: path for path in paths})


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
    """As rlds_writer.observation_stats: {'mean', 'std' + OBSERVATION_STD_EPS} as lists."""
    std = np.sqrt(self.m2 / self.count)
    return {"mean": np.asarray(self.mean).tolist(), "std": (std + rlds_writer.OBSERVATION_STD_EPS).tolist()}


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


def measure(
  dirs: Sequence[str],
  observation_key: str = DEFAULT_OBSERVATION_KEY,
  action_key: str = DEFAULT_ACTION_KEY,
  image_size: Optional[Sequence[int]] = None,
) -> Measurement:
  """Shapes from the datasets' features; episode count, longest episode, action range and the vector
  observations' statistics from one pass over them, which also refuses NaN or infinity in the actions taken and
  in vector observations, naming the episode and step (images, uint8, are not decoded)."""
  layout, action_layout = layouts(dirs, observation_key, action_key, image_size)
  vectors = [f.path for f in layout.fields if f.kind == step_format.VECTOR]
  action_paths = action_layout.paths
  fields = {**{f"action:{p}": p for p in action_paths}, **{f"observation:{p}": p for p in vectors}}
  action_size = sum(action_layout.sizes)
  num_episodes = skipped = longest = 0
  low = np.full(action_size, np.inf)
  high = np.full(action_size, -np.inf)
  moments = _RunningMoments()
  for d in dirs:
    for index, episode in enumerate(_read(d, fields)):
      length = len(episode[f"action:{action_paths[0]}"])
      if length < 2:
        skipped += 1
        continue
      num_episodes += 1
      longest = max(longest, length)
      # Each episode's last action is never taken (no transition starts at its last step).
      taken = action_layout.join({p: episode[f"action:{p}"] for p in action_paths})[:-1]
      _check_finite(taken, taken.astype(np.float32), d, index, "action")
      taken = taken.astype(np.float64)
      low, high = np.minimum(low, taken.min(axis=0)), np.maximum(high, taken.max(axis=0))
      as_taken = []
      for path in vectors:
        observations = episode[f"observation:{path}"]
        as_taken.append(observations.astype(np.float32))  # What the networks get (iter_episodes).
        _check_finite(observations, as_taken[-1], d, index, f"observation {path!r}")
      if as_taken:
        moments.add(np.concatenate(as_taken, axis=-1).astype(np.float64))
  if num_episodes == 0:
    raise ValueError(f"{', '.join(dirs)} holds no episode of two or more steps: there is no transition to learn from.")
  spec = DatasetSpec(
    num_episodes=num_episodes,
    max_episode_length=longest,
    observation_shape=tuple(int(n) for n in layout.shape),
    observation_dtype=layout.dtype,
    action_shape=(action_size,),
    action_min=tuple(float(x) for x in low),
    action_max=tuple(float(x) for x in high),
    num_skipped_episodes=skipped,
    observation_layout=layout.to_dict(),
    action_layout=None if action_layout.is_plain else action_layout.to_dict(),
  )
  return Measurement(spec, moments.stats() if vectors else None)


def describe(dirs: Sequence[str], observation_key: str = DEFAULT_OBSERVATION_KEY, **kwargs) -> DatasetSpec:
  """The DatasetSpec of `measure`'s one pass (which also refuses non-finite inputs)."""
  return measure(dirs, observation_key, **kwargs).spec


def iter_episodes(
  dirs: Sequence[str],
  observation_key: str = DEFAULT_OBSERVATION_KEY,
  scaling: Optional[scaling_lib.ActionScaling] = None,
  flag_key: Optional[str] = None,
  action_key: str = DEFAULT_ACTION_KEY,
  image_size: Optional[Sequence[int]] = None,
) -> Iterator[Dict[str, np.ndarray]]:
  """Yields each episode's {'observation', 'action', 'is_terminal'} (and 'flag' for `flag_key`), in order, as the
  networks take them: observations converted by the fields' step_format layout (images resized once, here)."""
  layout, action_layout = layouts(dirs, observation_key, action_key, image_size)
  action_paths = action_layout.paths
  for d in dirs:
    fields = {**{f"observation:{f.path}": f.path for f in layout.fields}, **{f"action:{p}": p for p in action_paths}}
    if _has_step_field(d, "is_terminal"):
      fields["is_terminal"] = "is_terminal"
    if flag_key is not None:
      fields["flag"] = flag_key
    for episode in _read(d, fields):
      action = action_layout.join({p: episode[f"action:{p}"] for p in action_paths})
      length = len(action)
      if length < 2:
        continue
      out = {
        "observation": layout.convert({f.path: episode[f"observation:{f.path}"] for f in layout.fields}),
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
  """Per-dimension mean and std of every step's vector observation (as rlds_writer.observation_stats), from `measure`."""
  stats = measure(dirs, observation_key).observation_stats
  if stats is None:
    raise ValueError(f"{observation_key!r} holds images: observation_stats are for vector observations.")
  return stats
