"""Checkpoints of learner state and counters in `<workdir>/checkpoints`: Orbax pytrees that load without running
code, written atomically, each with the SHA-256 of its every file.

`ckpt_<step>/` holds the Orbax checkpoint (`state/`) and `sha256.json`, the digest of each file of `state/`. It is
written aside and renamed into place whole, so a reader never meets a half-written one. Loading checks every
digest before Orbax reads a byte: a truncated or bit-flipped checkpoint is set aside as `ckpt_<step>.damaged`
(named in a warning, never deleted) and the one before it is taken instead. A state holding NaN or infinity is
never written. Checkpoints of earlier laeo versions (`ckpt_<step>.pkl`, pickles: loading one runs whatever code
it holds) are refused (`LegacyCheckpointError`).
"""

import glob
import hashlib
import json
import os
import re
import shutil
import sys
from typing import Any, Dict, List, Optional, Tuple

import jax
import numpy as np

from agents.common import learner as learner_lib

FORMAT = "laeo-orbax-1"
_NAME = re.compile(r"^ckpt_(\d+)$")
_STATE = "state"
_DIGESTS = "sha256.json"


class LegacyCheckpointError(ValueError):
  """The directory holds pickled checkpoints of an earlier laeo version."""


class DamagedCheckpointError(ValueError):
  """A checkpoint's files do not match their recorded digests, or cannot be read."""


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _files(root: str) -> List[str]:
  """Every file under `root`, as sorted paths relative to it."""
  found = []
  for folder, _, names in os.walk(root):
    found += [os.path.relpath(os.path.join(folder, n), root) for n in names]
  return sorted(found)


