"""Checkpoints of learner state and counters: atomic pickles of numpy pytrees in `<workdir>/checkpoints`."""

import glob
import os
import pickle
import re
from typing import Any, Dict, Optional

import jax
import numpy as np

_NAME = re.compile(r"ckpt_(\d+)\.pkl$")


class Checkpointer:
  """Writes `ckpt_<step>.pkl` files, keeps the newest `keep` of them, and finds the latest on restart."""

  def __init__(self, directory: str, keep: int = 3):
    self._directory = directory
    self._keep = keep
    os.makedirs(directory, exist_ok=True)

  def _steps_and_paths(self):
    found = [
      (int(_NAME.search(p).group(1)), p)
      for p in glob.glob(os.path.join(self._directory, "ckpt_*.pkl"))
      if _NAME.search(p)
    ]
    return sorted(found)

  def save(self, step: int, learner_state: Any, counts: Dict[str, float]) -> str:
    path = os.path.join(self._directory, f"ckpt_{step:010d}.pkl")
    payload = {
      "step": step,
      "learner": jax.tree_util.tree_map(np.asarray, jax.device_get(learner_state)),
      "counts": dict(counts),
    }
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
      pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)  # A reader never sees a half-written checkpoint.
    for _, old in self._steps_and_paths()[: -self._keep]:
      os.remove(old)
    return path

  def latest_step(self) -> int:
    """Step of the newest checkpoint (0 if none), read from file names only."""
    found = self._steps_and_paths()
    return found[-1][0] if found else 0

  def load(self, step: int) -> Dict[str, Any]:
    found = dict(self._steps_and_paths())
    if step not in found:
      raise FileNotFoundError(f"No checkpoint of step {step} in {self._directory}; it holds steps {sorted(found)}.")
    with open(found[step], "rb") as f:
      return pickle.load(f)

  def latest(self) -> Optional[Dict[str, Any]]:
    found = self._steps_and_paths()
    if not found:
      return None
    with open(found[-1][1], "rb") as f:
      return pickle.load(f)


def for_run(workdir: str) -> Checkpointer:
  """The checkpointer of the run in `workdir`."""
  return Checkpointer(os.path.join(workdir, "checkpoints"))
