"""A user's own simulator as a run's evaluation environment: ``--env=package.module:factory``.

``factory(seed=seed)`` (or ``factory()`` when it takes no seed) returns either

* a ``dm_env.Environment`` with a ``success()`` method that says whether its current state solves the task
  (as laeo's own environments do), or
* a gymnasium environment whose ``info`` dicts carry ``is_success`` (gymnasium-robotics' convention) or
  ``success``; laeo wraps it as a dm_env (``GymnasiumEnv``), seeding its resets from ``seed``.

Its observations may be nested dicts: the evaluator picks the run's ``--observation_key`` from them (the path
without its leading 'observation/'). Evaluation videos are recorded in laeo's own environments only.
"""

import importlib
import importlib.util
import inspect
from typing import Any, Tuple

import dm_env
from dm_env import specs
import numpy as np


def parse_target(target: str) -> Tuple[str, str]:
  module, sep, attr = target.partition(":")
  if not sep or not module or not attr:
    raise ValueError(f"--env={target!r}: a user environment is named package.module:factory.")
  return module, attr


def check_target(target: str) -> None:
  """Refuses, without importing it, a target whose module cannot be found."""
  module, _ = parse_target(target)
  try:
    found = importlib.util.find_spec(module)
  except (ImportError, ValueError):
    found = None
  if found is None:
    raise ValueError(f"--env={target!r}: no module {module!r} on the Python path.")


def make(target: str, seed: int = 0):
  """The environment `target`'s factory returns, as a dm_env with success()."""
  module, attr = parse_target(target)
  factory = getattr(importlib.import_module(module), attr, None)
  if not callable(factory):
    raise ValueError(f"--env={target!r}: {module} has no callable {attr!r}.")
  try:
    takes_seed = "seed" in inspect.signature(factory).parameters
  except (TypeError, ValueError):
    takes_seed = False
  env = factory(seed=seed) if takes_seed else factory()
  if isinstance(env, dm_env.Environment):
    if not callable(getattr(env, "success", None)):
      raise ValueError(
        f"--env={target!r}: the dm_env it returns needs a success() method (does its state solve the task?)."
      )
    return env
  if hasattr(env, "action_space") and hasattr(env, "step") and hasattr(env, "reset"):
    return GymnasiumEnv(env, seed)
  raise ValueError(
    f"--env={target!r} returned a {type(env).__name__}, neither a dm_env.Environment nor a gymnasium env."
  )


def _spec(space, name: str):
  """A dm_env spec of a gymnasium space (Box, or a Dict of them)."""
  if hasattr(space, "spaces") and isinstance(space.spaces, dict):
    return {k: _spec(v, k) for k, v in space.spaces.items()}
  if hasattr(space, "low") and hasattr(space, "high"):
    return specs.BoundedArray(space.shape, space.dtype, space.low, space.high, name)
  return specs.Array(getattr(space, "shape", ()), getattr(space, "dtype", np.float32), name)


class GymnasiumEnv(dm_env.Environment):
  """A gymnasium env as a dm_env: episodes end at its termination or truncation; success() from its info."""

  def __init__(self, env: Any, seed: int = 0):
    self._env = env
    self._rng = np.random.default_rng(seed)
    self._success = False

  def _read_success(self, info) -> None:
    self._success = bool(info.get("is_success", info.get("success", False)))

  def reset(self) -> dm_env.TimeStep:
    observation, info = self._env.reset(seed=int(self._rng.integers(2**31)))
    self._read_success(info)
    return dm_env.restart(observation)

  def step(self, action) -> dm_env.TimeStep:
    observation, reward, terminated, truncated, info = self._env.step(np.asarray(action))
    self._read_success(info)
    if terminated:
      return dm_env.termination(float(reward), observation)
    if truncated:
      return dm_env.truncation(float(reward), observation)
    return dm_env.transition(float(reward), observation)

  def success(self) -> bool:
    return self._success

  def observation_spec(self):
    return _spec(self._env.observation_space, "observation")

  def action_spec(self):
    return _spec(self._env.action_space, "action")

  def close(self) -> None:
    self._env.close()
