"""Actions in a dataset's own units, mapped to the [-1, 1] that every agent's tanh-squashed policy emits.

A dataset whose actions lie in [-1, 1] is used as it is (no scaling). Otherwise each action dimension is mapped
affinely from [low, high] to [-1, 1]: bounds the user gives, or the dataset's own minimum and maximum. Actions
are never clipped: data outside bounds the user gave is refused. The trained policy maps its actions back.
Numpy only: a loaded policy (launch/policy.py) uses it without TensorFlow.
"""

import ast
import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

# Values of --action_bounds besides explicit bounds.
AUTO = "auto"  # No scaling when every action lies in [-1, 1]; else the dataset's per-dimension min and max.
DATA = "data"  # Always the dataset's per-dimension min and max.
_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class ActionScaling:
  """Per-dimension affine map between [low, high] (the data's units) and [-1, 1] (the policy's)."""

  low: np.ndarray
  high: np.ndarray

  @property
  def _center(self):
    return (self.low + self.high) / 2.0

  @property
  def _half_range(self):
    # A dimension whose value never changes maps to 0 (and back to its one value).
    half = (self.high - self.low) / 2.0
    return np.where(half > 0, half, 1.0)

  def normalise(self, actions: np.ndarray) -> np.ndarray:
    """Data units -> [-1, 1] (float32)."""
    return ((np.asarray(actions, np.float64) - self._center) / self._half_range).astype(np.float32)

  def unnormalise(self, actions: np.ndarray) -> np.ndarray:
    """[-1, 1] -> data units (float32), within [low, high]."""
    actions = self._center + np.asarray(actions, np.float64) * self._half_range
    return np.clip(actions, self.low, self.high).astype(np.float32)

  def to_dict(self) -> Dict[str, List[float]]:
    return {"low": self.low.tolist(), "high": self.high.tolist()}

  @classmethod
  def from_dict(cls, stored: Optional[Dict[str, Sequence[float]]]) -> Optional["ActionScaling"]:
    if stored is None:
      return None
    return cls(np.asarray(stored["low"], np.float64), np.asarray(stored["high"], np.float64))


def parse_bounds(value: str, action_dim: int):
  """(low, high) arrays of shape [action_dim] from 'LOW,HIGH' (every dimension) or '[l1, ...],[h1, ...]'."""
  try:
    parsed = ast.literal_eval(value)
    low, high = parsed
    low = np.broadcast_to(np.asarray(low, np.float64), (action_dim,)).copy()
    high = np.broadcast_to(np.asarray(high, np.float64), (action_dim,)).copy()
  except (ValueError, SyntaxError, TypeError) as e:
    raise ValueError(
      f"--action_bounds={value!r} is not {AUTO!r}, {DATA!r}, 'LOW,HIGH' or '[low, ...],[high, ...]' "
      f"with {action_dim} values each."
    ) from e
  if not np.all(high >= low):
    raise ValueError(f"--action_bounds={value!r}: every high must be >= its low.")
  return low, high


def resolve(bounds: str, action_min: Sequence[float], action_max: Sequence[float]) -> Optional[ActionScaling]:
  """The scaling a run uses, given --action_bounds and the dataset's per-dimension action range (None: none)."""
  action_min = np.asarray(action_min, np.float64)
  action_max = np.asarray(action_max, np.float64)
  in_unit_box = bool(np.all(action_min >= -1.0 - _TOLERANCE) and np.all(action_max <= 1.0 + _TOLERANCE))
  if bounds == AUTO:
    return None if in_unit_box else ActionScaling(action_min, action_max)
  if bounds == DATA:
    return ActionScaling(action_min, action_max)
  low, high = parse_bounds(bounds, len(action_min))
  outside = np.flatnonzero((action_min < low - _TOLERANCE) | (action_max > high + _TOLERANCE))
  if outside.size:
    i = int(outside[0])
    raise ValueError(
      f"The dataset's actions leave --action_bounds={bounds!r}: dimension {i} spans "
      f"[{action_min[i]:.6g}, {action_max[i]:.6g}], outside [{low[i]:.6g}, {high[i]:.6g}] (actions are never "
      f"clipped; give bounds that hold them, or --action_bounds={DATA} to use the data's own range)."
    )
  if np.allclose(low, -1.0) and np.allclose(high, 1.0):
    return None
  return ActionScaling(low, high)
