"""How one dataset step becomes what the networks take, and how their actions go back to the dataset's form.

Observations: the run names one step field or several (`--observation_key=observation/image,observation/state`).
Each is a uint8 [H, W, C] image or a numeric vector. Images are resized to the run's `--image_size` (one area
resize, the same in the dataset reader, the evaluators and `load_policy`); vectors become float32. One field is
passed on as it is. Several are packed, in the order named, into one uint8 byte vector per step (images' pixels,
then each vector's float32 bytes), so that Reverb, the batch cutting and the success examples keep handling one
array per step; the networks unpack it (`unpack`), encode each image with its own torso and join the features.

Actions: the step's `action` vector, or fields of an `action` dict (`--action_key=action/world_vector,...`),
concatenated in the order named into one vector; `ActionLayout.split` gives the policy's actions back in the
dataset's structure.

Pure numpy (and jax for `unpack`): a policy loaded on its own uses this without TensorFlow.
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from dm_env import specs as dm_specs
import numpy as np

IMAGE = "image"
VECTOR = "vector"
DEFAULT_IMAGE_SIZE = (64, 64)  # The paper's input, and every preset's.


def split_keys(value: str) -> List[str]:
  """The '/'-separated paths of a comma-separated key flag."""
  keys = [k.strip().strip("/") for k in value.split(",") if k.strip()]
  if not keys:
    raise ValueError(f"{value!r} names no step field.")
  if len(set(keys)) != len(keys):
    raise ValueError(f"{value!r} names a field twice.")
  return keys


def parse_image_size(value: Any) -> Tuple[int, int]:
  """64 or '64' -> (64, 64); '48x64' -> (48, 64) (height x width)."""
  try:
    if isinstance(value, (list, tuple)):
      size = tuple(int(v) for v in value)
    else:
      parts = str(value).lower().split("x")
      size = (int(parts[0]),) * 2 if len(parts) == 1 else tuple(int(p) for p in parts)
  except ValueError as e:
    raise ValueError(f"--image_size must be N or HxW (e.g. 64 or 48x64), got {value!r}.") from e
  if len(size) != 2 or min(size) < 1:
    raise ValueError(f"--image_size must be N or HxW with positive sizes, got {value!r}.")
  return size


def _area_taps(size_in: int, size_out: int) -> Tuple[np.ndarray, np.ndarray]:
  """Per output pixel, the input pixels it covers and their weights (the overlap of the output pixel's interval
  with each input pixel, normalised): an area resize along one axis."""
  scale = size_in / size_out
  taps = int(np.ceil(scale)) + 1
  starts = np.arange(size_out) * scale
  first = np.floor(starts).astype(int)
  index = first[:, None] + np.arange(taps)[None, :]
  overlap = np.minimum(index + 1, (starts + scale)[:, None]) - np.maximum(index, starts[:, None])
  weight = np.clip(overlap, 0.0, None)
  weight /= weight.sum(axis=1, keepdims=True)
  return np.minimum(index, size_in - 1), weight.astype(np.float32)


def resize_images(images: np.ndarray, size: Sequence[int]) -> np.ndarray:
  """uint8 [..., H, W, C] -> uint8 [..., size[0], size[1], C] by area averaging (unchanged when already that size)."""
  images = np.asarray(images)
  height, width = images.shape[-3:-1]
  if (height, width) == tuple(size):
    return images
  flat = images.reshape((-1,) + images.shape[-3:])
  # A few images at a time: the gathered taps of large images take many times their bytes.
  out = np.zeros((len(flat), *size, images.shape[-1]), np.uint8)
  for start in range(0, len(flat), 8):
    out[start : start + 8] = _area_resize(flat[start : start + 8], (height, width), size)
  return out.reshape(images.shape[:-3] + out.shape[1:])


def _area_resize(images: np.ndarray, size_in: Sequence[int], size_out: Sequence[int]) -> np.ndarray:
  """uint8 [N, H, W, C] -> [N, *size_out, C], rounded to uint8."""
  out = images.astype(np.float32)
  for axis in (1, 2):
    index, weight = _area_taps(size_in[axis - 1], size_out[axis - 1])
    gathered = np.take(out, index, axis=axis)  # The axis becomes (output pixel, tap).
    shape = [1] * gathered.ndim
    shape[axis], shape[axis + 1] = weight.shape
    out = (gathered * weight.reshape(shape)).sum(axis=axis + 1)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Field:
  """One observation field as the networks take it."""

  path: str  # The step field, '/'-separated (e.g. 'observation/image').
  kind: str  # IMAGE (uint8 [H, W, C], resized) or VECTOR (float32 [d]).
  shape: Tuple[int, ...]

  @property
  def num_bytes(self) -> int:
    return int(np.prod(self.shape)) * (1 if self.kind == IMAGE else 4)


@dataclasses.dataclass(frozen=True)
class ObservationLayout:
  """The observation fields of a run, in the order named, and how one step's values become the networks' input."""

  fields: Tuple[Field, ...]

  @property
  def packed(self) -> bool:
    return len(self.fields) > 1

  @property
  def shape(self) -> Tuple[int, ...]:
    return (sum(f.num_bytes for f in self.fields),) if self.packed else self.fields[0].shape

  @property
  def dtype(self) -> str:
    return "uint8" if self.packed or self.fields[0].kind == IMAGE else "float32"

  @property
  def images(self) -> Tuple[Field, ...]:
    return tuple(f for f in self.fields if f.kind == IMAGE)

  @property
  def vector_size(self) -> int:
    """Dimensions of the vector fields together (what observation_stats standardise)."""
    return sum(int(np.prod(f.shape)) for f in self.fields if f.kind == VECTOR)

  def to_dict(self) -> Dict[str, Any]:
    return {"fields": [{"path": f.path, "kind": f.kind, "shape": list(f.shape)} for f in self.fields]}

  @classmethod
  def from_dict(cls, stored: Mapping[str, Any]) -> "ObservationLayout":
    return cls(tuple(Field(f["path"], f["kind"], tuple(f["shape"])) for f in stored["fields"]))

  def convert(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """{path: [..., *field's shape as stored]} -> the networks' input [..., *self.shape] (any leading dims)."""
    parts = []
    for field in self.fields:
      value = np.asarray(values[field.path])
      if field.kind == IMAGE:
        value = resize_images(value, field.shape[:2])
        lead = value.shape[:-3]
      else:
        value = value.astype(np.float32)
        lead = value.shape[:-1]
      if value.shape[len(lead) :] != field.shape:
        raise ValueError(
          f"Observation field {field.path!r} has shape {value.shape[len(lead):]}; the run takes {field.shape}."
        )
      if not self.packed:
        return value
      parts.append(np.ascontiguousarray(value).view(np.uint8).reshape(lead + (-1,)))
    return np.concatenate(parts, axis=-1)

  def pick(self, observation: Any) -> Dict[str, np.ndarray]:
    """The run's fields out of one step's observation as an environment or a user gives it: the step's
    `observation` (a dict, nested or not, or the array itself when the run reads 'observation')."""
    picked = {}
    for field in self.fields:
      value = observation
      for part in observation_path(field.path):
        if not isinstance(value, Mapping) or part not in value:
          have = sorted(value.keys()) if isinstance(value, Mapping) else type(value).__name__
          raise ValueError(f"The observation has no field {part!r} (of {field.path!r}); it has {have}.")
        value = value[part]
      picked[field.path] = np.asarray(value)
    return picked

  def spec(self) -> dm_specs.Array:
    """The networks' observation spec; a packed one carries this layout for the encoder."""
    if self.packed:
      return PackedSpec(self)
    return dm_specs.Array(self.shape, np.dtype(self.dtype), "observation")


class PackedSpec(dm_specs.Array):
  """Spec of packed observations (uint8 byte vectors) that knows their layout."""

  def __init__(self, layout: ObservationLayout):
    super().__init__(layout.shape, np.uint8, "observation")
    self.layout = layout


def observation_path(path: str) -> List[str]:
  """The keys that lead from a step's `observation` to the field at step path `path` ('observation/state' ->
  ['state']; 'observation' -> [])."""
  parts = path.split("/")
  return parts[1:] if parts[0] == "observation" else parts


def unpack(x, layout: ObservationLayout) -> List[Tuple[Field, Any]]:
  """Packed observations [..., N] (a jax array) -> [(field, uint8 [..., H, W, C] image or float32 [..., d])]."""
  import jax  # pylint: disable=g-import-not-at-top

  out, offset = [], 0
  lead = x.shape[:-1]
  for field in layout.fields:
    chunk = x[..., offset : offset + field.num_bytes]
    offset += field.num_bytes
    if field.kind == IMAGE:
      out.append((field, chunk.reshape(lead + field.shape)))
    else:
      out.append((field, jax.lax.bitcast_convert_type(chunk.reshape(lead + field.shape + (4,)), np.float32)))
  return out


@dataclasses.dataclass(frozen=True)
class ActionLayout:
  """Action fields of a dict action, in the order named: joined into the policy's vector, split back for the user."""

  paths: Tuple[str, ...]  # Step paths, e.g. 'action/world_vector'.
  shapes: Tuple[Tuple[int, ...], ...]  # As the dataset stores each.

  @property
  def sizes(self) -> List[int]:
    return [int(np.prod(s)) for s in self.shapes]

  @property
  def is_plain(self) -> bool:
    """The step's `action` vector itself (runs store no layout for it, and the policy returns a vector)."""
    return self.paths == ("action",) and len(self.shapes[0]) == 1

  def to_dict(self) -> Dict[str, Any]:
    return {"paths": list(self.paths), "shapes": [list(s) for s in self.shapes]}

  @classmethod
  def from_dict(cls, stored: Optional[Mapping[str, Any]]) -> Optional["ActionLayout"]:
    if not stored:
      return None
    return cls(tuple(stored["paths"]), tuple(tuple(s) for s in stored["shapes"]))

  def join(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """{path: [T, *shape]} -> float32 [T, sum of sizes]."""
    parts = []
    for path, shape in zip(self.paths, self.shapes):
      value = np.asarray(values[path], np.float32)
      parts.append(value.reshape(value.shape[: value.ndim - len(shape)] + (-1,)))
    return np.concatenate(parts, axis=-1)

  def split(self, action: np.ndarray) -> Dict[str, Any]:
    """[..., sum of sizes] -> a dict shaped as the dataset's action: {'world_vector': [..., 3], ...} (nested keys
    below 'action' become nested dicts)."""
    action = np.asarray(action)
    out: Dict[str, Any] = {}
    offset = 0
    for path, shape, size in zip(self.paths, self.shapes, self.sizes):
      value = action[..., offset : offset + size].reshape(action.shape[:-1] + tuple(shape))
      offset += size
      keys = path.split("/")
      keys = keys[1:] if keys[0] == "action" and len(keys) > 1 else keys
      node = out
      for key in keys[:-1]:
        node = node.setdefault(key, {})
      node[keys[-1]] = value
    return out