def _fsync(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _checker():
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top  (only where checkpoints are read or written)

  # Without OCDBT: its reader caches a checkpoint's index by path for the life of the process and never checks it
  # again, so a process that had read a checkpoint misread the one that replaced it at the same path.
  return ocp.PyTreeCheckpointer(use_ocdbt=False)


class Checkpointer:
  """Writes `ckpt_<step>/` checkpoints, keeps the newest `keep` of them, and finds the newest intact one."""

  def __init__(self, directory: str, keep: int = 3):
    self._directory = directory
    self._keep = keep

  def check_format(self) -> None:
    """Raises LegacyCheckpointError if the directory holds pickled checkpoints."""
    legacy = sorted(glob.glob(os.path.join(self._directory, "ckpt_*.pkl")))
    if legacy:
      workdir = os.path.dirname(os.path.abspath(self._directory))
      raise LegacyCheckpointError(
        f"{self._directory} holds checkpoints in the pickle format of earlier laeo versions "
        f"({', '.join(os.path.basename(p) for p in legacy)}); laeo no longer loads pickles, since loading one runs "
        "whatever code the file holds. To go on, start the run afresh in a new --workdir or, only if you made these "
        "files yourself and trust them, convert them with `.venv/bin/python scripts/convert_pickle_checkpoints.py "
        f"--workdir={workdir}` and rerun the same command."
      )

  def _steps_and_paths(self) -> List[Tuple[int, str]]:
    self.check_format()
    if not os.path.isdir(self._directory):
      return []
    found = [
      (int(m.group(1)), os.path.join(self._directory, n)) for n in os.listdir(self._directory) if (m := _NAME.match(n))
    ]
    return sorted(found)

  def path(self, step: int) -> str:
    return os.path.join(self._directory, f"ckpt_{step:010d}")

  def save(self, step: int, learner_state: Any, counts: Dict[str, float]) -> str:
    """Writes the checkpoint of `step` (replacing one of the same step) and drops all but the newest `keep`."""
    self.check_format()
    state = jax.tree_util.tree_map(np.asarray, jax.device_get(learner_state))
    bad = learner_lib.non_finite(state)
    if bad:
      raise ValueError(
        f"Refusing to write the checkpoint of step {step}: {', '.join(f'{k} is {v}' for k, v in bad.items())}."
      )
    os.makedirs(self._directory, exist_ok=True)
    for stale in glob.glob(os.path.join(self._directory, ".ckpt_*.tmp-*")):
      shutil.rmtree(stale, ignore_errors=True)  # Left by a learner that died while writing.
    final = self.path(step)
    tmp = os.path.join(self._directory, f".{os.path.basename(final)}.tmp-{os.getpid()}")
    os.makedirs(tmp)
    # 0-d arrays rather than scalars: Orbax then keeps every leaf's dtype.
    tree = {
      "step": np.asarray(step, np.int64),
      "counts": {k: np.asarray(v, np.float64) for k, v in counts.items()},
      "learner": state,
    }
    _checker().save(os.path.join(tmp, _STATE), tree)
    files = _files(tmp)
    digests = {"format": FORMAT, "step": step, "sha256": {f: _sha256(os.path.join(tmp, f)) for f in files}}
    with open(os.path.join(tmp, _DIGESTS), "w") as f:
      json.dump(digests, f, indent=1, sort_keys=True)
    for name in files + [_DIGESTS]:
      _fsync(os.path.join(tmp, name))
    if os.path.exists(final):
      old = os.path.join(self._directory, f".{os.path.basename(final)}.tmp-{os.getpid()}-old")
      os.rename(final, old)
      os.rename(tmp, final)
      shutil.rmtree(old)
    else:
      os.rename(tmp, final)
    _fsync(self._directory)
    for _, path in self._steps_and_paths()[: -self._keep]:
      shutil.rmtree(path, ignore_errors=True)
    return final

  def verify(self, path: str) -> None:
    """Raises DamagedCheckpointError unless every file of the checkpoint at `path` matches its digest
    (FileNotFoundError if there is no checkpoint at `path`)."""
    if not os.path.isdir(path):
      raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
      with open(os.path.join(path, _DIGESTS)) as f:
        recorded = json.load(f)
    except (OSError, ValueError) as e:
      raise DamagedCheckpointError(f"its digest file {_DIGESTS} is missing or unreadable: {e}") from e
    expected = recorded.get("sha256") if isinstance(recorded, dict) else None
    if not isinstance(expected, dict) or recorded.get("format") != FORMAT:
      raise DamagedCheckpointError(f"its digest file {_DIGESTS} is not a laeo checkpoint's")
    present = [f for f in _files(path) if f != _DIGESTS]
    if sorted(expected) != present:
      missing, extra = sorted(set(expected) - set(present)), sorted(set(present) - set(expected))
      raise DamagedCheckpointError(f"files missing: {missing}, files not recorded: {extra}")
    for name in present:
      if _sha256(os.path.join(path, name)) != expected[name]:
        raise DamagedCheckpointError(f"{name} does not match its SHA-256: truncated or altered")

  def _read(self, step: int, path: str) -> Dict[str, Any]:
    self.verify(path)
    try:
      tree = _checker().restore(os.path.join(path, _STATE))
      read_step = int(tree["step"])
      counts = {k: float(v) for k, v in tree["counts"].items()}
      learner = tree["learner"]
    except Exception as e:  # pylint: disable=broad-except  (Orbax raises many kinds on a file it cannot read)
      raise DamagedCheckpointError(f"Orbax cannot read it: {type(e).__name__}: {e}") from e
    if read_step != step:
      raise DamagedCheckpointError(f"it holds step {read_step}")
    return {"step": step, "learner": learner, "counts": counts}

  def _set_aside(self, path: str, error: DamagedCheckpointError) -> None:
    aside, n = path + ".damaged", 1
    while os.path.exists(aside):
      aside, n = f"{path}.damaged{n}", n + 1
    try:
      os.rename(path, aside)
    except FileNotFoundError:
      return  # Another process set it aside first.
    print(
      f"[checkpoints] warning: {path} is damaged ({error}); set aside as {os.path.basename(aside)} (kept, never "
      "deleted), taking the one before it",
      file=sys.stderr,
      flush=True,
    )

  def latest(self) -> Optional[Dict[str, Any]]:
    """The newest intact checkpoint ({'step', 'learner', 'counts'}), or None; damaged newer ones are set aside."""
    for step, path in reversed(self._steps_and_paths()):
      try:
        return self._read(step, path)
      except FileNotFoundError:
        continue  # Dropped by a learner's rotation meanwhile.
      except DamagedCheckpointError as e:
        self._set_aside(path, e)
    return None

  def latest_step(self) -> int:
    """Step of the newest checkpoint whose files match their digests (0 if none); changes nothing."""
    for step, path in reversed(self._steps_and_paths()):
      try:
        self.verify(path)
        return step
      except (FileNotFoundError, DamagedCheckpointError):
        continue
    return 0

  def load(self, step: int) -> Dict[str, Any]:
    found = dict(self._steps_and_paths())
    if step not in found:
      raise FileNotFoundError(f"No checkpoint of step {step} in {self._directory}; it holds steps {sorted(found)}.")
    return self._read(step, found[step])


def for_run(workdir: str) -> Checkpointer:
  """The checkpointer of the run in `workdir`."""
  return Checkpointer(os.path.join(workdir, "checkpoints"))
